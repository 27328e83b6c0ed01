"""Rasa's ``rest`` channel with the input limits of ``credia.channels.guard`` and a checked request.

Same URL (``/webhooks/rest/webhook``), same request and answer as Rasa's ``RestInput``, plus:

- the body is read up to ``CREDIA_MAX_BODY_BYTES`` (413 beyond), must be a JSON object with a non-empty string
  ``sender`` (at most 256 characters), a string ``message`` and, if any, an object ``metadata`` (400 otherwise,
  where Rasa's own channel fails with 500 or passes ``None`` on);
- a message longer than ``CREDIA_MAX_TEXT_CHARS`` gets 413 and a flood 429 (``Retry-After``), not processed;
- the conversation's input channel is always ``rest``: Rasa lets the caller name any channel, which would make
  the reminders and payment announcements pick a channel the customer never wrote on.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Awaitable, Callable, Dict, Optional, Text, Union

import rasa.utils.endpoints
from rasa.core.channels.channel import CollectingOutputChannel, UserMessage
from rasa.core.channels.rest import RestInput as RasaRestInput
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse, ResponseStream

from credia.channels.guard import BodyTooLarge, guard, read_body

logger = logging.getLogger(__name__)

MAX_SENDER_CHARS = 256


class BadRequest(ValueError):
    """The request is not a REST channel message; the reason goes back with 400."""


def parse_message(body: bytes) -> tuple[str, str, Optional[Dict[str, Any]]]:
    """Sender, text and metadata of a REST request body; ``BadRequest`` with the reason otherwise."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the body must be JSON") from None
    if not isinstance(payload, dict):
        raise BadRequest("the body must be a JSON object")
    sender, text, metadata = payload.get("sender"), payload.get("message"), payload.get("metadata")
    if not isinstance(sender, str) or not sender.strip():
        raise BadRequest("sender must be a non-empty string")
    if len(sender) > MAX_SENDER_CHARS:
        raise BadRequest(f"sender must be at most {MAX_SENDER_CHARS} characters")
    if not isinstance(text, str):
        raise BadRequest("message must be a string")
    if metadata is not None and not isinstance(metadata, dict):
        raise BadRequest("metadata must be a JSON object")
    return sender, text, metadata


class RestInput(RasaRestInput):
    """``POST /webhooks/rest/webhook``: one customer message, the bot's answers in the response."""

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[None]]) -> Blueprint:
        webhook = Blueprint("credia_rest_webhook", __name__)

        @webhook.route("/", methods=["GET"])
        async def health(_request: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @webhook.route("/webhook", methods=["POST"], stream=True)
        async def receive(request: Request) -> Union[ResponseStream, HTTPResponse]:
            limits = guard()
            try:
                sender, text, metadata = parse_message(await read_body(request, limits.limits.max_body_bytes))
            except BodyTooLarge as exc:
                return response.json({"detail": str(exc)}, status=413)
            except BadRequest as exc:
                return response.json({"detail": str(exc)}, status=400)
            verdict = await limits.check(sender, text)
            if not verdict.allowed:
                status, detail = limits.detail_for(verdict)
                headers = {"Retry-After": str(limits.limits.window_seconds)} if status == 429 else {}
                return response.json({"detail": detail, "text": limits.reply_for(verdict)}, status=status,
                                     headers=headers)
            if rasa.utils.endpoints.bool_arg(request, "stream", default=False):
                return response.stream(
                    self.stream_response(on_new_message, text, sender, self.name(), metadata),
                    content_type="text/event-stream",
                )
            collector = CollectingOutputChannel()
            try:
                await on_new_message(UserMessage(text, collector, sender, input_channel=self.name(),
                                                 metadata=metadata))
            except asyncio.CancelledError:
                logger.error("REST message of %s timed out", sender)
            except Exception:  # noqa: BLE001 (as Rasa's channel: the answers so far, the failure logged)
                logger.exception("REST message of %s failed", sender)
            return response.json(collector.messages)

        return webhook

    @classmethod
    def name(cls) -> Text:
        return "rest"
