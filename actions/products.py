"""Tell the customer which credit products the lender offers, straight from core banking."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from actions.base import BackendAction
from credia.backends.core_banking import CoreBankingClient
from credia.money import format_money, format_rate


def describe_product(product: dict[str, Any]) -> str:
    """One short line per product: name, amount range, term range and rate (TEA)."""
    currency = product.get("currency", "PEN")
    return (
        f"• {product['name']}: de {format_money(product['min_amount'], currency)} "
        f"a {format_money(product['max_amount'], currency)}, "
        f"de {product['min_term_months']} a {product['max_term_months']} meses, "
        f"TEA {format_rate(product['tea'])}."
    )


class ActionShowProducts(BackendAction):
    def name(self) -> str:
        return "action_show_products"

    async def act(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        products = await CoreBankingClient().products()
        if not products:
            dispatcher.utter_message(text="En este momento no tenemos créditos disponibles para solicitar.")
            return []
        lines = "\n".join(describe_product(p) for p in products)
        dispatcher.utter_message(text=f"Estos son los créditos que ofrecemos:\n{lines}")
        return []
