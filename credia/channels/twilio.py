"""SMS and WhatsApp through Twilio (``POST /webhooks/twilio_messaging/webhook``).

Rasa's built-in ``twilio`` channel trusts unsigned requests, sends with a blocking client inside the event loop,
drops media and location and turns "¡" into "@". This one checks ``X-Twilio-Signature``, answers the webhook at
once with empty TwiML and runs the turn in the background (one customer's messages in order), sends replies
through Twilio's REST API with retries, passes media and location to the actions in the message metadata, and
handles each Twilio message once even when Twilio delivers it again.

Buttons are shown as numbered options; a reply such as "2", "dos" or the option's title is mapped back to the
payload of the buttons the bot sent last, read from the tracker so it works after a restart.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import mimetypes
import re
import weakref
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Dict, List, Mapping, Optional, Sequence, Set, Text, Tuple
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import aiohttp
from rasa.core.channels.channel import InputChannel, OutputChannel, UserMessage
from rasa.shared.core.events import BotUttered, UserUttered
from sanic import Blueprint, Sanic, response
from sanic.request import Request
from sanic.response import HTTPResponse
from sqlalchemy import Column, MetaData, String, Table, insert
from sqlalchemy.exc import IntegrityError

from credia import settings
from credia.channels.guard import guard
from credia.channels.rendering import Choice, choice_for_reply, choices_of, numbered_options, split_text
from credia.db import UTCDateTime, make_engine, utcnow

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Twilio-Signature"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
# Twilio's own webhooks are a few kilobytes; anything far larger is not Twilio.
MAX_BODY_BYTES = 64 * 1024
MAX_FORM_FIELDS = 200
# Twilio's Messages API rejects a longer Body (error 21617), for SMS and WhatsApp alike.
BODY_LIMIT = 1600
MAX_MEDIA = 10
WHATSAPP_PREFIX = "whatsapp:"
# WhatsApp's 24-hour customer-service window is closed: only an approved template may be sent.
WINDOW_CLOSED = 63016
# What a message with only a location says to the bot; the coordinates travel in the metadata.
LOCATION_TEXT = "/inform"
DOCUMENT_TEXT = "/send_document"

inbound_metadata = MetaData()
twilio_inbound = Table(
    "twilio_inbound",
    inbound_metadata,
    Column("message_sid", String(64), primary_key=True),
    Column("received_at", UTCDateTime(), nullable=False),
)


class RequestRejected(Exception):
    """A webhook request that is not Twilio's or cannot be read; answered with ``status`` and ``reason``."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class TwilioApiError(Exception):
    """Twilio's REST API refused a request; ``code`` is Twilio's error code (e.g. 63016, 21211) when it gave one."""

    def __init__(self, status: int, code: Optional[int], message: str) -> None:
        super().__init__(f"HTTP {status}, Twilio error {code}: {message}")
        self.status = status
        self.code = code


def masked(address: str) -> str:
    """A phone address for the logs: enough to tell customers apart, not enough to call them."""
    return re.sub(r"\d(?=\d{4})", "*", address)


