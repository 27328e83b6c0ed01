"""Custom actions against the real core-banking service, and with it down."""

from __future__ import annotations

import pytest
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

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
