"""WhatsApp Cloud API (Meta) connector: a Rasa input channel and its output channel.

Rasa 3.6 ships no WhatsApp Cloud channel. This one is built for how Meta delivers webhooks:

- every POST is signed (``X-Hub-Signature-256``, HMAC-SHA256 of the raw body with the app secret) and is
  rejected before anything is read from it when the signature is missing or wrong;
- delivery is at least once, so each message id is recorded in a SQL store (a unique key decides races, also
  between restarts and servers) and answered once;
- Meta wants a fast answer, so the webhook is acknowledged as soon as its messages are recorded and they are
  processed in the background, in order per customer; a message still unprocessed when the server stops is
  picked up at the next start;
- free text can only be sent within 24 hours of the customer's last message (the store knows when that was):
  outside that window the bot's text goes out in an approved template.

Responses are shaped by ``credia.channels.rendering``: up to 3 choices as reply buttons, 4 to 10 as a list,
more as numbered text (a "2" from the customer is then mapped back to the second payload).
"""

from __future__ import annotations

import asyncio
import json
import logging
import mimetypes
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import partial, wraps
from typing import Any, Awaitable, Callable, Dict, List, Mapping, Optional, Sequence, Text, Tuple, TypeVar

import aiohttp
from rasa.core.channels.channel import InputChannel, OutputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse
from sqlalchemy import JSON, Column, Index, Integer, String, UniqueConstraint, delete, func, select, update
from sqlalchemy import Text as SQLText
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import declarative_base

from credia import settings
from credia.channels.guard import BodyTooLarge, guard, read_body
from credia.channels.meta_webhook import (  # noqa: F401 (signature_of: the connector's API)
    MAX_BODY_BYTES,
    SIGNATURE_HEADER,
    handshake_challenge,
    signature_of,
    signature_problem,
)
from credia.channels.rendering import URL, Choice, choice_for_reply, choices_of, numbered_options, shorten, split_text
from credia.db import UTCDateTime, make_engine, make_session_factory, utcnow

logger = logging.getLogger(__name__)
T = TypeVar("T")

CHANNEL_NAME = "whatsapp"
SERVICE_WINDOW = timedelta(hours=24)

# Limits of the Cloud API for the messages this channel sends.
TEXT_LIMIT = 4096
BUTTONS_MAX = 3
BUTTON_TITLE_LIMIT = 20
BUTTON_ID_LIMIT = 256
BUTTON_BODY_LIMIT = 1024
LIST_ROWS_MAX = 10
ROW_TITLE_LIMIT = 24
ROW_ID_LIMIT = 200
ROW_DESCRIPTION_LIMIT = 72
LIST_BODY_LIMIT = 4096
LIST_BUTTON_LABEL = "Ver opciones"
# A template's body parameter: no new lines or tabs, and the approved text around it takes part of the 1,024.
TEMPLATE_PARAMETER_LIMIT = 900

# Graph API error codes (https://developers.facebook.com/documentation/business-messaging/whatsapp/support/error-codes).
WINDOW_CLOSED = 131047
RETRIABLE_CODES = frozenset({1, 2, 4, 80007, 130429, 131000, 131016, 131056})

# Message types that reach Rasa, and those recorded but not answered (a reaction is no request).
MEDIA_TYPES = ("image", "document", "audio")
SILENT_TYPES = ("reaction", "system", "request_welcome")

SEND_DOCUMENT = "/send_document"
UNSUPPORTED_REPLY = (
    "Disculpe, todavía no puedo leer ese tipo de mensaje. Puede escribirme su consulta en texto o enviarme una "
    "foto, un documento o su ubicación."
)
FAILURE_REPLY = (
    "Disculpe, tuve un problema para procesar su mensaje. ¿Podría enviarlo de nuevo en unos minutos? Si lo "
    "prefiere, escriba «asesor» para hablar con una persona."
)
DEFAULT_BODY = "Elija una opción:"


