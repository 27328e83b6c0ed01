"""End to end: core banking goes down mid-conversation; the bot answers politely and recovers."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from credia.launcher import build_processes, start_all, stop_all
from credia.processes import ManagedProcess
from tests.e2e.conftest import Chat, free_ports

pytestmark = pytest.mark.e2e

UNAVAILABLE = "nuestro sistema no está respondiendo"


@pytest.fixture()
def assistant(model: Path, tmp_path: Path) -> Iterator[tuple[dict[str, ManagedProcess], str]]:
    ports = free_ports()
    processes = build_processes(model, tmp_path / "var", ports)
    try:
        start_all(processes)
        yield processes, f"http://127.0.0.1:{ports.rasa}"
    finally:
        stop_all(processes)


def test_core_banking_outage_gets_a_polite_answer_and_recovers(
    assistant: tuple[dict[str, ManagedProcess], str]
) -> None:
    processes, rasa_url = assistant
    chat = Chat(rasa_url, "e2e-cliente-caida")
    assert "Credia" in chat.say("buenos dias")
    assert "créditos que ofrecemos" in chat.say("que creditos tienen disponibles")

    processes["core-banking"].stop()
    reply = chat.say("y que otros prestamos manejan?")
    assert UNAVAILABLE in reply
    assert "Traceback" not in reply

    processes["core-banking"].start()
    processes["core-banking"].wait_healthy(60)
    reply = chat.say("qué tipos de préstamo tienen?")
    assert "créditos que ofrecemos" in reply and "S/" in reply
    assert "Credia" in chat.say("hola otra vez")
