"""Custom actions against the real core-banking service, and with it down."""

from __future__ import annotations

import pytest
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from actions.handoff import offer_callback
from actions.products import ActionShowProducts
from credia.processes import free_port
from tests.unit.conftest import CoreBankingService


def empty_tracker() -> Tracker:
    return Tracker("cliente-1", {}, {}, [], False, None, {}, "action_listen")


async def test_show_products_lists_every_product_with_ranges_and_rate(
    core_banking: CoreBankingService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CORE_BANKING_URL", core_banking.url)
    dispatcher = CollectingDispatcher()
    events = await ActionShowProducts().run(dispatcher, empty_tracker(), {})
    assert events == []
    [message] = dispatcher.messages
    products = core_banking.get("/products").json()
    for product in products:
        assert product["name"] in message["text"]
    assert message["text"].count("• ") == len(products)
    assert "S/" in message["text"] and "TEA" in message["text"] and "meses" in message["text"]


async def test_show_products_answers_politely_when_core_banking_is_down(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORE_BANKING_URL", f"http://127.0.0.1:{free_port()}")
    dispatcher = CollectingDispatcher()
    events = await ActionShowProducts().run(dispatcher, empty_tracker(), {})
    assert events == []
    assert [m["response"] for m in dispatcher.messages] == ["utter_backend_unavailable"]


def test_callback_slots_are_offered_as_whole_short_days_within_whatsapps_20_characters() -> None:
    dispatcher = CollectingDispatcher()
    offer_callback(dispatcher, {"status": "closed", "callback_slots": [
        "2026-12-05T09:00:00-05:00", "2026-09-16T10:00:00-05:00", "2026-12-07T11:00:00-05:00",
    ]})
    [message] = dispatcher.messages
    titles = [button["title"] for button in message["buttons"]]
    assert titles == ["sáb 5 dic. 09:00", "mié 16 set. 10:00", "Dejar un mensaje"]  # two slots, then a message
    assert all(len(title) <= 20 for title in titles)
    assert "fuera del horario de atención" in message["text"]
