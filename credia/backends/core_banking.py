"""Client for the core-banking service (mock or a lender's adapter exposing the same API)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
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

    async def loan_payments(self, loan_id: int) -> list[dict[str, Any]]:
        """Payments applied to a loan, oldest first."""
        return await self.http.request("GET", f"/loans/{loan_id}/payments")

    async def send_code(self, document_type: str, document_number: str) -> dict[str, Any]:
        """Send a one-time code by SMS to the phone on file; the answer is the same for unknown documents."""
        body = {"document_type": document_type, "document_number": document_number}
        return await self.http.request("POST", "/identity/codes", json=body)

    async def verify_identity(
        self,
        document_type: str,
        document_number: str,
        *,
        birth_date: date | str | None = None,
        challenge_id: str | None = None,
        code: str | None = None,
    ) -> dict[str, Any]:
        """Check one factor: ``birth_date``, or ``challenge_id`` with ``code``. A wrong factor, an unknown
        document and a locked one all answer ``verified: false``; ``locked_until`` says when a lock ends."""
        body = {
            "document_type": document_type,
            "document_number": document_number,
            "birth_date": birth_date.isoformat() if isinstance(birth_date, date) else birth_date,
            "challenge_id": challenge_id,
            "code": code,
        }
        return await self.http.request("POST", "/identity/verifications", json=body)

    async def plan_offers(
        self, loan_id: int, monthly_amount: Decimal | str | None = None, channel: str = "api"
    ) -> dict[str, Any]:
        """Store and return the plans the policy allows on the loan's overdue debt, or the one plan for what the
        customer can pay a month; ``feasible: false`` with ``reason`` when there is none."""
        body = {"monthly_amount": None if monthly_amount is None else str(monthly_amount), "channel": channel}
        return await self.http.request("POST", f"/loans/{loan_id}/plan-offers", json=body)

    async def plan_offer(self, offer_id: str) -> dict[str, Any]:
        return await self.http.request("GET", f"/plan-offers/{offer_id}")

    async def accept_plan_offer(self, offer_id: str, channel: str) -> dict[str, Any]:
        """Book the offer as a payment plan (status active or pending_approval); accepting again is harmless."""
        return await self.http.request("POST", f"/plan-offers/{offer_id}/accept", json={"channel": channel})

    async def promise_terms(self, loan_id: int) -> dict[str, Any]:
        """Allowed amounts and dates of a promise to pay on the loan today, and the pending promise if any."""
        return await self.http.request("GET", f"/loans/{loan_id}/promise-terms")

    async def create_promise(
        self, loan_id: int, amount: Decimal | str, promised_date: date | str, channel: str
    ) -> dict[str, Any]:
        body = {
            "amount": str(amount),
            "promised_date": promised_date.isoformat() if isinstance(promised_date, date) else promised_date,
            "channel": channel,
        }
        return await self.http.request("POST", f"/loans/{loan_id}/promises", json=body)

    async def promises(
        self, since: date | None = None, until: date | None = None, channel: str | None = None
    ) -> list[dict[str, Any]]:
        """Promises made from ``since`` to ``until`` (days in Lima) on ``channel``, settled as kept or broken
        where due; for promise-kept rates."""
        params = {"from": since, "to": until, "channel": channel}
        return await self.http.request(
            "GET", "/promises", params={key: str(value) for key, value in params.items() if value is not None}
        )

    async def open_case(self, case: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
        """Open a case for a person (dispute, hardship, ...); the key makes a retried call return the same case."""
        return await self.http.request("POST", "/cases", json=case, headers={"Idempotency-Key": idempotency_key})

    async def sms_outbox(self, phone: str | None = None, document_number: str | None = None) -> list[dict[str, Any]]:
        """Mock core banking only: SMS sent to a phone or to a customer's document, newest first."""
        params = {key: value for key, value in (("phone", phone), ("document_number", document_number)) if value}
        return await self.http.request("GET", "/mock/sms", params=params)

    async def opt_out(self, channel: str, address: str, source: str) -> dict[str, Any]:
        """Withdraw contact consent on ``channel`` for the customer(s) reached at ``address`` (idempotent)."""
        body = {"channel": channel, "address": address, "source": source}
        return await self.http.request("POST", "/consents/opt-out", json=body)

    async def set_consent(self, customer_id: int, channel: str, granted: bool, source: str) -> dict[str, Any]:
        body = {"granted": granted, "source": source}
        return await self.http.request("PUT", f"/customers/{customer_id}/consents/{channel}", json=body)
