"""WhatsApp ingress gateway: ``python -m credia.channels.whatsapp_gateway [--port N]``; Meta calls it, not Rasa.

Why: Rasa runs NLU and the policies on its event loop, so while it is busy even the connector's immediate
acknowledgement waits hundreds of milliseconds, and Meta wants a fast 200. This small process has nothing else to
do: it answers Meta's verification handshake, checks ``X-Hub-Signature-256`` on the raw body (the connector's own
check, ``credia.channels.meta_webhook``), refuses oversized or malformed bodies, stores the raw body and its
signature in an inbox table, and only then answers 200.

A background task relays every stored delivery to Rasa's WhatsApp webhook (``WHATSAPP_RELAY_URL``) with the same
body and the same signature header, so the connector stays the one place that parses, de-duplicates and answers.
Deliveries of one customer go strictly in arrival order, different customers in parallel. Connection errors,
timeouts, 5xx, 408 and 429 are retried with exponential backoff for as long as it takes; a row is marked delivered
only on a 2xx, and any other refusal marks it failed (logged). Nothing is lost across a gateway or Rasa restart,
and a delivery relayed twice is harmless because the connector de-duplicates by message id.

Several gateways may share one PostgreSQL inbox: a row is claimed by an atomic update of its ``next_attempt_at``
(a lease), so two relayers never send the same row at the same time. On SQLite run one gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, AsyncIterator, Callable, Dict, List, Optional, Set, Tuple

import aiohttp
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy import Column, Index, Integer, LargeBinary, String, func, select, text, update
from sqlalchemy import Text as SQLText
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import declarative_base

from credia import settings
from credia.channels.meta_webhook import MAX_BODY_BYTES, SIGNATURE_HEADER, handshake_challenge, signature_problem
from credia.db import UTCDateTime, make_engine, make_session_factory, utcnow

logger = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/whatsapp/webhook"
PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
RETRYABLE_4XX = frozenset({408, 429})
KEY_LENGTH = 160


@dataclass(frozen=True)
class GatewayConfig:
    """The gateway's settings; the app secret and verify token are the connector's (from the environment)."""

    app_secret: str
    verify_token: str
    relay_url: str
    database_url: str
    timeout_seconds: float = 10.0
    retry_base_seconds: float = 0.5
    max_retry_seconds: float = 30.0
    poll_seconds: float = 1.0
    concurrency: int = 32
    # How long a claimed row stays invisible to other relayers beyond the request timeout (a crash mid-relay).
    lease_margin_seconds: float = 5.0

    @classmethod
    def from_env(cls) -> "GatewayConfig":
        required = {name: settings.env(name, "") for name in ("WHATSAPP_APP_SECRET", "WHATSAPP_VERIFY_TOKEN")}
        missing = [name for name, value in required.items() if not value]
        if missing:
            raise RuntimeError(f"The WhatsApp gateway needs {', '.join(missing)} (the same as the Rasa connector).")
        return cls(
            app_secret=required["WHATSAPP_APP_SECRET"],
            verify_token=required["WHATSAPP_VERIFY_TOKEN"],
            relay_url=settings.whatsapp_relay_url(),
            database_url=settings.whatsapp_gateway_database_url(),
            timeout_seconds=settings.env_float("WHATSAPP_GATEWAY_TIMEOUT_SECONDS", cls.timeout_seconds),
            retry_base_seconds=settings.env_float("WHATSAPP_GATEWAY_RETRY_BASE_SECONDS", cls.retry_base_seconds),
            max_retry_seconds=settings.env_float("WHATSAPP_GATEWAY_MAX_RETRY_SECONDS", cls.max_retry_seconds),
            poll_seconds=settings.env_float("WHATSAPP_GATEWAY_POLL_SECONDS", cls.poll_seconds),
            concurrency=max(1, settings.env_int("WHATSAPP_GATEWAY_CONCURRENCY", cls.concurrency)),
        )

    def retry_delay(self, attempts: int) -> float:
        """Delay after the ``attempts``-th failed relay: base, 2·base, 4·base, ... capped."""
        return min(self.retry_base_seconds * 2 ** (attempts - 1), self.max_retry_seconds)

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.timeout_seconds + self.lease_margin_seconds)


def _dicts(value: Any) -> List[Dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def ordering_key(payload: Dict[str, Any]) -> str:
    """Whose deliveries must stay in order: the first customer the notification is about ("" for none).

    Only routing is read here; everything else is the connector's. A notification about several customers
    (rare) is ordered with its first one.
    """
    for entry in _dicts(payload.get("entry")):
        for change in _dicts(entry.get("changes")):
            value = change.get("value") if isinstance(change.get("value"), dict) else {}
            for item in _dicts(value.get("messages")) + _dicts(value.get("statuses")):
                for field in ("from", "from_user_id", "recipient_id", "recipient_user_id"):
                    if item.get(field):
                        return str(item[field])[:KEY_LENGTH]
    return ""


# ------------------------------------------------------------------------------------------------------ inbox

Base: Any = declarative_base()


class Delivery(Base):
    """One POST from Meta exactly as received (raw bytes and signature), and how far its relay got."""

    __tablename__ = "whatsapp_gateway_inbox"
    __table_args__ = (Index("ix_whatsapp_gateway_inbox_state_key", "state", "sender_key", "id"),)

    id = Column(Integer, primary_key=True, autoincrement=True)
    sender_key = Column(String(KEY_LENGTH), nullable=False)
    body = Column(LargeBinary, nullable=False)
    signature = Column(String(100), nullable=False)
    received_at = Column(UTCDateTime(), nullable=False)
    state = Column(String(16), nullable=False)
    attempts = Column(Integer, nullable=False, default=0)
    # When the row may next be relayed: the backoff after a failure, or the lease of the relayer that claimed it.
    next_attempt_at = Column(UTCDateTime(), nullable=False)
    last_error = Column(SQLText, nullable=True)
    finished_at = Column(UTCDateTime(), nullable=True)


@dataclass(frozen=True)
class Outcome:
    """What one relay attempt leads to: delivered, pending (retry later) or failed, and why."""

    state: str
    error: Optional[str] = None


class Inbox:
    """The inbox table (SQLite by default, PostgreSQL by URL); blocking calls, run off the event loop.

    On SQLite, ``credia.db`` commits without waiting for a disk flush (WAL, ``synchronous=NORMAL``): a stored
    delivery survives a crash or restart of any process, and Meta does not wait ~20 ms per acknowledgement.
    The event loop calls the inbox through ``call``, one operation at a time on one thread: SQLite takes one
    writer at a time, and a writer that finds the file locked sleeps 1, 2, 5, 10... ms before trying again, so
    concurrent threads made a burst of acknowledgements wait tens of milliseconds for each other.
    """

    def __init__(self, database_url: str) -> None:
        self.engine = make_engine(database_url)
        Base.metadata.create_all(self.engine)
        self.sessions = make_session_factory(self.engine)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inbox")
        self._insert = Delivery.__table__.insert()  # built once: the acknowledgement's only statement

    async def call(self, operation: Callable[..., Any], *args: Any) -> Any:
        """Run a blocking inbox operation off the event loop, after those called before it."""
        return await asyncio.get_running_loop().run_in_executor(self._worker, operation, *args)

    def add(self, body: bytes, signature: str, sender_key: str) -> int:
        now = utcnow()
        with self.engine.begin() as connection:
            inserted = connection.execute(self._insert, {
                "sender_key": sender_key, "body": body, "signature": signature, "received_at": now,
                "state": PENDING, "attempts": 0, "next_attempt_at": now,
            })
            return int(inserted.inserted_primary_key[0])

    def due(self, limit: int) -> List[int]:
        """The oldest pending row of each customer whose time has come (a claimed or backing-off head waits)."""
        heads = select(func.min(Delivery.id)).where(Delivery.state == PENDING).group_by(Delivery.sender_key)
        with self.sessions() as session:
            return list(session.scalars(
                select(Delivery.id)
                .where(Delivery.id.in_(heads), Delivery.next_attempt_at <= utcnow())
                .order_by(Delivery.id)
                .limit(limit)
            ))

    def claim(self, delivery_id: int, lease: timedelta) -> Optional[Tuple[bytes, str]]:
        """Body and signature if this relayer won the row: one atomic update, so two relayers never both do."""
        now = utcnow()
        with self.sessions() as session, session.begin():
            result = session.execute(
                update(Delivery)
                .where(Delivery.id == delivery_id, Delivery.state == PENDING, Delivery.next_attempt_at <= now)
                .values(next_attempt_at=now + lease)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:
                return None
            row = session.execute(select(Delivery.body, Delivery.signature).where(Delivery.id == delivery_id)).one()
            return bytes(row.body), str(row.signature)

    def record(self, delivery_id: int, outcome: Outcome, backoff: Callable[[int], float]) -> float:
        """Store an attempt's outcome; a pending row waits ``backoff(attempts)`` seconds, which is returned."""
        now = utcnow()
        with self.sessions() as session, session.begin():
            row = session.get(Delivery, delivery_id)
            row.attempts += 1
            row.state = outcome.state
            row.last_error = outcome.error
            delay = backoff(row.attempts) if outcome.state == PENDING else 0.0
            row.next_attempt_at = now + timedelta(seconds=delay)
            row.finished_at = None if outcome.state == PENDING else now
            return delay

    def counts(self) -> Dict[str, int]:
        with self.sessions() as session:
            rows = session.execute(select(Delivery.state, func.count()).group_by(Delivery.state)).all()
        return {PENDING: 0, DELIVERED: 0, FAILED: 0, **{state: int(count) for state, count in rows}}

    def ping(self) -> None:
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))