# --------------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class WhatsAppConfig:
    """Everything the connector needs; secrets come only from the environment (or credentials.yml)."""

    app_secret: str
    verify_token: str
    access_token: str
    phone_number_id: str
    graph_url: str = "https://graph.facebook.com/v23.0"
    template_name: str = "credia_aviso"
    template_language: str = "es"
    database_url: str = ""
    timeout_seconds: float = 10.0
    max_attempts: int = 4
    retry_base_seconds: float = 1.0
    # How long a stopping server lets conversation turns in progress finish; messages not started wait for the
    # next start.
    shutdown_grace_seconds: float = 10.0

    @classmethod
    def from_env(cls, overrides: Optional[Mapping[str, Any]] = None) -> "WhatsAppConfig":
        """Read the environment; a non-empty value in credentials.yml wins over it."""
        given = {key: str(value) for key, value in (overrides or {}).items() if value not in (None, "")}

        def value(key: str, default: str = "") -> str:
            return given.get(key) or settings.env(f"WHATSAPP_{key.upper()}", default)

        required = {key: value(key) for key in ("app_secret", "verify_token", "access_token", "phone_number_id")}
        missing = [f"WHATSAPP_{key.upper()}" for key, found in required.items() if not found]
        if missing:
            raise RuntimeError(
                f"The WhatsApp channel needs {', '.join(missing)}; the launcher sets them for a run, or export "
                "your own (Meta app secret, webhook verify token, access token, phone number id)."
            )
        return cls(
            **required,
            graph_url=value("graph_url", cls.graph_url).rstrip("/"),
            template_name=value("template_name", cls.template_name),
            template_language=value("template_language", cls.template_language),
            database_url=given.get("database_url") or settings.channels_database_url(),
            timeout_seconds=settings.env_float("WHATSAPP_TIMEOUT_SECONDS", cls.timeout_seconds),
            max_attempts=max(1, settings.env_int("WHATSAPP_MAX_ATTEMPTS", cls.max_attempts)),
            retry_base_seconds=settings.env_float("WHATSAPP_RETRY_BASE_SECONDS", cls.retry_base_seconds),
        )


# ---------------------------------------------------------------------------------------------------- inbound


@dataclass(frozen=True)
class InboundMessage:
    """A customer's message as Rasa will get it; ``kind`` is ``message``, ``unsupported`` or ``silent``."""

    message_id: str
    sender_id: str
    kind: str
    text: str
    metadata: Dict[str, Any]
    sent_at: datetime

    def to_json(self) -> Dict[str, Any]:
        return {"kind": self.kind, "text": self.text, "metadata": self.metadata}


@dataclass(frozen=True)
class InboundStatus:
    """What Meta reports about a message the bot sent."""

    message_id: str
    recipient_id: str
    status: str
    timestamp: datetime
    errors: List[Dict[str, Any]] = field(default_factory=list)

    @property
    def error_codes(self) -> List[int]:
        return [error["code"] for error in self.errors if isinstance(error.get("code"), int)]