def twilio_signature(auth_token: str, url: str, params: Sequence[Tuple[str, str]]) -> str:
    """``X-Twilio-Signature``: base64 HMAC-SHA1, keyed with the auth token, of the URL and the sorted POST fields."""
    data = url + "".join(name + value for name, value in sorted(params))
    digest = hmac.new(auth_token.encode("utf-8"), data.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def _url_variants(url: str) -> List[str]:
    """The URL with and without its default port: Twilio signs either form, as its own validator accepts."""
    parts = urlsplit(url)
    if parts.port is None:
        other = parts._replace(netloc=f"{parts.netloc}:{443 if parts.scheme == 'https' else 80}")
    else:
        other = parts._replace(netloc=parts.netloc.rsplit(":", 1)[0])
    return [url, urlunsplit(other)]


def signature_is_valid(auth_token: str, url: str, params: Sequence[Tuple[str, str]], signature: Optional[str]) -> bool:
    """Whether ``signature`` is Twilio's for this URL and these fields, compared in constant time."""
    if not signature:
        return False
    given = signature.encode("utf-8", "replace")
    return any(
        hmac.compare_digest(twilio_signature(auth_token, candidate, params).encode("ascii"), given)
        for candidate in _url_variants(url)
    )


def called_url(request: Request, public_url: str) -> str:
    """The URL Twilio called and signed: the public base (behind a proxy) plus path and query, or our own URL."""
    if not public_url:
        return request.url
    query = f"?{request.query_string}" if request.query_string else ""
    return public_url.rstrip("/") + request.path + query


async def signed_form(request: Request, auth_token: str, public_url: str) -> Dict[str, str]:
    """Read a Twilio webhook: size-capped, form-encoded UTF-8, signed; raise ``RequestRejected`` otherwise."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise RequestRejected(413, "body too large")
    body = bytearray()
    async for chunk in request.stream:
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise RequestRejected(413, "body too large")
    if not request.headers.get("content-type", "").startswith(FORM_CONTENT_TYPE):
        raise RequestRejected(415, f"expected {FORM_CONTENT_TYPE}")
    try:
        params = parse_qsl(
            bytes(body).decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body),
            max_num_fields=MAX_FORM_FIELDS,
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise RequestRejected(400, f"malformed form body: {exc}") from exc
    signature = request.headers.get(SIGNATURE_HEADER)
    if not signature_is_valid(auth_token, called_url(request, public_url), params, signature):
        raise RequestRejected(403, "missing or invalid X-Twilio-Signature")
    return dict(params)


def empty_twiml() -> HTTPResponse:
    """What Twilio expects when the replies follow through the REST API."""
    return response.text(EMPTY_TWIML, content_type="text/xml; charset=utf-8")


def rejected(error: RequestRejected) -> HTTPResponse:
    return response.json({"detail": error.reason}, status=error.status)


@dataclass(frozen=True)
class TwilioAccount:
    """Who we are at Twilio: the account, where its REST API is, and the public base URL Twilio calls us at."""

    account_sid: str
    auth_token: str
    api_url: str
    public_url: str

    @classmethod
    def from_credentials(cls, credentials: Optional[Mapping[str, Any]]) -> "TwilioAccount":
        """Non-secret values of ``credentials.yml`` when given there, else the ``TWILIO_*`` environment variables."""
        given = credentials or {}
        return cls(
            account_sid=given.get("account_sid") or settings.twilio_account_sid(),
            auth_token=settings.twilio_auth_token(),
            api_url=(given.get("api_url") or settings.twilio_api_url()).rstrip("/"),
            public_url=(given.get("public_url") or settings.twilio_public_url()).rstrip("/"),
        )


def _json_object(text: str) -> Dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def twilio_blueprint(name: str, client: "TwilioRestClient") -> Blueprint:
    """A Twilio channel's blueprint with its health route; the REST client is closed when the server stops."""
    webhook = Blueprint(name, __name__)

    @webhook.listener("after_server_stop")
    async def close_client(_app: Sanic, _loop: asyncio.AbstractEventLoop) -> None:
        await client.close()

    @webhook.route("/", methods=["GET"])
    async def health(_request: Request) -> HTTPResponse:
        return response.json({"status": "ok"})

    return webhook


class TwilioRestClient:
    """Twilio's Messages API over aiohttp: never blocks the event loop, retries 429, 5xx and network errors."""

    def __init__(self, account: TwilioAccount, attempts: int = 4, retry_base_seconds: float = 0.5) -> None:
        self.account = account
        self.attempts = max(1, attempts)
        self.retry_base_seconds = retry_base_seconds
        self._session: Optional[aiohttp.ClientSession] = None

    @property
    def messages_url(self) -> str:
        return f"{self.account.api_url}/2010-04-01/Accounts/{self.account.account_sid}/Messages.json"

    def _http(self) -> aiohttp.ClientSession:
        # Created on first use, inside the server's event loop.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                auth=aiohttp.BasicAuth(self.account.account_sid, self.account.auth_token),
                timeout=aiohttp.ClientTimeout(total=15),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _delay(self, attempt: int, retry_after: Optional[str]) -> float:
        """Twilio's ``Retry-After`` when it sends one (capped), else exponential back-off."""
        if retry_after and retry_after.strip().isdigit():
            return min(float(retry_after), 30.0)
        return self.retry_base_seconds * 2 ** (attempt - 1)

    async def create_message(self, fields: Sequence[Tuple[str, str]]) -> None:
        """Create one message, or raise ``TwilioApiError`` when Twilio refuses it or keeps failing."""
        error = TwilioApiError(0, None, "not sent")
        for attempt in range(1, self.attempts + 1):
            retry_after = None
            try:
                async with self._http().post(self.messages_url, data=list(fields)) as reply:
                    payload = _json_object(await reply.text())
                    if reply.status < 300:
                        logger.debug("Twilio accepted message %s", payload.get("sid"))
                        return
                    error = TwilioApiError(reply.status, payload.get("code"), str(payload.get("message", "")))
                    if reply.status != 429 and reply.status < 500:
                        raise error
                    retry_after = reply.headers.get("Retry-After")
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                error = TwilioApiError(0, None, f"{type(exc).__name__}: {exc}")
            if attempt < self.attempts:
                logger.warning("Twilio send attempt %d failed (%s); retrying", attempt, error)
                await asyncio.sleep(self._delay(attempt, retry_after))
        raise error


@dataclass(frozen=True)
class Senders:
    """Our numbers at Twilio: replies leave from the channel the customer uses (SMS or WhatsApp)."""

    sms: str
    whatsapp: str

    def for_recipient(self, recipient: str) -> str:
        if recipient.startswith(WHATSAPP_PREFIX):
            return self.whatsapp if self.whatsapp.startswith(WHATSAPP_PREFIX) else WHATSAPP_PREFIX + self.whatsapp
        return self.sms


async def send_window_template(client: TwilioRestClient, recipient: str, sender: str, content_sid: str) -> None:
    """Outside WhatsApp's 24-hour window only an approved template gets through: send it, or log why not."""
    if not content_sid:
        logger.warning(
            "WhatsApp window closed for %s (Twilio error %d) and no TWILIO_WHATSAPP_FALLBACK_CONTENT_SID is set; "
            "the reply was not delivered", masked(recipient), WINDOW_CLOSED,
        )
        return
    logger.warning("WhatsApp window closed for %s; sending template %s instead", masked(recipient), content_sid)
    try:
        await client.create_message([("To", recipient), ("From", sender), ("ContentSid", content_sid)])
    except TwilioApiError as error:
        logger.error("WhatsApp template to %s failed: %s", masked(recipient), error)


class TwilioMessagingOutput(OutputChannel):
    """Sends a turn's replies as SMS or WhatsApp messages, in order, buttons as numbered options."""

    def __init__(
        self,
        client: TwilioRestClient,
        senders: Senders,
        fallback_content_sid: str = "",
        status_callback: str = "",
        from_number: Optional[str] = None,
    ) -> None:
        self.client = client
        self.senders = senders
        self.fallback_content_sid = fallback_content_sid
        self.status_callback = status_callback
        self.from_number = from_number
        self.window_closed = False

    @classmethod
    def name(cls) -> Text:
        return "twilio_messaging"

    async def send_text_message(self, recipient_id: Text, text: Text, **kwargs: Any) -> None:
        for part in split_text(text, BODY_LIMIT):
            await self._send(recipient_id, [("Body", part)])

    async def send_text_with_buttons(
        self, recipient_id: Text, text: Text, buttons: List[Dict[Text, Any]], **kwargs: Any
    ) -> None:
        await self.send_text_message(recipient_id, numbered_options(text or "", choices_of(buttons)))

    async def send_image_url(self, recipient_id: Text, image: Text, **kwargs: Any) -> None:
        await self._send(recipient_id, [("MediaUrl", image)])

    async def send_attachment(self, recipient_id: Text, attachment: Any, **kwargs: Any) -> None:
        if isinstance(attachment, str) and attachment.startswith(("http://", "https://")):
            await self._send(recipient_id, [("MediaUrl", attachment)])
        else:
            logger.info("attachment without a public URL not sent over Twilio: %r", attachment)

    async def send_custom_json(self, recipient_id: Text, json_message: Dict[Text, Any], **kwargs: Any) -> None:
        # Custom payloads are meant for other channels (the IVR's transfer, for instance); raw JSON is no message.
        logger.debug("custom payload not shown on SMS/WhatsApp: %s", sorted(json_message))

    async def _send(self, recipient: str, content: List[Tuple[str, str]]) -> None:
        if self.window_closed:
            return
        sender = self.from_number or self.senders.for_recipient(recipient)
        fields = [("To", recipient), ("From", sender), *content]
        whatsapp = recipient.startswith(WHATSAPP_PREFIX)
        if whatsapp and self.status_callback:
            fields.append(("StatusCallback", self.status_callback))
        try:
            await self.client.create_message(fields)
        except TwilioApiError as error:
            if whatsapp and error.code == WINDOW_CLOSED:
                # The rest of this turn would fail the same way: one template, then silence.
                self.window_closed = True
                await send_window_template(self.client, recipient, sender, self.fallback_content_sid)
            else:
                logger.error("message to %s not sent: %s", masked(recipient), error)


def attachments_of(form: Mapping[str, str]) -> List[Dict[str, str]]:
    """Twilio's ``NumMedia``/``MediaUrl{i}``/``MediaContentType{i}`` in the format the document actions read."""
    count_text = form.get("NumMedia", "0") or "0"
    if not count_text.isdigit() or int(count_text) > MAX_MEDIA:
        raise RequestRejected(400, "NumMedia must be a number from 0 to 10")
    attachments = []
    for index in range(int(count_text)):
        url = form.get(f"MediaUrl{index}", "")
        if not url.startswith(("https://", "http://")):
            raise RequestRejected(400, f"MediaUrl{index} is missing or not a URL")
        content_type = form.get(f"MediaContentType{index}") or "application/octet-stream"
        name = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1] or f"archivo{index + 1}"
        extension = mimetypes.guess_extension(content_type.split(";")[0].strip()) or ""
        attachments.append({"filename": name + extension, "content_type": content_type, "media_url": url})
    return attachments


