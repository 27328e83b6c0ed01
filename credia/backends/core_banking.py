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

    async def simulate(self, product_code: str, amount: str, term_months: int) -> dict[str, Any]:
        """Installment, TEA, TCEA and total for a loan; nothing is stored."""
        body = {"product_code": product_code, "amount": amount, "term_months": term_months}
        return await self.http.request("POST", "/simulations", json=body)

    async def submit_application(self, application: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
        """Store and pre-evaluate an application; the key makes a retried submission return the same one."""
        return await self.http.request(
            "POST", "/applications", json=application, headers={"Idempotency-Key": idempotency_key}
        )

    async def accept_offer(self, application_id: int) -> dict[str, Any]:
        return await self.http.request("POST", f"/applications/{application_id}/accept-offer")

    async def lookup_applications(self, **identity: str) -> list[dict[str, Any]]:
        """Applications of the customer proven by ``identity`` (code + document, or document + birth date).

        Returns an empty list when nothing matches, whether or not the code exists.
        """
        try:
            found = await self.http.request("GET", "/applications/lookup", params=identity)
        except NotFound:
            return []
        return found if isinstance(found, list) else [found]

    async def application_documents(self, application_id: int) -> dict[str, Any]:
        """Required, received and missing documents of an application."""
        return await self.http.request("GET", f"/applications/{application_id}/documents")

    async def add_document(self, application_id: int, document: dict[str, Any]) -> dict[str, Any]:
        """Store a document (kind, filename, content_type, media_url or media_id) against an application."""
        return await self.http.request("POST", f"/applications/{application_id}/documents", json=document)
