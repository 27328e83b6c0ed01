"""Two reminder schedulers on one PostgreSQL store (the scaled-out profile) send each reminder exactly once."""

from __future__ import annotations

import secrets
import threading
from typing import Iterator

import pytest
from sqlalchemy import create_engine, text

from credia.reminders.store import ContactStore
from credia.scaleout import DEFAULT_POSTGRES_URL
from tests.unit.test_reminders_scheduler import (
    Clock,
    FakeBank,
    FakeChannels,
    FakeDesk,
    FakeRasa,
    World,
    installment,
    lima,
    loan,
)


@pytest.fixture
def database_url() -> Iterator[str]:
    """A database of its own on this machine's PostgreSQL, dropped afterwards."""
    name = f"credia_t{secrets.token_hex(4)}_reminders"
    server = create_engine(f"{DEFAULT_POSTGRES_URL}/postgres", isolation_level="AUTOCOMMIT", future=True)
    with server.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{DEFAULT_POSTGRES_URL}/{name}"
    finally:
        with server.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        server.dispose()


def test_two_schedulers_sharing_the_store_send_each_reminder_once(database_url: str) -> None:
    clock = Clock(lima("2026-12-07 10:00"))
    bank, rasa = FakeBank(clock), FakeRasa(clock)
    for customer_id in range(1, 31):
        bank.add(customer_id, [loan(customer_id, customer_id, installment(1, clock().date()))])
    stores = [ContactStore(database_url), ContactStore(database_url)]
    worlds = [World(clock, bank, rasa, FakeChannels(), FakeDesk(), store) for store in stores]
    start = threading.Barrier(len(worlds))

    def run(world: World) -> None:
        start.wait()
        world.scheduler().run()

    try:
        threads = [threading.Thread(target=run, args=(world,)) for world in worlds]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        reminded = [(route.conversation_id, entities["reminder_id"]) for _at, route, entities in rasa.sent]
        assert len(reminded) == 30
        assert len(set(reminded)) == 30
        assert len({conversation for conversation, _ in reminded}) == 30
    finally:
        for store in stores:
            store.close()