def location_of(form: Mapping[str, str]) -> Optional[Dict[str, Any]]:
    """A shared location (``Latitude``, ``Longitude``, and on WhatsApp ``Address`` and ``Label``)."""
    if not form.get("Latitude") and not form.get("Longitude"):
        return None
    try:
        latitude, longitude = float(form.get("Latitude", "")), float(form.get("Longitude", ""))
    except ValueError as exc:
        raise RequestRejected(400, "Latitude and Longitude must be numbers") from exc
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        raise RequestRejected(400, "Latitude or Longitude out of range")
    location: Dict[str, Any] = {"latitude": latitude, "longitude": longitude}
    for field, key in (("Address", "address"), ("Label", "label")):
        if form.get(field):
            location[key] = form[field]
    return location


def inbound_message(form: Mapping[str, str]) -> Tuple[str, Dict[str, Any]]:
    """The text for the bot and the metadata of an inbound SMS or WhatsApp message; the text is never altered."""
    sender = form.get("From", "")
    text = form.get("Body", "")
    metadata: Dict[str, Any] = {
        "message_sid": form.get("MessageSid"),
        "channel": "whatsapp" if sender.startswith(WHATSAPP_PREFIX) else "sms",
    }
    attachments = attachments_of(form)
    location = location_of(form)
    if attachments:
        metadata["attachments"] = attachments
        if text.strip():
            metadata["caption"] = text
        text = DOCUMENT_TEXT
    if location:
        metadata["location"] = location
        if not text.strip():
            text = LOCATION_TEXT
    return text, metadata


