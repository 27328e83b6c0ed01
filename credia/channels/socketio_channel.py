"""Rasa's ``socketio`` channel where only the holder of a signed session token joins a conversation.

With Rasa's own channel anyone who knows (or guesses) a ``session_id`` sends ``session_request`` with it, joins
that conversation's room, receives the bot's and the agent's messages and writes as the customer (Rasa's
``jwt_key`` only guards the connection, not which session it joins). Here:

- ``session_request`` without a ``session_id`` starts a new conversation: the server picks the id and sends a
  ``session_token`` event ``{"session_id", "session_token"}`` before Rasa's usual ``session_confirm``;
- ``session_request`` with a ``session_id`` must carry its ``session_token``: a token signed by
  ``credia.channels.links`` (the same signature as the links that continue a conversation from another channel,
  secret ``CONVERSATION_LINK_SECRET``) for that very id and not expired (``WEBCHAT_SESSION_TTL_SECONDS``, 30
  days); otherwise the socket gets ``session_rejected`` ``{"reason", "detail"}`` and joins nothing;
- a message counts only on a socket whose session was confirmed, for that session (a different ``session_id``
  in the message is refused): the socket, not the message, says whose conversation it is;
- the input limits of ``credia.channels.guard`` apply (a polite answer on the socket, nothing processed), and
  the socket.io transport refuses packets over ``CREDIA_MAX_BODY_BYTES``.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any, Awaitable, Callable, Dict, Optional, Text

import rasa.core.channels.channel
from rasa.core.channels.channel import InputChannel, UserMessage
from rasa.core.channels.socketio import SocketBlueprint, SocketIOOutput
from rasa.core.channels.socketio import SocketIOInput as RasaSocketIOInput
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse
from socketio import AsyncServer

from credia import settings
from credia.channels.guard import guard
from credia.channels.links import ConversationTokenError, sign_conversation_link, verify_conversation_token

logger = logging.getLogger(__name__)

DEFAULT_SESSION_TTL_SECONDS = 30 * 24 * 60 * 60
SESSION_REJECTED = {
    "missing": "Para continuar esta conversación hace falta su acceso. Empezamos una nueva.",
    "malformed": "No pudimos validar su conversación. Empezamos una nueva.",
    "signature": "No pudimos validar su conversación. Empezamos una nueva.",
    "expired": "Su conversación anterior venció en este dispositivo. Empezamos una nueva.",
    "unconfirmed": "Su conversación no está abierta en esta pestaña. Vuelva a cargar la página, por favor.",
}


def session_ttl_seconds() -> int:
    return settings.env_int("WEBCHAT_SESSION_TTL_SECONDS", DEFAULT_SESSION_TTL_SECONDS)


def issue_session_token(session_id: str, secret: Optional[str] = None) -> str:
    """The token that lets a browser rejoin ``session_id`` (``credia.channels.links`` signature)."""
    return sign_conversation_link(session_id, session_ttl_seconds(), secret=secret)


class SocketIOInput(RasaSocketIOInput):
    """``/socket.io``: Rasa's socket.io channel with signed session ids and input limits."""

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> InputChannel:
        channel = super().from_credentials(credentials)
        if channel.session_persistence:  # type: ignore[attr-defined]
            try:
                settings.conversation_link_secret()
            except RuntimeError as exc:
                raise RuntimeError(f"socketio channel: {exc}") from None
        return channel

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        limits = guard()
        sio = AsyncServer(
            async_mode="sanic", cors_allowed_origins=[], max_http_buffer_size=limits.limits.max_body_bytes
        )
        webhook = SocketBlueprint(sio, self.socketio_path, "socketio_webhook", __name__)
        self.sio = sio

        @webhook.route("/", methods=["GET"])
        async def health(_request: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @sio.on("connect", namespace=self.namespace)
        async def connect(_sid: Text, _environ: Dict, auth: Optional[Dict]) -> bool:
            if not self.jwt_key:
                return True
            token = auth.get("token") if isinstance(auth, dict) else None
            return bool(token) and bool(
                rasa.core.channels.channel.decode_bearer_token(token, self.jwt_key, self.jwt_algorithm)
            )

        async def reject(sid: str, reason: str) -> None:
            await sio.emit("session_rejected", {"reason": reason, "detail": SESSION_REJECTED[reason]},
                           room=sid, namespace=self.namespace)

        @sio.on("session_request", namespace=self.namespace)
        async def session_request(sid: Text, data: Any) -> None:
            data = data if isinstance(data, dict) else {}
            session_id = data.get("session_id")
            if not self.session_persistence:
                await sio.emit("session_confirm", sid, room=sid, namespace=self.namespace)
                return
            if session_id:
                token = data.get("session_token")
                if not isinstance(token, str) or not token:
                    await reject(sid, "missing")
                    return
                try:
                    if verify_conversation_token(token) != session_id:
                        raise ConversationTokenError("signature", "the token is for another session")
                except ConversationTokenError as exc:
                    logger.info("socket.io session refused (%s)", exc.reason)
                    await reject(sid, exc.reason)
                    return
            else:
                session_id = uuid.uuid4().hex
            previous = (await sio.get_session(sid, namespace=self.namespace)).get("session_id")
            if previous and previous != session_id:
                sio.leave_room(sid, previous, namespace=self.namespace)
            sio.enter_room(sid, session_id, namespace=self.namespace)
            await sio.save_session(sid, {"session_id": session_id}, namespace=self.namespace)
            await sio.emit("session_token", {"session_id": session_id,
                                             "session_token": issue_session_token(session_id)},
                           room=sid, namespace=self.namespace)
            await sio.emit("session_confirm", session_id, room=sid, namespace=self.namespace)

        @sio.on(self.user_message_evt, namespace=self.namespace)
        async def handle_message(sid: Text, data: Any) -> None:
            data = data if isinstance(data, dict) else {}
            if self.session_persistence:
                sender_id = (await sio.get_session(sid, namespace=self.namespace)).get("session_id")
                if not sender_id or data.get("session_id") not in (None, sender_id):
                    await reject(sid, "unconfirmed")
                    return
            else:
                sender_id = sid
            text = data.get("message", "")
            if not isinstance(text, str):
                return
            output = SocketIOOutput(sio, self.bot_message_evt)
            verdict = await limits.check(sender_id, text)
            if not verdict.allowed:
                await limits.answer_refused(output, sid, verdict)
                return
            await on_new_message(UserMessage(text, output, sender_id, input_channel=self.name(),
                                             metadata=self._metadata(data)))

        return webhook

    def _metadata(self, data: Dict[str, Any]) -> Dict[str, Any]:
        metadata = data.get(self.metadata_key) or {}
        if isinstance(metadata, str):
            try:
                metadata = json.loads(metadata)
            except ValueError:
                return {}
        return metadata if isinstance(metadata, dict) else {}