# ------------------------------------------------------------------------------------------------------ relay


class Relayer:
    """Relays due rows to Rasa: one at a time per customer, up to ``concurrency`` customers at once."""

    def __init__(self, inbox: Inbox, config: GatewayConfig) -> None:
        self.inbox = inbox
        self.config = config
        self.wake = asyncio.Event()
        self.stopping = False
        self._in_flight: Set[asyncio.Task] = set()
        self._session: Optional[aiohttp.ClientSession] = None

    async def run(self) -> None:
        """Relay until stopped; woken at once by a new delivery or a finished relay, else every poll."""
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.config.timeout_seconds))
        try:
            while not self.stopping:
                self.wake.clear()
                try:
                    await self.relay_due()
                except Exception:  # noqa: BLE001 (an inbox outage must not stop the relay for good)
                    logger.exception("WhatsApp relay round failed; relaying again at the next poll")
                try:
                    await asyncio.wait_for(self.wake.wait(), self.config.poll_seconds)
                except asyncio.TimeoutError:
                    pass
        finally:
            if self._in_flight:
                await asyncio.wait(list(self._in_flight), timeout=self.config.timeout_seconds)
            await self._session.close()

    def stop(self) -> None:
        self.stopping = True
        self.wake.set()

    async def relay_due(self) -> None:
        room = self.config.concurrency - len(self._in_flight)
        if room <= 0:
            return
        for delivery_id in await self.inbox.call(self.inbox.due, room):
            claimed = await self.inbox.call(self.inbox.claim, delivery_id, self.config.lease)
            if claimed is None:
                continue  # another relayer took it
            task = asyncio.get_running_loop().create_task(self._relay(delivery_id, *claimed))
            self._in_flight.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task) -> None:
        self._in_flight.discard(task)
        self.wake.set()  # this customer's next delivery may be waiting on this one

    async def _relay(self, delivery_id: int, body: bytes, signature: str) -> None:
        outcome = await self.post(body, signature)
        try:
            delay = await self.inbox.call(self.inbox.record, delivery_id, outcome, self.config.retry_delay)
        except SQLAlchemyError:
            logger.exception("outcome of WhatsApp delivery %s not stored; it is relayed again later", delivery_id)
            return
        if outcome.state == PENDING:
            logger.warning("WhatsApp delivery %s not relayed (%s); retry in %.1fs", delivery_id, outcome.error, delay)
        elif outcome.state == FAILED:
            logger.error("Rasa refused WhatsApp delivery %s: %s", delivery_id, outcome.error)

    async def post(self, body: bytes, signature: str) -> Outcome:
        assert self._session is not None
        headers = {SIGNATURE_HEADER: signature, "Content-Type": "application/json"}
        try:
            async with self._session.post(self.config.relay_url, data=body, headers=headers) as reply:
                detail = (await reply.text())[:200]
                status = reply.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            return Outcome(PENDING, f"Rasa unreachable ({type(exc).__name__})")
        if 200 <= status < 300:
            return Outcome(DELIVERED)
        if status >= 500 or status in RETRYABLE_4XX:
            return Outcome(PENDING, f"Rasa answered {status}: {detail}")
        return Outcome(FAILED, f"Rasa answered {status}: {detail}")


