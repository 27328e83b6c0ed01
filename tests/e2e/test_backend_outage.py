"""End to end: core banking goes down mid-conversation; the bot answers politely and recovers."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Assistant

pytestmark = pytest.mark.e2e

UNAVAILABLE = "nuestro sistema no está respondiendo"


def test_core_banking_outage_gets_a_polite_answer_and_recovers(assistant: Assistant) -> None:
    chat = assistant.chat("e2e-cliente-caida")
    core_banking = assistant.processes["core-banking"]
    assert "Credia" in chat.say("buenos dias")
    assert "créditos que ofrecemos" in chat.say("que creditos tienen disponibles")

    core_banking.stop()
    try:
        reply = chat.say("y que otros prestamos manejan?")
        assert UNAVAILABLE in reply
        assert "Traceback" not in reply
    finally:
        core_banking.start()
        core_banking.wait_healthy(60)
    reply = chat.say("qué tipos de préstamo tienen?")
    assert "créditos que ofrecemos" in reply and "S/" in reply
    assert "Credia" in chat.say("hola otra vez")