def _timestamp(raw: Any) -> datetime:
    try:
        return datetime.fromtimestamp(int(raw), tz=timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        return utcnow()


def _dicts(value: Any) -> List[Dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _contact_for(message: Dict[str, Any], contacts: List[Dict[str, Any]]) -> Dict[str, Any]:
    """The contact entry of the message's sender (one POST may carry several senders)."""
    for contact in contacts:
        if (message.get("from") and contact.get("wa_id") == message.get("from")) or (
            message.get("from_user_id") and contact.get("user_id") == message.get("from_user_id")
        ):
            return contact
    return contacts[0] if len(contacts) == 1 else {}


def _filename(kind: str, media: Dict[str, Any], content_type: str) -> str:
    if media.get("filename"):
        return str(media["filename"])
    extension = mimetypes.guess_extension(content_type) or ""
    return f"{kind}-{media.get('id', 'archivo')}{extension}"


def _location_text(location: Dict[str, Any]) -> str:
    place = ", ".join(str(location[key]) for key in ("name", "address") if location.get(key))
    coordinates = f"{location.get('latitude')}, {location.get('longitude')}"
    return f"Ubicación compartida: {place} ({coordinates})" if place else f"Ubicación compartida: {coordinates}"


def _content(message: Dict[str, Any]) -> Tuple[str, str, Dict[str, Any]]:
    """Kind, text and extra metadata of one message, by its WhatsApp type."""
    kind = str(message.get("type", ""))
    body = message.get(kind) if isinstance(message.get(kind), dict) else {}
    if kind == "text" and body.get("body"):
        return "message", str(body["body"]), {}
    if kind == "interactive":
        reply = body.get(str(body.get("type"))) if isinstance(body.get(str(body.get("type"))), dict) else {}
        if body.get("type") in ("button_reply", "list_reply") and reply.get("id"):
            return "message", str(reply["id"]), {"reply_title": reply.get("title")}
    if kind == "button" and (body.get("payload") or body.get("text")):
        return "message", str(body.get("payload") or body.get("text")), {"reply_title": body.get("text")}
    if kind == "location" and "latitude" in body and "longitude" in body:
        location = {key: body.get(key) for key in ("latitude", "longitude", "name", "address", "url")}
        return "message", _location_text(body), {"location": location}
    if kind in MEDIA_TYPES and body.get("id"):
        content_type = str(body.get("mime_type") or "application/octet-stream").split(";")[0].strip()
        attachment = {
            "filename": _filename(kind, body, content_type),
            "content_type": content_type,
            "media_id": str(body["id"]),
        }
        extra: Dict[str, Any] = {"attachments": [attachment]}
        if body.get("caption"):
            extra["caption"] = str(body["caption"])
        return "message", SEND_DOCUMENT, extra
    if kind in SILENT_TYPES:
        return "silent", "", {}
    return "unsupported", "", {}


def parse_message(message: Dict[str, Any], contacts: List[Dict[str, Any]], phone_number_id: Any) -> InboundMessage:
    """One entry of ``value.messages`` as an ``InboundMessage``; raises ``ValueError`` when it has no id or sender."""
    contact = _contact_for(message, contacts)
    wa_id = contact.get("wa_id") or message.get("from")
    user_id = contact.get("user_id") or message.get("from_user_id")
    sender_id = wa_id or user_id
    if not message.get("id") or not sender_id:
        raise ValueError("message without id or sender")
    kind, text, extra = _content(message)
    profile = contact.get("profile") if isinstance(contact.get("profile"), dict) else {}
    whatsapp = {
        "wa_id": wa_id,
        "user_id": user_id,
        "profile_name": profile.get("name"),
        "message_id": str(message["id"]),
        "timestamp": message.get("timestamp"),
        "type": message.get("type"),
        "phone_number_id": phone_number_id,
    }
    context = message.get("context") if isinstance(message.get("context"), dict) else {}
    if context.get("id"):
        whatsapp["reply_to"] = context["id"]
    return InboundMessage(
        message_id=str(message["id"]),
        sender_id=str(sender_id),
        kind=kind,
        text=text,
        metadata={"whatsapp": whatsapp, **extra},
        sent_at=_timestamp(message.get("timestamp")),
    )


def parse_status(status: Dict[str, Any]) -> InboundStatus:
    recipient = status.get("recipient_id") or status.get("recipient_user_id")
    if not status.get("id") or not status.get("status") or not recipient:
        raise ValueError("status without id, status or recipient")
    return InboundStatus(
        message_id=str(status["id"]),
        recipient_id=str(recipient),
        status=str(status["status"]),
        timestamp=_timestamp(status.get("timestamp")),
        errors=_dicts(status.get("errors")),
    )


def parse_webhook(payload: Dict[str, Any]) -> Tuple[List[InboundMessage], List[InboundStatus]]:
    """Every message and status of every entry and change; malformed items are logged and skipped."""
    messages: List[InboundMessage] = []
    statuses: List[InboundStatus] = []
    for entry in _dicts(payload.get("entry")):
        for change in _dicts(entry.get("changes")):
            value = change.get("value") if isinstance(change.get("value"), dict) else {}
            if change.get("field", "messages") != "messages":
                logger.info("WhatsApp webhook field %r ignored", change.get("field"))
                continue
            for error in _dicts(value.get("errors")):
                logger.warning("WhatsApp reported error %s: %s", error.get("code"), error.get("title"))
            metadata = value.get("metadata") if isinstance(value.get("metadata"), dict) else {}
            contacts = _dicts(value.get("contacts"))
            batch: List[InboundMessage] = []
            for raw in _dicts(value.get("messages")):
                try:
                    batch.append(parse_message(raw, contacts, metadata.get("phone_number_id")))
                except ValueError:
                    logger.warning("WhatsApp message skipped: it has no id or sender")
            # Within one change Meta may list messages out of order; the customer wrote them by timestamp.
            messages.extend(sorted(batch, key=lambda message: message.sent_at))
            for raw in _dicts(value.get("statuses")):
                try:
                    statuses.append(parse_status(raw))
                except ValueError:
                    logger.warning("WhatsApp status skipped: it has no id, status or recipient")
    return messages, statuses


# ------------------------------------------------------------------------------------------------------ store

Base: Any = declarative_base()


class InboundRow(Base):
    """Every customer message ever received: de-duplication, the service window, and the work still to do."""

    __tablename__ = "whatsapp_inbound"
    __table_args__ = (Index("ix_whatsapp_inbound_sender_sent", "sender_id", "sent_at"),)

    message_id = Column(String(255), primary_key=True)
    sender_id = Column(String(160), nullable=False)
    sent_at = Column(UTCDateTime(), nullable=False)
    received_at = Column(UTCDateTime(), nullable=False)
    content = Column(JSON, nullable=False)
    # received -> processing -> done | failed; silent messages are stored as done.
    state = Column(String(16), nullable=False, index=True)
    error = Column(SQLText, nullable=True)
    finished_at = Column(UTCDateTime(), nullable=True)


class StatusRow(Base):
    """Delivery statuses of the bot's messages (sent, delivered, read, failed with errors)."""

    __tablename__ = "whatsapp_statuses"
    __table_args__ = (UniqueConstraint("message_id", "status", name="uq_whatsapp_status"),)

    id = Column(Integer, primary_key=True, autoincrement=True)
    message_id = Column(String(255), nullable=False, index=True)
    recipient_id = Column(String(160), nullable=False)
    status = Column(String(16), nullable=False)
    timestamp = Column(UTCDateTime(), nullable=False)
    errors = Column(JSON, nullable=False)


class OutboundRow(Base):
    """The bot's accepted messages, so a later ``failed`` status (window closed) can be resent as a template."""

    __tablename__ = "whatsapp_outbound"

    message_id = Column(String(255), primary_key=True)
    recipient_id = Column(String(160), nullable=False)
    kind = Column(String(16), nullable=False)
    text = Column(SQLText, nullable=False)
    sent_at = Column(UTCDateTime(), nullable=False)


class ChoicesRow(Base):
    """Choices last offered as numbered text, so a "2" from the customer picks the second payload."""

    __tablename__ = "whatsapp_choices"

    recipient_id = Column(String(160), primary_key=True)
    choices = Column(JSON, nullable=False)
    offered_at = Column(UTCDateTime(), nullable=False)


def off_loop(method: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    """Run a blocking store method in a worker thread, so the event loop keeps acknowledging webhooks."""

    @wraps(method)
    async def run(*args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(method, *args, **kwargs)

    return run


class ChannelStore:
    """SQL state of the connector (SQLite by default, PostgreSQL by URL); every call runs off the event loop."""

    def __init__(self, database_url: str) -> None:
        self.engine = make_engine(database_url)
        Base.metadata.create_all(self.engine)
        self.sessions = make_session_factory(self.engine)

    def _insert(self, row: Any) -> bool:
        """``False`` when a unique key says the row is already there (the database decides races)."""
        with self.sessions() as session:
            session.add(row)
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                return False
        return True

    @off_loop
    def add_inbound(self, message: InboundMessage) -> bool:
        """Record a message; ``False`` when its id was already recorded (a redelivery)."""
        now = utcnow()
        silent = message.kind == "silent"
        return self._insert(InboundRow(
            message_id=message.message_id,
            sender_id=message.sender_id,
            sent_at=message.sent_at,
            received_at=now,
            content=message.to_json(),
            state="done" if silent else "received",
            finished_at=now if silent else None,
        ))

    @off_loop
    def claim(self, message_id: str) -> bool:
        """Take a received message for processing; ``False`` when another worker or server took it first."""
        with self.sessions() as session:
            result = session.execute(
                update(InboundRow)
                .where(InboundRow.message_id == message_id, InboundRow.state == "received")
                .values(state="processing")
            )
            session.commit()
            return result.rowcount == 1

    @off_loop
    def finish(self, message_id: str, error: Optional[str] = None) -> None:
        with self.sessions() as session:
            session.execute(
                update(InboundRow)
                .where(InboundRow.message_id == message_id)
                .values(state="failed" if error else "done", error=error, finished_at=utcnow())
            )
            session.commit()

    @off_loop
    def unprocessed(self, since: datetime) -> List[InboundMessage]:
        """Messages recorded but never taken (the server stopped first), oldest first."""
        with self.sessions() as session:
            rows = session.scalars(
                select(InboundRow)
                .where(InboundRow.state == "received", InboundRow.sent_at >= since)
                .order_by(InboundRow.received_at, InboundRow.sent_at)
            ).all()
        return [
            InboundMessage(row.message_id, row.sender_id, row.content["kind"], row.content["text"],
                           row.content["metadata"], row.sent_at)
            for row in rows
        ]

    @off_loop
    def state_of(self, message_id: str) -> Optional[str]:
        with self.sessions() as session:
            return session.scalar(select(InboundRow.state).where(InboundRow.message_id == message_id))

    @off_loop
    def window_open(self, recipient_id: str) -> bool:
        """Whether free text may be sent: the customer wrote within the last 24 hours."""
        with self.sessions() as session:
            last = session.scalar(select(func.max(InboundRow.sent_at)).where(InboundRow.sender_id == recipient_id))
        return last is not None and utcnow() - last < SERVICE_WINDOW

    @off_loop
    def add_status(self, status: InboundStatus) -> bool:
        """Record a delivery status; ``False`` when the same status of the same message was already recorded."""
        return self._insert(StatusRow(
            message_id=status.message_id,
            recipient_id=status.recipient_id,
            status=status.status,
            timestamp=status.timestamp,
            errors=status.errors,
        ))

    @off_loop
    def statuses(self, message_id: str) -> List[Dict[str, Any]]:
        with self.sessions() as session:
            rows = session.scalars(select(StatusRow).where(StatusRow.message_id == message_id).order_by(StatusRow.id))
            return [{"status": row.status, "errors": row.errors, "timestamp": row.timestamp} for row in rows]

    @off_loop
    def add_outbound(self, message_id: str, recipient_id: str, kind: str, text: str) -> None:
        with self.sessions() as session:
            session.merge(OutboundRow(
                message_id=message_id, recipient_id=recipient_id, kind=kind, text=text, sent_at=utcnow()
            ))
            session.commit()

    @off_loop
    def outbound(self, message_id: str) -> Optional[Tuple[str, str, str]]:
        """Recipient, kind and text of a message the bot sent."""
        with self.sessions() as session:
            row = session.get(OutboundRow, message_id)
            return (row.recipient_id, row.kind, row.text) if row else None

    @off_loop
    def offer_choices(self, recipient_id: str, choices: Sequence[Choice]) -> None:
        with self.sessions() as session:
            session.merge(ChoicesRow(
                recipient_id=recipient_id, choices=[[c.title, c.payload] for c in choices], offered_at=utcnow()
            ))
            session.commit()

    @off_loop
    def take_choices(self, recipient_id: str) -> List[Choice]:
        """The numbered choices offered to the customer, forgotten once they answer."""
        with self.sessions() as session:
            row = session.get(ChoicesRow, recipient_id)
            if row is None:
                return []
            session.execute(delete(ChoicesRow).where(ChoicesRow.recipient_id == recipient_id))
            session.commit()
            return [Choice(title, payload) for title, payload in row.choices]

    def close(self) -> None:
        self.engine.dispose()


# ---------------------------------------------------------------------------------------------------- Graph API


class GraphError(Exception):
    """A send the Graph API refused, or that never got an answer (``status`` 0)."""

    def __init__(self, status: int, code: Optional[int], message: str, retry_after: Optional[float] = None) -> None:
        super().__init__(f"HTTP {status}, code {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after

    @property
    def retriable(self) -> bool:
        """Rate limits, Meta's temporary errors, 5xx and network failures pass; a retry may then succeed."""
        return self.code in RETRIABLE_CODES or self.status == 0 or self.status == 429 or self.status >= 500

    @property
    def window_closed(self) -> bool:
        return self.code == WINDOW_CLOSED


def recipient_fields(recipient_id: str) -> Dict[str, str]:
    """A phone number goes in ``to``; a business-scoped user id (``US.1349...``) in ``recipient``."""
    digits = recipient_id.lstrip("+")
    return {"to": digits} if digits.isdigit() else {"recipient": recipient_id}


class GraphClient:
    """Sends messages with retries and backoff; non-blocking (aiohttp), with a timeout on every call."""

    def __init__(self, config: WhatsAppConfig) -> None:
        self.config = config
        self.url = f"{config.graph_url}/{config.phone_number_id}/messages"
        self._session: Optional[aiohttp.ClientSession] = None
        self._session_loop: Optional[asyncio.AbstractEventLoop] = None

    def _http(self) -> aiohttp.ClientSession:
        # A session belongs to the loop it was made in; tests and servers may run several loops in turn.
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._session_loop is not loop:
            self._session_loop = loop
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.config.timeout_seconds),
                headers={"Authorization": f"Bearer {self.config.access_token}"},
            )
        return self._session

    async def send(self, recipient_id: str, message: Dict[str, Any]) -> str:
        """Send one message and return its ``wamid``; raise ``GraphError`` once retrying cannot help."""
        body = {"messaging_product": "whatsapp", "recipient_type": "individual", **recipient_fields(recipient_id),
                **message}
        attempt = 1
        while True:
            try:
                return await self._post(body)
            except GraphError as error:
                if not error.retriable or attempt >= self.config.max_attempts:
                    raise
                delay = self.config.retry_base_seconds * 2 ** (attempt - 1)
                delay = min(error.retry_after or delay, 60.0) * random.uniform(1.0, 1.25)
                logger.warning("WhatsApp send attempt %d failed (%s); retrying in %.1fs", attempt, error, delay)
                await asyncio.sleep(delay)
                attempt += 1

    async def _post(self, body: Dict[str, Any]) -> str:
        try:
            async with self._http().post(self.url, json=body) as reply:
                status, text = reply.status, (await reply.read()).decode("utf-8", "replace")
                retry_after = reply.headers.get("Retry-After")
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise GraphError(0, None, f"no answer from the Graph API: {exc!r}") from exc
        try:
            data = json.loads(text)
        except ValueError:
            data = {}
        if 200 <= status < 300 and isinstance(data, dict) and _dicts(data.get("messages")):
            return str(data["messages"][0].get("id", ""))
        error = data.get("error") if isinstance(data, dict) and isinstance(data.get("error"), dict) else {}
        details = (error.get("error_data") or {}).get("details") if isinstance(error.get("error_data"), dict) else None
        code = error.get("code") if isinstance(error.get("code"), int) else None
        seconds = float(retry_after) if retry_after and retry_after.isdigit() else None
        raise GraphError(status, code, details or error.get("message") or text[:200], seconds)

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()


# ---------------------------------------------------------------------------------------------------- outbound


def split_body(text: str, limit: int) -> Tuple[List[str], str]:
    """The text before an interactive message (sent as plain text) and the part that fits its body."""
    text = (text or "").strip()
    parts = split_text(text, limit)
    if not parts:
        return [], DEFAULT_BODY
    body = parts[-1]
    head = text[: -len(body)].strip() if text.endswith(body) else "\n\n".join(parts[:-1])
    return split_text(head, TEXT_LIMIT), body


def _distinct_within(values: Sequence[str], limit: int) -> bool:
    """Ids and titles of one message must be distinct, non-empty and fit their limit."""
    return len(set(values)) == len(values) and all(1 <= len(value) <= limit for value in values)


def reply_buttons(body: str, choices: Sequence[Choice]) -> Optional[Dict[str, Any]]:
    """Up to 3 choices as reply buttons; ``None`` when they cannot be (ids too long, titles not distinct)."""
    titles = [shorten(choice.title, BUTTON_TITLE_LIMIT) for choice in choices]
    ids = [choice.payload for choice in choices]
    if len(choices) > BUTTONS_MAX or not _distinct_within(ids, BUTTON_ID_LIMIT) or not _distinct_within(
        titles, BUTTON_TITLE_LIMIT
    ):
        return None
    buttons = [{"type": "reply", "reply": {"id": id_, "title": title}} for id_, title in zip(ids, titles)]
    return {"type": "interactive", "interactive": {"type": "button", "body": {"text": body},
                                                   "action": {"buttons": buttons}}}


def list_message(body: str, choices: Sequence[Choice]) -> Optional[Dict[str, Any]]:
    """Up to 10 choices as a list; a title cut to fit its row shows whole in the row's description."""
    if len(choices) > LIST_ROWS_MAX or not _distinct_within([choice.payload for choice in choices], ROW_ID_LIMIT):
        return None
    rows = []
    for choice in choices:
        row = {"id": choice.payload, "title": shorten(choice.title, ROW_TITLE_LIMIT)}
        if row["title"] != choice.title:
            row["description"] = shorten(choice.title, ROW_DESCRIPTION_LIMIT)
        rows.append(row)
    return {"type": "interactive", "interactive": {"type": "list", "body": {"text": body},
                                                   "action": {"button": LIST_BUTTON_LABEL,
                                                              "sections": [{"rows": rows}]}}}


def template_parameter(text: str) -> str:
    """A template body parameter: Meta refuses new lines, tabs and runs of spaces in one."""
    return shorten(" ".join(text.split()), TEMPLATE_PARAMETER_LIMIT) or "-"


class WhatsAppOutput(OutputChannel):
    """Sends the bot's responses through the Graph API, in WhatsApp's shapes and within its rules."""

    def __init__(self, client: GraphClient, store: ChannelStore) -> None:
        self.client = client
        self.store = store

    @classmethod
    def name(cls) -> Text:
        return CHANNEL_NAME

    def template(self, text: str) -> Dict[str, Any]:
        """The approved template (configurable) that carries ``text`` outside the service window."""
        config = self.client.config
        return {
            "type": "template",
            "template": {
                "name": config.template_name,
                "language": {"code": config.template_language},
                "components": [{"type": "body", "parameters": [{"type": "text", "text": template_parameter(text)}]}],
            },
        }

    async def deliver(
        self, recipient_id: str, message: Dict[str, Any], fallback_text: str, choices: Sequence[Choice] = ()
    ) -> Optional[str]:
        """Send ``message``, or a template with ``fallback_text`` when the window is closed; errors are logged.

        ``choices`` are offered as numbered text when the template replaces buttons or a list.
        """
        if message.get("type") != "template" and await self.store.window_open(recipient_id):
            try:
                return await self._send(recipient_id, message, str(message.get("type")), fallback_text)
            except GraphError as error:
                if not error.window_closed:
                    logger.error("WhatsApp message not sent: %s", error)
                    return None
                logger.info("WhatsApp service window closed for a customer; sending the template")
        if message.get("type") == "template":
            template = message
        else:
            if choices:
                await self.store.offer_choices(recipient_id, choices)
                fallback_text = numbered_options(fallback_text, choices)
            template = self.template(fallback_text)
        try:
            return await self._send(recipient_id, template, "template", fallback_text)
        except GraphError as error:
            logger.error("WhatsApp template not sent: %s", error)
            return None

    async def _send(self, recipient_id: str, message: Dict[str, Any], kind: str, text: str) -> str:
        message_id = await self.client.send(recipient_id, message)
        await self.store.add_outbound(message_id, recipient_id, kind, text)
        return message_id

    async def send_text_message(self, recipient_id: Text, text: Text, **kwargs: Any) -> None:
        for part in split_text(text or "", TEXT_LIMIT):
            message = {"type": "text", "text": {"body": part, "preview_url": bool(URL.search(part))}}
            await self.deliver(recipient_id, message, part)

    async def send_text_with_buttons(
        self, recipient_id: Text, text: Text, buttons: List[Dict[Text, Any]], **kwargs: Any
    ) -> None:
        choices = choices_of(buttons)
        if not choices:
            await self.send_text_message(recipient_id, text)
            return
        if len(choices) > LIST_ROWS_MAX:
            await self.send_numbered(recipient_id, text, choices)
            return
        few = len(choices) <= BUTTONS_MAX
        lead, body = split_body(text, BUTTON_BODY_LIMIT if few else LIST_BODY_LIMIT)
        message = reply_buttons(body, choices) if few else list_message(body, choices)
        if message is None:
            await self.send_numbered(recipient_id, text, choices)
            return
        for part in lead:
            await self.send_text_message(recipient_id, part)
        await self.deliver(recipient_id, message, body, choices)

    async def send_quick_replies(
        self, recipient_id: Text, text: Text, quick_replies: List[Dict[Text, Any]], **kwargs: Any
    ) -> None:
        await self.send_text_with_buttons(recipient_id, text, quick_replies)

    async def send_numbered(self, recipient_id: str, text: str, choices: Sequence[Choice]) -> None:
        """Choices as numbered text; the customer's "2" is mapped back to the second payload."""
        await self.store.offer_choices(recipient_id, choices)
        await self.send_text_message(recipient_id, numbered_options(text or "", choices))

    async def send_image_url(self, recipient_id: Text, image: Text, **kwargs: Any) -> None:
        message = {"type": "image", "image": {"link": image}}
        await self.deliver(recipient_id, message, f"Le enviamos una imagen: {image}")

    async def send_attachment(self, recipient_id: Text, attachment: Any, **kwargs: Any) -> None:
        """A document by URL; Rasa gives a URL, a custom action may give ``{"url", "filename", "caption"}``."""
        details = attachment if isinstance(attachment, dict) else {"url": str(attachment)}
        link = str(details.get("url") or details.get("link") or "")
        if not link:
            logger.warning("WhatsApp attachment without a URL ignored")
            return
        document = {"link": link, "filename": details.get("filename") or link.rsplit("/", 1)[-1].split("?")[0]}
        if details.get("caption"):
            document["caption"] = str(details["caption"])
        await self.deliver(recipient_id, {"type": "document", "document": document},
                           f"Le enviamos un documento: {link}")

    async def send_custom_json(self, recipient_id: Text, json_message: Dict[Text, Any], **kwargs: Any) -> None:
        """A WhatsApp message object written by a designer or an action (``{"whatsapp": {...}}`` or bare)."""
        message = json_message.get("whatsapp", json_message) if isinstance(json_message, dict) else None
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            logger.warning("custom response without a WhatsApp message type ignored on WhatsApp")
            return
        text = message.get("text", {}).get("body", "") if isinstance(message.get("text"), dict) else ""
        await self.deliver(recipient_id, message, text or "Tenemos un mensaje para usted.")


# ------------------------------------------------------------------------------------------------------ input


class SenderQueues:
    """One worker per customer: each customer's messages in order, different customers in parallel."""

    def __init__(self) -> None:
        self._queues: Dict[str, asyncio.Queue] = {}
        self._workers: set = set()
        self.stopping = False

    def put(self, sender_id: str, job: Callable[[], Awaitable[None]]) -> None:
        """Queue a job; once stopping, nothing new starts (recorded messages are resumed at the next start)."""
        if self.stopping:
            return
        queue = self._queues.get(sender_id)
        if queue is None:
            queue = self._queues[sender_id] = asyncio.Queue()
            worker = asyncio.get_running_loop().create_task(self._drain(sender_id, queue))
            self._workers.add(worker)
            worker.add_done_callback(self._workers.discard)
        queue.put_nowait(job)

    async def _drain(self, sender_id: str, queue: asyncio.Queue) -> None:
        while not self.stopping:
            try:
                job = queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            try:
                await job()
            except Exception:  # noqa: BLE001 (one failure must not stop this customer's later messages)
                logger.exception("WhatsApp background job failed")
        # No await between the empty check and the removal: a new message starts a new worker.
        self._queues.pop(sender_id, None)

    async def stop(self, grace_seconds: float) -> None:
        """Start nothing new and give the jobs in progress ``grace_seconds`` to finish."""
        self.stopping = True
        if self._workers:
            await asyncio.wait(list(self._workers), timeout=grace_seconds)


class WhatsAppInput(InputChannel):
    """``/webhooks/whatsapp/webhook``: Meta's verification handshake (GET) and signed notifications (POST)."""

    def __init__(self, config: WhatsAppConfig, store: Optional[ChannelStore] = None) -> None:
        self.config = config
        self.store = store or ChannelStore(config.database_url)
        self.client = GraphClient(config)
        self.queues = SenderQueues()

    @classmethod
    def name(cls) -> Text:
        return CHANNEL_NAME

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> InputChannel:
        return cls(WhatsAppConfig.from_env(credentials))

    def get_output_channel(self) -> Optional[OutputChannel]:
        return WhatsAppOutput(self.client, self.store)

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        webhook = Blueprint("whatsapp_webhook", __name__)

        @webhook.listener("after_server_start")
        async def resume(_app: Any, _loop: Any) -> None:
            try:
                pending = await self.store.unprocessed(since=utcnow() - SERVICE_WINDOW)
            except SQLAlchemyError:
                logger.exception("WhatsApp store unavailable; unprocessed messages not resumed")
                return
            if pending:
                logger.info("resuming %d WhatsApp messages received before the last stop", len(pending))
            for message in pending:
                self.queues.put(message.sender_id, partial(self.process, message, on_new_message))

        @webhook.listener("before_server_stop")
        async def finish_turns(_app: Any, _loop: Any) -> None:
            await self.queues.stop(self.config.shutdown_grace_seconds)

        @webhook.listener("after_server_stop")
        async def close(_app: Any, _loop: Any) -> None:
            await self.client.close()

        @webhook.route("/", methods=["GET"])
        async def health(_request: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @webhook.route("/webhook", methods=["GET"])
        async def verify(request: Request) -> HTTPResponse:
            challenge = handshake_challenge(request.args.get("hub.mode"), request.args.get("hub.verify_token"),
                                            request.args.get("hub.challenge"), self.config.verify_token)
            if challenge is None:
                return response.text("verification failed", status=403)
            return response.text(challenge)

        @webhook.route("/webhook", methods=["POST"], stream=True)
        async def receive(request: Request) -> HTTPResponse:
            try:
                body = await read_body(request, MAX_BODY_BYTES)
            except BodyTooLarge:
                return response.json({"detail": "body too large"}, status=413)
            problem = signature_problem(self.config.app_secret, body, request.headers.get(SIGNATURE_HEADER))
            if problem is not None:
                return response.json({"detail": problem[1]}, status=problem[0])
            try:
                payload = json.loads(body)
            except ValueError:
                return response.json({"detail": "body is not valid JSON"}, status=400)
            if not isinstance(payload, dict):
                return response.json({"detail": "a JSON object is required"}, status=400)
            return await self.accept(payload, on_new_message)

        return webhook

    async def accept(
        self, payload: Dict[str, Any], on_new_message: Callable[[UserMessage], Awaitable[Any]]
    ) -> HTTPResponse:
        """Record and queue everything in the notification, then answer; nothing waits for Rasa."""
        messages, statuses = parse_webhook(payload)
        counts = {"messages": 0, "duplicates": 0, "statuses": 0}
        try:
            for message in messages:
                if not await self.store.add_inbound(message):
                    counts["duplicates"] += 1
                    continue
                counts["messages"] += 1
                if message.kind != "silent":
                    self.queues.put(message.sender_id, partial(self.process, message, on_new_message))
            for status in statuses:
                if await self.store.add_status(status):
                    counts["statuses"] += 1
                    self.after_status(status)
        except SQLAlchemyError:
            # Not acknowledged: Meta delivers the notification again, and what was recorded is not repeated.
            logger.exception("WhatsApp store unavailable; notification refused for a later redelivery")
            return response.json({"detail": "temporarily unavailable"}, status=503)
        return response.json({"status": "received", **counts})

    def after_status(self, status: InboundStatus) -> None:
        if status.status == "failed":
            logger.warning("WhatsApp message %s failed: %s", status.message_id, status.error_codes)
            if WINDOW_CLOSED in status.error_codes:
                self.queues.put(status.recipient_id, partial(self.resend_as_template, status.message_id))

    async def resend_as_template(self, message_id: str) -> None:
        """Meta refused free text after accepting it (window closed): the same text goes out in the template."""
        sent = await self.store.outbound(message_id)
        if sent is None or sent[1] == "template":
            return
        recipient_id, _kind, text = sent
        output = WhatsAppOutput(self.client, self.store)
        await output.deliver(recipient_id, output.template(text), text)

    async def process(self, message: InboundMessage, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> None:
        """Hand one message to Rasa (or answer it directly); a failure is logged, stored and apologised for."""
        if not await self.store.claim(message.message_id):
            return
        output = WhatsAppOutput(self.client, self.store)
        try:
            verdict = await guard().check(message.sender_id, message.text)
            if not verdict.allowed:
                await guard().answer_refused(output, message.sender_id, verdict)
            elif message.kind == "unsupported":
                await output.send_text_message(message.sender_id, UNSUPPORTED_REPLY)
            else:
                text, metadata = await self.chosen(message)
                await on_new_message(
                    UserMessage(
                        text=text,
                        output_channel=output,
                        sender_id=message.sender_id,
                        input_channel=self.name(),
                        message_id=message.message_id,
                        metadata=metadata,
                    )
                )
        except Exception as exc:  # noqa: BLE001 (the customer gets an apology and the next message still runs)
            logger.exception("WhatsApp message %s could not be processed", message.message_id)
            await self.store.finish(message.message_id, error=repr(exc))
            await output.send_text_message(message.sender_id, FAILURE_REPLY)
            return
        await self.store.finish(message.message_id)

    async def chosen(self, message: InboundMessage) -> Tuple[str, Dict[str, Any]]:
        """A typed "2" after numbered choices becomes that choice's payload."""
        choices = await self.store.take_choices(message.sender_id)
        if message.metadata.get("whatsapp", {}).get("type") != "text":
            return message.text, message.metadata
        payload = choice_for_reply(message.text, choices)
        if payload is None:
            return message.text, message.metadata
        return payload, {**message.metadata, "reply_title": message.text}
