"""Client for the core-banking service (mock or a lender's adapter exposing the same API)."""

from __future__ import annotations

from typing import Any

from credia import settings
from credia.backends.http import JsonClient, NotFound


class CoreBankingClient:
    """Typed calls to core banking; every method may raise a ``credia.backends.BackendError``."""

    def __init__(self, base_url: str | None = None, timeout: float = 5.0, retries: int = 2) -> None:
        self.http = JsonClient("core-banking", base_url or settings.core_banking_url(), timeout, retries)

    async def products(self) -> list[dict[str, Any]]:
        return await self.http.request("GET", "/products")

    async def product(self, code: str) -> dict[str, Any]:
        return await self.http.request("GET", f"/products/{code}")

    async def find_customer(self, document_type: str, document_number: str) -> dict[str, Any] | None:
        """Return the customer with this document, or None when there is none."""
        found = await self.http.request(
            "GET", "/customers", params={"document_type": document_type, "document_number": document_number}
        )
        return found[0] if found else None

    async def customer(self, customer_id: int) -> dict[str, Any] | None:
        try:
            return await self.http.request("GET", f"/customers/{customer_id}")
        except NotFound:
            return None

    async def loans(self, customer_id: int) -> list[dict[str, Any]]:
        return await self.http.request("GET", f"/customers/{customer_id}/loans")

    async def loan(self, loan_id: int) -> dict[str, Any]:
        return await self.http.request("GET", f"/loans/{loan_id}")
