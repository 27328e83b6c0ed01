"""The one interface between the assistant and an agent desk.

A lender with its own desk implements these three calls (HTTP, JSON, ``Authorization: Bearer <DESK_API_TOKEN>``)
and points ``DESK_URL`` at it; nothing else in the assistant knows about the desk:

- ``POST /api/handoffs``: open a handoff with the conversation's context; answers ``status`` ``queued`` (a
  person will take it; the bot pauses) or ``closed`` / ``no_agents`` with ``callback_slots``;
- ``POST /api/handoffs/{conversation_id}/messages``: a customer message while a person has the conversation;
- ``POST /api/tickets``: a callback or a written ticket when nobody can take it now.

The desk answers through Rasa's HTTP API (bot events with ``metadata.from = "agent"``, then ``resume`` and the
external intent ``EXTERNAL_handoff_resolved``).
"""

from __future__ import annotations

from typing import Any

from credia import settings
from credia.backends.http import JsonClient


class DeskClient:
    """Typed calls to the desk; every method may raise a ``credia.backends.BackendError``."""

    def __init__(self, base_url: str | None = None, token: str | None = None, timeout: float = 5.0) -> None:
        token = token if token is not None else settings.env("DESK_API_TOKEN", "")
        self.headers = {"Authorization": f"Bearer {token}"}
        self.http = JsonClient("desk", base_url or settings.env("DESK_URL", "http://127.0.0.1:8003"), timeout)

    async def open_handoff(self, handoff: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
        return await self.http.request(
            "POST", "/api/handoffs", json=handoff, headers={**self.headers, "Idempotency-Key": idempotency_key}
        )

    async def forward_message(self, conversation_id: str, message: dict[str, Any]) -> dict[str, Any]:
        return await self.http.request(
            "POST", f"/api/handoffs/{conversation_id}/messages", json=message, headers=self.headers
        )

    async def open_ticket(self, ticket: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
        return await self.http.request(
            "POST", "/api/tickets", json=ticket, headers={**self.headers, "Idempotency-Key": idempotency_key}
        )

    async def record_survey(self, conversation_id: str, rating: int) -> dict[str, Any]:
        return await self.http.request(
            "POST", f"/api/handoffs/{conversation_id}/survey", json={"rating": rating}, headers=self.headers
        )
