"""Customer messages of paused conversations reach the desk through a persistent outbox, never lost."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select

from credia.db import make_engine, make_session_factory
from credia.handoff.desk import DeskClient
from credia.handoff.forwarder import Base, DeskForwarder, OutboxMessage
from tests.unit.fake_receiver import FakeReceiver


def forwarder(tmp_path: Path, desk_url: str) -> DeskForwarder:
    engine = make_engine(f"sqlite:///{tmp_path / 'channels.db'}")
    Base.metadata.create_all(engine)
    return DeskForwarder(make_session_factory(engine), DeskClient(desk_url, token="desk-token", timeout=2))


def user(sender: str, text: str, timestamp: float) -> dict:
    return {"sender_id": sender, "event": "user", "text": text, "timestamp": timestamp, "input_channel": "whatsapp"}


async def test_only_messages_of_paused_conversations_go_to_the_desk(tmp_path: Path) -> None:
    desk = FakeReceiver()
    desk.start()
    try:
        broker = forwarder(tmp_path, desk.url)
        broker.publish(user("51911111111", "antes de la pausa", 1.0))
        broker.publish({"sender_id": "51911111111", "event": "pause", "timestamp": 2.0})
        broker.publish(user("51911111111", "¿sigue ahí?", 3.0))
        broker.publish(user("51911111111", "¿sigue ahí?", 3.0))  # the same event published twice
        broker.publish({"sender_id": "51911111111", "event": "user", "text": "EXTERNAL: x", "timestamp": 4.0})
        broker.publish(user("otro-cliente", "no está en pausa", 5.0))
        await broker.deliver_due()
        broker.publish({"sender_id": "51911111111", "event": "resume", "timestamp": 6.0})
        broker.publish(user("51911111111", "después de la pausa", 7.0))
        await broker.deliver_due()

        [request] = desk.received
        assert request.path == "/api/handoffs/51911111111/messages"
        assert request.headers["Authorization"] == "Bearer desk-token"
        body = json.loads(request.body)
        assert body["text"] == "¿sigue ahí?" and body["event_id"] == "51911111111:3.0"
    finally:
        desk.stop()


async def test_a_message_sent_while_the_desk_is_down_is_delivered_when_it_is_back(tmp_path: Path) -> None:
    desk = FakeReceiver()  # not listening yet: the desk is down
    broker = forwarder(tmp_path, desk.url)
    broker.publish({"sender_id": "web-1", "event": "pause", "timestamp": 1.0})
    broker.publish(user("web-1", "hola, ¿hay alguien?", 2.0))
    broker.publish(user("web-1", "sigo esperando", 3.0))
    await broker.deliver_due()
    with broker.sessions() as session:
        rows = session.execute(select(OutboxMessage).order_by(OutboxMessage.id)).scalars().all()
    assert [row.delivered_at for row in rows] == [None, None] and rows[0].attempts == 1
    assert rows[1].attempts == 0  # later messages of the conversation wait, so the order is kept

    desk.start()
    try:
        with broker.sessions() as session, session.begin():
            for row in session.execute(select(OutboxMessage)).scalars():
                row.next_attempt_at = row.next_attempt_at.replace(year=2000)
        restarted = forwarder(tmp_path, desk.url)  # a restart of Rasa keeps the outbox
        await restarted.deliver_due()
        assert [json.loads(r.body)["text"] for r in desk.received] == ["hola, ¿hay alguien?", "sigo esperando"]
    finally:
        desk.stop()
