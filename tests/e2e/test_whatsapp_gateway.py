"""End to end through the WhatsApp ingress gateway: Meta's signed deliveries go to the gateway, which relays them
to the real Rasa server; the bot's answers are read back from the fake Graph API. Rasa is stopped and started
again here, and is healthy again before the test ends (the other tests share the same assistant)."""

from __future__ import annotations

import pytest
import requests

from credia.channels.whatsapp_gateway import WEBHOOK_PATH
from credia.launcher import STARTUP_TIMEOUT
from tests.e2e.conftest import Assistant
from tests.e2e.test_whatsapp_journey import WhatsAppCustomer, body_of
from tests.waiting import wait_until

pytestmark = pytest.mark.e2e


def gateway_url(assistant: Assistant) -> str:
    return assistant.processes["whatsapp-gateway"].health_url.rsplit("/health", 1)[0]


def test_meta_talks_to_the_gateway_and_nothing_is_lost_while_rasa_restarts(assistant: Assistant) -> None:
    customer = WhatsAppCustomer(assistant)
    customer.webhook = f"{gateway_url(assistant)}{WEBHOOK_PATH}"
    assert customer.post(customer.notification("text", {"body": "hola"}), signed=False).status_code == 401

    customer.write("hola")
    customer.wait_for(lambda m: "Credia" in body_of(m), after=0, timeout=120)  # a cold, busy Rasa is slow
    seen = len(customer.received())

    rasa = assistant.processes["rasa"]
    rasa.stop()
    try:
        customer.write("¿qué puedes hacer?")  # Meta still gets its 200 at once
        health = requests.get(assistant.processes["whatsapp-gateway"].health_url, timeout=10).json()
        assert health["pending"] == 1
    finally:
        rasa.start()
        rasa.wait_healthy(STARTUP_TIMEOUT["rasa"])

    menu = customer.wait_for(lambda m: m["type"] == "interactive", after=seen, timeout=120)
    assert "puedo hacer" in menu["interactive"]["body"]["text"]
    wait_until(lambda: requests.get(assistant.processes["whatsapp-gateway"].health_url, timeout=10)
               .json()["pending"] == 0, timeout=30, what="every delivery relayed")
    users = wait_until(
        lambda: len(texts := [e["text"] for e in assistant.tracker(customer.wa_id)["events"]
                              if e["event"] == "user"]) >= 2 and texts,
        timeout=30, what="both turns in the tracker",
    )
    assert users == ["hola", "¿qué puedes hacer?"]
