"""Input limits for every channel a customer writes on: message length, request size and a per-customer rate.

One guard per process, shared by the channels (REST, socket.io, WhatsApp, Twilio messages and voice), so a
customer's flood is counted once whatever channel it comes through. Each message is counted in a fixed window
(``CREDIA_RATE_WINDOW_SECONDS``, 60) per customer id; beyond ``CREDIA_RATE_LIMIT`` (20) messages in a window the
rest are not processed, and only the first one over the limit gets a polite answer, so a flood never turns into
a flood of replies. The counter is in memory, or in Redis when ``REDIS_URL`` is set, so that several Rasa servers
share one limit per customer (if Redis does not answer, each process counts on its own meanwhile). A message
longer than ``CREDIA_MAX_TEXT_CHARS`` (2,000) is refused with an explanation and never reaches the NLU; a
request body larger than ``CREDIA_MAX_BODY_BYTES`` (64 KiB) is refused before it is read to its end.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, Optional, Protocol, Tuple

from rasa.core.channels.channel import OutputChannel
from sanic.request import Request

from credia import logs

logger = logging.getLogger(__name__)

# Installed here because every channel module imports this one: Rasa's own logs are masked too.
logs.install()

TOO_LONG_REPLY = (
    "Su mensaje es demasiado largo para leerlo aquí (máximo {limit} caracteres). "
    "¿Podría enviarlo en partes más cortas, por favor?"
)
FLOOD_REPLY = (
    "Está enviando mensajes muy rápido. Por favor, espere un momento y vuelva a escribir; "
    "los mensajes enviados mientras tanto no se procesaron."
)
FLOOD_DETAIL = "too many messages from this customer; wait and try again"
TOO_LONG_DETAIL = "message longer than {limit} characters"
BODY_DETAIL = "request body larger than {limit} bytes"


def _positive_int(name: str, default: int) -> int:
    raw = os.environ.get(name) or str(default)
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"{name} must be greater than 0, got {value}")
    return value


@dataclass(frozen=True)
class Limits:
    """What one customer may send; every value from the environment, with defaults for a public assistant."""

    max_text_chars: int = 2000
    max_body_bytes: int = 64 * 1024
    messages_per_window: int = 20
    window_seconds: int = 60

    @classmethod
    def from_env(cls) -> "Limits":
        return cls(
            max_text_chars=_positive_int("CREDIA_MAX_TEXT_CHARS", cls.max_text_chars),
            max_body_bytes=_positive_int("CREDIA_MAX_BODY_BYTES", cls.max_body_bytes),
            messages_per_window=_positive_int("CREDIA_RATE_LIMIT", cls.messages_per_window),
            window_seconds=_positive_int("CREDIA_RATE_WINDOW_SECONDS", cls.window_seconds),
        )


class Verdict(enum.Enum):
    """What a channel does with a message: process it, explain it is too long, or (not) say to slow down."""

    ALLOW = "allow"
    TOO_LONG = "too_long"
    FLOOD_FIRST = "flood_first"  # the first message over the limit in this window: say so once
    FLOOD = "flood"  # any later one: drop it silently

    @property
    def allowed(self) -> bool:
        return self is Verdict.ALLOW


class Counter(Protocol):
    async def hit(self, key: str, window: int, window_seconds: int) -> int:
        """Count one message of ``key`` in ``window`` and return the count so far."""


class MemoryCounter:
    """Counts per process; windows that ended are forgotten as new ones start."""

    def __init__(self) -> None:
        self._counts: Dict[Tuple[str, int], int] = {}
        self._window = -1
        self._lock = threading.Lock()

    async def hit(self, key: str, window: int, window_seconds: int) -> int:
        with self._lock:
            if window != self._window:
                self._counts = {k: v for k, v in self._counts.items() if k[1] >= window}
                self._window = window
            count = self._counts.get((key, window), 0) + 1
            self._counts[(key, window)] = count
            return count


class RedisCounter:
    """One counter per customer and window shared by every process (INCR, expiring with the window)."""

    PREFIX = "credia:rate:"

    def __init__(self, url: str, fallback: Optional[MemoryCounter] = None) -> None:
        import redis.asyncio as redis_asyncio

        self._redis = redis_asyncio.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self._fallback = fallback or MemoryCounter()
        self._warned = False

    async def hit(self, key: str, window: int, window_seconds: int) -> int:
        # The customer id is hashed: Redis keys are listed by operators and must not show a phone number.
        name = f"{self.PREFIX}{window}:{hashlib.sha256(key.encode()).hexdigest()[:32]}"
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incr(name)
                pipe.expire(name, window_seconds * 2)
                count, _ = await pipe.execute()
        except Exception:  # noqa: BLE001 (a Redis outage must not stop the conversations)
            if not self._warned:
                logger.warning("rate limit: Redis unavailable, counting in this process meanwhile", exc_info=True)
                self._warned = True
            return await self._fallback.hit(key, window, window_seconds)
        self._warned = False
        return int(count)

    async def close(self) -> None:
        await self._redis.close()


class Guard:
    """Decides what happens to each customer message; channels turn the verdict into their own answer."""

    def __init__(self, limits: Limits, counter: Counter, clock: Any = time.time) -> None:
        self.limits = limits
        self.counter = counter
        self.clock = clock

    async def check(self, customer_id: str, text: Optional[str]) -> Verdict:
        """Count the message (every one counts, long or not) and say whether to process it."""
        window = int(self.clock() // self.limits.window_seconds)
        count = await self.counter.hit(customer_id, window, self.limits.window_seconds)
        if count > self.limits.messages_per_window:
            if count == self.limits.messages_per_window + 1:
                logger.warning("rate limit: customer %s over %d messages", customer_id, count - 1)
                return Verdict.FLOOD_FIRST
            return Verdict.FLOOD
        if self.too_long(text):
            return Verdict.TOO_LONG
        return Verdict.ALLOW

    def too_long(self, text: Optional[str]) -> bool:
        return text is not None and len(text) > self.limits.max_text_chars

    def reply_for(self, verdict: Verdict) -> Optional[str]:
        """The Spanish answer a customer gets for a refused message, or ``None`` when nothing is said."""
        if verdict is Verdict.TOO_LONG:
            return TOO_LONG_REPLY.format(limit=self.limits.max_text_chars)
        if verdict is Verdict.FLOOD_FIRST:
            return FLOOD_REPLY
        return None

    async def answer_refused(self, output: OutputChannel, recipient_id: str, verdict: Verdict) -> None:
        """Tell the customer, on their channel, why a message was not processed (once per flood)."""
        reply = self.reply_for(verdict)
        if reply:
            await output.send_text_message(recipient_id, reply)

    def detail_for(self, verdict: Verdict) -> Tuple[int, str]:
        """HTTP status and reason for channels that can answer the caller with an error (REST)."""
        if verdict is Verdict.TOO_LONG:
            return 413, TOO_LONG_DETAIL.format(limit=self.limits.max_text_chars)
        return 429, FLOOD_DETAIL


def build_guard() -> Guard:
    """The guard the environment describes: limits, and Redis for the counter when ``REDIS_URL`` is set."""
    limits = Limits.from_env()
    redis_url = os.environ.get("REDIS_URL")
    return Guard(limits, RedisCounter(redis_url) if redis_url else MemoryCounter())


_guard: Optional[Guard] = None
_guard_lock = threading.Lock()


def guard() -> Guard:
    """This process's guard, shared by every channel (built on first use)."""
    global _guard
    with _guard_lock:
        if _guard is None:
            _guard = build_guard()
        return _guard


class BodyTooLarge(Exception):
    """The request body is over the limit; answered with 413 without reading the rest."""


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body of a streamed route, or ``BodyTooLarge`` as soon as it exceeds ``limit``."""
    declared = request.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(BODY_DETAIL.format(limit=limit))
    body = bytearray()
    async for chunk in request.stream:
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge(BODY_DETAIL.format(limit=limit))
    return bytes(body)
