"""The reminder said in the conversation, and "BAJA" withdrawing consent in core banking at once."""

from __future__ import annotations

from typing import Any

import pytest
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from actions.reminders import ActionOptOut, ActionPaymentReminder
from tests.unit.conftest import CoreBankingService


def tracker(sender: str, channel: str, text: str = "BAJA", entities: list | None = None,
            slots: dict[str, Any] | None = None) -> Tracker:
    latest = {"text": text, "intent": {"name": "opt_out", "confidence": 1.0}, "entities": entities or []}
    events = [{"event": "user", "text": text, "input_channel": channel, "parse_data": latest}]
    return Tracker(sender, slots or {}, latest, events, False, None, {}, "action_listen")


@pytest.fixture(autouse=True)
def _core_banking_url(core_banking: CoreBankingService, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORE_BANKING_URL", core_banking.url)


def consents(core_banking: CoreBankingService, dni: str) -> dict[str, bool]:
    [customer] = core_banking.get("/customers", document_type="DNI", document_number=dni).json()
    return customer["consents"]


async def test_baja_on_whatsapp_withdraws_whatsapp_consent_only(core_banking: CoreBankingService) -> None:
    assert consents(core_banking, "45879632")["whatsapp"] is True
    dispatcher = CollectingDispatcher()
    await ActionOptOut().run(dispatcher, tracker("51912345678", "whatsapp"), {})
    assert "no le enviaremos más recordatorios por este medio" in dispatcher.messages[0]["text"]
    after = consents(core_banking, "45879632")
    assert after["whatsapp"] is False and after["sms"] is True


async def test_baja_on_the_web_needs_to_know_who_it_is(core_banking: CoreBankingService) -> None:
    dispatcher = CollectingDispatcher()
    await ActionOptOut().run(dispatcher, tracker("web-5f2a", "socketio"), {})
    assert "confirmar su identidad" in dispatcher.messages[0]["text"]
    [customer] = core_banking.get("/customers", document_type="DNI", document_number="10117410").json()
    verified = {"identity_verified": True, "verified_customer_id": str(customer["id"])}
    await ActionOptOut().run(CollectingDispatcher(), tracker("web-5f2a", "socketio", slots=verified), {})
    assert consents(core_banking, "10117410")["web"] is False


async def test_the_reminder_says_amount_and_date_and_how_to_stop() -> None:
    entities = [{"entity": "reminder_kind", "value": "before_due"}, {"entity": "due_amount", "value": "359.83"},
                {"entity": "due_date", "value": "2026-12-20"}]
    dispatcher = CollectingDispatcher()
    await ActionPaymentReminder().run(dispatcher, tracker("51912345678", "whatsapp", entities=entities), {})
    [message] = dispatcher.messages
    assert "359.83" in message["text"] and "20 de diciembre" in message["text"] and "BAJA" in message["text"]
    assert [b["payload"] for b in message["buttons"]] == ["/pay_now", "/request_payment_plan"]
