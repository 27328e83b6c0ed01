"""Payment notifications into the conversation where the customer asked for the link.

The payments service sends a signed ``payment.completed`` webhook here after core banking has applied the
payment. The link's metadata names the conversation; the payment enters it as the external intent
``EXTERNAL_payment_received`` (like Rasa's ``trigger_intent`` API) and the bot's answer goes out on the
channel the customer last wrote from (pushed live on the web chat). Each payment is announced once: a
repeated delivery finds the payment already in the tracker.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Awaitable, Callable, Dict, List, Optional, Text

from rasa.core.channels.channel import CollectingOutputChannel, InputChannel, OutputChannel, UserMessage
from rasa.shared.core.events import UserUttered
from rasa.shared.core.trackers import DialogueStateTracker
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from credia import settings
from credia.channels.guard import BodyTooLarge, guard, read_body
from credia.signing import SIGNATURE_HEADER, SignatureError, verify

logger = logging.getLogger(__name__)

PAYMENT_RECEIVED_INTENT = "EXTERNAL_payment_received"
PAYMENT_COMPLETED = "payment.completed"


def already_announced(tracker: DialogueStateTracker, payment_id: str) -> bool:
    return any(
        isinstance(event, UserUttered)
        and event.intent_name == PAYMENT_RECEIVED_INTENT
        and any(entity.get("entity") == "payment_id" and entity.get("value") == payment_id for entity in event.entities)
        for event in tracker.events
    )


def output_channel_for(request: Request, tracker: DialogueStateTracker) -> OutputChannel:
    """The output of the channel the customer last wrote from; collected (kept in the tracker) otherwise."""
    latest = tracker.get_latest_input_channel()
    for channel in getattr(request.app.ctx, "input_channels", None) or []:
        if channel.name() == latest:
            output = channel.get_output_channel()
            if output is not None:
                return output
    return CollectingOutputChannel()


def payment_entities(payload: Dict[str, Any]) -> List[Dict[str, Any]]:
    entities = [
        {"entity": "payment_id", "value": str(payload["payment_id"])},
        {"entity": "paid_amount", "value": str(payload.get("amount", ""))},
    ]
    if payload.get("loan_id") is not None:
        entities.append({"entity": "paid_loan_id", "value": str(payload["loan_id"])})
    return entities


class PaymentEventsInput(InputChannel):
    """``POST /webhooks/payment_events/webhook``: signed like every webhook of the payments service."""

    def __init__(self, secret: str) -> None:
        self.secret = secret

    @classmethod
    def name(cls) -> Text:
        return "payment_events"

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> InputChannel:
        secret = (credentials or {}).get("secret") or settings.payments_webhook_secret()
        return cls(secret)

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        webhook = Blueprint("payment_events_webhook", __name__)

        @webhook.route("/", methods=["GET"])
        async def health(_request: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @webhook.route("/webhook", methods=["POST"], stream=True)
        async def receive(request: Request) -> HTTPResponse:
            try:
                body = await read_body(request, guard().limits.max_body_bytes)
            except BodyTooLarge as exc:
                return response.json({"detail": str(exc)}, status=413)
            try:
                verify(self.secret, request.headers.get(SIGNATURE_HEADER), body)
            except SignatureError as exc:
                return response.json({"detail": f"invalid signature: {exc}"}, status=401)
            try:
                payload = json.loads(body)
            except ValueError:
                return response.json({"detail": "body is not valid JSON"}, status=400)
            if not isinstance(payload, dict) or not payload.get("payment_id"):
                return response.json({"detail": "a payment event with payment_id is required"}, status=400)
            metadata = payload.get("metadata") if isinstance(payload.get("metadata"), dict) else {}
            conversation_id = metadata.get("conversation_id")
            if payload.get("event") != PAYMENT_COMPLETED or not conversation_id:
                return response.json({"status": "ignored"})
            status = await self.announce(request, str(conversation_id), payload)
            return response.json({"status": status})

        return webhook

    async def announce(self, request: Request, conversation_id: str, payload: Dict[str, Any]) -> str:
        agent = request.app.ctx.agent
        async with agent.lock_store.lock(conversation_id):
            tracker = await agent.processor.fetch_tracker_and_update_session(conversation_id)
            if already_announced(tracker, str(payload["payment_id"])):
                return "duplicate"
            await agent.trigger_intent(
                intent_name=PAYMENT_RECEIVED_INTENT,
                entities=payment_entities(payload),
                output_channel=output_channel_for(request, tracker),
                tracker=tracker,
            )
        logger.info("payment %s announced in a conversation", payload["payment_id"])
        return "announced"
