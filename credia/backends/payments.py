"""Client for the payments service (mock or a payment provider's adapter exposing the same API)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from credia import settings
from credia.backends.http import JsonClient


class PaymentsClient:
    """Typed calls to the payments service; every method may raise a ``credia.backends.BackendError``."""

    def __init__(self, base_url: str | None = None, timeout: float = 5.0, retries: int = 2) -> None:
        self.http = JsonClient("payments", base_url or settings.payments_url(), timeout, retries)

    async def create_link(
        self,
        *,
        amount: Decimal,
        reference: str,
        customer_id: int,
        idempotency_key: str,
        loan_id: int | None = None,
        currency: str = "PEN",
        description: str = "",
        metadata: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Create a payment link; the idempotency key makes a retried call return the same link.

        ``metadata`` comes back in the payment webhook, e.g. the conversation to tell when it is paid.
        """
        body = {
            "amount": str(amount),
            "currency": currency,
            "reference": reference,
            "customer_id": customer_id,
            "loan_id": loan_id,
            "description": description,
            "metadata": metadata or {},
        }
        return await self.http.request("POST", "/links", json=body, headers={"Idempotency-Key": idempotency_key})

    async def link(self, link_id: str) -> dict[str, Any]:
        return await self.http.request("GET", f"/links/{link_id}")

    async def find_links(self, **filters: Any) -> list[dict[str, Any]]:
        """Links matching ``reference``, ``customer_id`` and/or ``status``."""
        return await self.http.request("GET", "/links", params={k: v for k, v in filters.items() if v is not None})
