"""Customer messages of a paused conversation go to the agent desk, and none is lost when the desk is down.

Rasa publishes every tracker event to its event broker. This broker (``event_broker`` in endpoints.yml) keeps
which conversations are paused (a ``pause`` event, written by the handoff action, until the desk's ``resume``)
and puts each customer message of a paused conversation in a persistent outbox, which a background task
delivers to the desk with retries: a message sent while the desk is down is delivered when it is back, even
after a restart. The bot itself says nothing while paused (Rasa does not predict for paused conversations).
"""

from __future__ import annotations

import asyncio
import json
import logging
from asyncio import AbstractEventLoop
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, Optional

from rasa.core.brokers.broker import EventBroker
from rasa.utils.endpoints import EndpointConfig
from sqlalchemy import Column, Integer, String, Text, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import declarative_base, sessionmaker

from credia import settings
from credia.backends import BackendError, BackendRejected
from credia.db import UTCDateTime, make_engine, make_session_factory, utcnow
from credia.handoff.desk import DeskClient

logger = logging.getLogger(__name__)

Base: Any = declarative_base()
MAX_RETRY_SECONDS = 60.0


class PausedConversation(Base):
    __tablename__ = "handoff_paused_conversations"

    conversation_id = Column(String(255), primary_key=True)
    paused_at = Column(UTCDateTime, nullable=False)


class OutboxMessage(Base):
    """A customer message for the desk; ``event_id`` (conversation and timestamp) makes it unique."""

    __tablename__ = "handoff_outbox"

    id = Column(Integer, primary_key=True, autoincrement=True)
    event_id = Column(String(300), nullable=False, unique=True)
    conversation_id = Column(String(255), nullable=False, index=True)
    body = Column(Text, nullable=False)
    attempts = Column(Integer, nullable=False, default=0)
    next_attempt_at = Column(UTCDateTime, nullable=False)
    delivered_at = Column(UTCDateTime, nullable=True)
    last_error = Column(Text, nullable=True)


# Events that pause the forwarding of a conversation or end the pause.
PAUSE_EVENTS = frozenset({"pause", "resume", "restart", "session_started"})


def customer_message(event: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The desk's view of a user event, or None for what is not a customer's own message."""
    text = event.get("text") or ""
    if event.get("event") != "user" or text.startswith("EXTERNAL:"):
        return None
    at = datetime.fromtimestamp(float(event.get("timestamp") or 0), tz=timezone.utc)
    attachments = ((event.get("metadata") or {}).get("attachments")) or []
    return {
        "event_id": f"{event['sender_id']}:{event.get('timestamp')}",
        "text": text,
        "at": at.isoformat(),
        "attachments": attachments,
    }


class DeskForwarder(EventBroker):
    def __init__(self, sessions: sessionmaker, desk: DeskClient, poll_seconds: float = 1.0) -> None:
        self.sessions = sessions
        self.desk = desk
        self.poll_seconds = poll_seconds
        self._wake = asyncio.Event()
        self._task: Optional[asyncio.Task] = None

    @classmethod
    async def from_endpoint_config(
        cls, broker_config: EndpointConfig, event_loop: Optional[AbstractEventLoop] = None
    ) -> "DeskForwarder":
        url = broker_config.kwargs.get("db_url") or settings.channels_database_url()
        engine = make_engine(url)
        Base.metadata.create_all(engine)
        forwarder = cls(make_session_factory(engine), DeskClient())
        forwarder.start()
        return forwarder

    def start(self) -> None:
        self._task = asyncio.get_event_loop().create_task(self._deliver_forever())

    def is_ready(self) -> bool:
        return True

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def publish(self, event: Dict[str, Any]) -> None:
        """Called by Rasa for every event it stores; must not block, must not raise."""
        try:
            self._record(event)
        except IntegrityError:
            pass  # the same message published again: already in the outbox
        except Exception:  # a broken store must never break the conversation itself
            logger.exception("could not record event %s for the desk", event.get("event"))

    def _record(self, event: Dict[str, Any]) -> None:
        conversation_id = str(event.get("sender_id") or "")
        kind = event.get("event")
        message = customer_message(event)
        if message is None and kind not in PAUSE_EVENTS:
            return  # most events (actions, slots, bot messages) matter neither to the desk nor to the pause state
        with self.sessions() as session, session.begin():
            if kind == "pause":
                session.merge(PausedConversation(conversation_id=conversation_id, paused_at=utcnow()))
                return
            if kind in ("resume", "restart", "session_started"):
                paused = session.get(PausedConversation, conversation_id)
                if paused is not None:
                    session.delete(paused)
                return
            if message is None or session.get(PausedConversation, conversation_id) is None:
                return
            session.add(
                OutboxMessage(
                    event_id=message["event_id"],
                    conversation_id=conversation_id,
                    body=json.dumps(message, ensure_ascii=False),
                    next_attempt_at=utcnow(),
                )
            )
        self._wake.set()

    async def _deliver_forever(self) -> None:
        while True:
            try:
                await self.deliver_due()
            except Exception:
                logger.exception("delivery of customer messages to the desk failed")
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_seconds)
            except asyncio.TimeoutError:
                pass

    async def deliver_due(self) -> None:
        """Send due messages oldest first; a failure postpones that conversation's later messages too."""
        with self.sessions() as session:
            due = session.execute(
                select(OutboxMessage)
                .where(OutboxMessage.delivered_at.is_(None), OutboxMessage.next_attempt_at <= utcnow())
                .order_by(OutboxMessage.id)
                .limit(50)
            ).scalars().all()
        blocked: set[str] = set()
        for row in due:
            if row.conversation_id in blocked:
                continue
            error: Optional[str] = None
            try:
                await self.desk.forward_message(row.conversation_id, json.loads(row.body))
            except BackendRejected as exc:
                if exc.status != 404:
                    error = str(exc)
                # 404: the desk no longer has this conversation in handoff; nothing to deliver.
            except BackendError as exc:
                error = str(exc)
            self._mark(row.id, error)
            if error:
                blocked.add(row.conversation_id)

    def _mark(self, row_id: int, error: Optional[str]) -> None:
        with self.sessions() as session, session.begin():
            row = session.get(OutboxMessage, row_id)
            row.attempts += 1
            if error is None:
                row.delivered_at = utcnow()
                return
            row.last_error = error[:500]
            delay = min(2.0 ** row.attempts, MAX_RETRY_SECONDS)
            row.next_attempt_at = utcnow() + timedelta(seconds=delay)
            logger.warning("customer message for the desk not delivered (attempt %d): %s", row.attempts, error)