async def latest_bot_turn(app: Sanic, sender_id: str) -> List[BotUttered]:
    """The bot's messages since the customer's last message, from the tracker store (so they survive restarts)."""
    agent = getattr(app.ctx, "agent", None)
    store = getattr(agent, "tracker_store", None)
    tracker = await store.retrieve(sender_id) if store is not None else None
    turn: List[BotUttered] = []
    for event in reversed(tracker.events if tracker is not None else []):
        if isinstance(event, UserUttered):
            break
        if isinstance(event, BotUttered):
            turn.append(event)
    return turn[::-1]


def last_choices(turn: Sequence[BotUttered]) -> List[Choice]:
    """The options of the bot's last message: what a numbered reply refers to."""
    return choices_of(turn[-1].data.get("buttons")) if turn else []


async def as_reply_to_buttons(app: Sanic, sender_id: str, text: str) -> str:
    """A numbered, spoken or titled answer to the last buttons becomes their payload; anything else stays as is."""
    if text.startswith("/"):
        return text
    return choice_for_reply(text, last_choices(await latest_bot_turn(app, sender_id))) or text


class InboundLog:
    """Twilio message SIDs already handled: a webhook Twilio delivers again is processed once, across restarts."""

    def __init__(self, database_url: str) -> None:
        self.engine = make_engine(database_url)
        inbound_metadata.create_all(self.engine)

    def first_time(self, message_sid: str) -> bool:
        try:
            with self.engine.begin() as connection:
                connection.execute(insert(twilio_inbound).values(message_sid=message_sid, received_at=utcnow()))
        except IntegrityError:
            return False
        return True