# -------------------------------------------------------------------------------------------------------- app


async def read_limited(request: Request, limit: int) -> Optional[bytes]:
    """The raw body, or ``None`` as soon as it exceeds ``limit`` (a declared length is checked first)."""
    declared = request.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks: List[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(config: GatewayConfig, inbox: Optional[Inbox] = None, relay: bool = True) -> FastAPI:
    """The gateway; ``relay=False`` only stores (tests look at the inbox before anything is relayed)."""
    inbox = inbox or Inbox(config.database_url)
    relayer = Relayer(inbox, config)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.get_running_loop().create_task(relayer.run()) if relay else None
        try:
            yield
        finally:
            if task is not None:
                relayer.stop()
                await task

    app = FastAPI(title="Credia WhatsApp gateway", docs_url=None, redoc_url=None, lifespan=lifespan,
                  description=__doc__)
    app.state.inbox = inbox

    @app.get("/health")
    async def health() -> JSONResponse:
        try:
            counts = await inbox.call(inbox.counts)
        except SQLAlchemyError:
            logger.exception("WhatsApp gateway inbox unavailable")
            return JSONResponse({"status": "unavailable", "detail": "inbox database unavailable"}, status_code=503)
        return JSONResponse({"status": "ok", "relay_url": config.relay_url, **counts})

    @app.get(WEBHOOK_PATH)
    async def verify(request: Request) -> PlainTextResponse:
        args = request.query_params
        challenge = handshake_challenge(args.get("hub.mode"), args.get("hub.verify_token"),
                                        args.get("hub.challenge"), config.verify_token)
        if challenge is None:
            return PlainTextResponse("verification failed", status_code=403)
        return PlainTextResponse(challenge)

    @app.post(WEBHOOK_PATH)
    async def receive(request: Request) -> JSONResponse:
        body = await read_limited(request, MAX_BODY_BYTES)
        if body is None:
            return JSONResponse({"detail": f"body larger than {MAX_BODY_BYTES} bytes"}, status_code=413)
        signature = request.headers.get(SIGNATURE_HEADER)
        problem = signature_problem(config.app_secret, body, signature)
        if problem is not None:
            return JSONResponse({"detail": problem[1]}, status_code=problem[0])
        try:
            payload = json.loads(body)
        except ValueError:
            return JSONResponse({"detail": "body is not valid JSON"}, status_code=400)
        if not isinstance(payload, dict):
            return JSONResponse({"detail": "a JSON object is required"}, status_code=400)
        try:
            delivery_id = await inbox.call(inbox.add, body, str(signature), ordering_key(payload))
        except SQLAlchemyError:
            # Not acknowledged: Meta delivers it again later.
            logger.exception("WhatsApp gateway inbox unavailable; delivery refused for a later redelivery")
            return JSONResponse({"detail": "temporarily unavailable"}, status_code=503)
        relayer.wake.set()
        return JSONResponse({"status": "received", "delivery": delivery_id})

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the WhatsApp ingress gateway (Meta calls it; it relays to Rasa).")
    parser.add_argument("--host", default=settings.env("WHATSAPP_GATEWAY_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=settings.env_int("WHATSAPP_GATEWAY_PORT", 8005))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = GatewayConfig.from_env()
    except RuntimeError as exc:
        raise SystemExit(f"whatsapp-gateway: {exc}") from None
    # No websockets here, and uvicorn's auto-detection breaks on the old `websockets` that Rasa pins.
    uvicorn.run(create_app(config), host=args.host, port=args.port, log_level="warning", ws="none",
                access_log=False)


if __name__ == "__main__":
    main()