class TwilioMessagingInput(InputChannel):
    """Twilio SMS and WhatsApp (``whatsapp:+E164`` senders); the conversation id is the sender's address."""

    def __init__(
        self,
        account: TwilioAccount,
        senders: Senders,
        database_url: str,
        fallback_content_sid: str = "",
        send_attempts: int = 4,
        retry_base_seconds: float = 0.5,
    ) -> None:
        self.account = account
        self.senders = senders
        self.fallback_content_sid = fallback_content_sid
        self.client = TwilioRestClient(account, send_attempts, retry_base_seconds)
        self.inbound = InboundLog(database_url)
        self._tasks: Set[asyncio.Task] = set()
        self._turn_locks: "weakref.WeakValueDictionary[str, asyncio.Lock]" = weakref.WeakValueDictionary()

    @classmethod
    def name(cls) -> Text:
        return "twilio_messaging"

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> InputChannel:
        given = credentials or {}
        return cls(
            TwilioAccount.from_credentials(given),
            Senders(
                sms=given.get("sms_number") or settings.twilio_sms_number(),
                whatsapp=given.get("whatsapp_number") or settings.twilio_whatsapp_number(),
            ),
            database_url=settings.channels_database_url(),
            fallback_content_sid=given.get("whatsapp_fallback_content_sid")
            or settings.twilio_whatsapp_fallback_content_sid(),
            send_attempts=settings.twilio_send_attempts(),
            retry_base_seconds=settings.twilio_retry_base_seconds(),
        )

    @property
    def status_callback(self) -> str:
        """Where Twilio reports a WhatsApp message it could not deliver; only known with a public URL."""
        return f"{self.account.public_url}/webhooks/{self.name()}/status" if self.account.public_url else ""

    def output(self, from_number: Optional[str] = None) -> TwilioMessagingOutput:
        return TwilioMessagingOutput(
            self.client, self.senders, self.fallback_content_sid, self.status_callback, from_number
        )

    def get_output_channel(self) -> Optional[OutputChannel]:
        """For messages outside a customer's turn (payment announcements, an agent's reply)."""
        return self.output()

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        webhook = twilio_blueprint("credia_twilio_messaging", self.client)

        @webhook.route("/webhook", methods=["POST"], stream=True)
        async def receive(request: Request) -> HTTPResponse:
            try:
                form = await signed_form(request, self.account.auth_token, self.account.public_url)
                message_sid = form.get("MessageSid", "")
                sender = form.get("From", "")
                if not message_sid or not sender:
                    raise RequestRejected(400, "MessageSid and From are required")
                text, metadata = inbound_message(form)
            except RequestRejected as error:
                return rejected(error)
            if not await asyncio.to_thread(self.inbound.first_time, message_sid):
                logger.info("Twilio message %s delivered again; already handled", message_sid)
                return empty_twiml()
            if not text.strip():
                logger.info("Twilio message %s from %s has nothing the bot can read", message_sid, masked(sender))
                return empty_twiml()
            verdict = await guard().check(sender, text)
            if not verdict.allowed:
                self._start(guard().answer_refused(self.output(form.get("To") or None), sender, verdict))
                return empty_twiml()
            self._start(self._turn(request.app, on_new_message, sender, text, metadata, form.get("To") or None))
            return empty_twiml()

        @webhook.route("/status", methods=["POST"], stream=True)
        async def status(request: Request) -> HTTPResponse:
            try:
                form = await signed_form(request, self.account.auth_token, self.account.public_url)
            except RequestRejected as error:
                return rejected(error)
            recipient, message_sid = form.get("To", ""), form.get("MessageSid", "")
            window_closed = form.get("ErrorCode") == str(WINDOW_CLOSED) and recipient.startswith(WHATSAPP_PREFIX)
            # Twilio may report the failure more than once; one template per failed message.
            if window_closed and message_sid and await asyncio.to_thread(self.inbound.first_time, message_sid):
                sender = form.get("From") or self.senders.for_recipient(recipient)
                self._start(send_window_template(self.client, recipient, sender, self.fallback_content_sid))
            return response.empty()

        return webhook

    def _start(self, work: Awaitable[None]) -> None:
        """Run ``work`` after the webhook is answered, keeping a reference so it is not collected midway."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _turn_lock(self, sender: str) -> asyncio.Lock:
        lock = self._turn_locks.get(sender)
        if lock is None:
            lock = asyncio.Lock()
            self._turn_locks[sender] = lock
        return lock

    async def _turn(
        self,
        app: Sanic,
        on_new_message: Callable[[UserMessage], Awaitable[Any]],
        sender: str,
        text: str,
        metadata: Dict[str, Any],
        our_number: Optional[str],
    ) -> None:
        """One customer message through the bot; a customer's messages one after another, in arrival order."""
        lock = self._turn_lock(sender)
        async with lock:
            try:
                text = await as_reply_to_buttons(app, sender, text)
                message = UserMessage(
                    text, self.output(our_number), sender, input_channel=self.name(), metadata=metadata
                )
                await on_new_message(message)
            except Exception:  # noqa: BLE001 (a failed turn is logged; the webhook was already answered)
                logger.exception("turn of Twilio message %s failed", metadata.get("message_sid"))
