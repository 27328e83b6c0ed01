"""Delivery of agents' replies and hand-backs to Rasa's HTTP API, from the outbox table.

What an agent does is committed first, with its outbox rows; a background thread then calls Rasa. Rows of one
conversation go strictly in order (a reply, then ``resume``, then the ``EXTERNAL_handoff_resolved`` intent), so
the bot never speaks before the agent's last words. Connection errors, timeouts, 5xx, 408 and 429 are retried
with exponential backoff for as long as it takes; any other refusal marks the row failed, and the console shows
it with a button to try again. Nothing is dropped.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable, List, Optional, Set, Tuple
from urllib.parse import quote, urlencode

import requests
from sqlalchemy import select, update
from sqlalchemy.orm import sessionmaker

from credia.db import utcnow
from credia.desk.models import DeliveryStatus, OutboxItem

logger = logging.getLogger(__name__)

RETRYABLE_4XX = {408, 429}
CLAIM_MARGIN_SECONDS = 30.0
BATCH_SIZE = 200


@dataclass(frozen=True)
class RasaTarget:
    url: str
    token: str
    timeout_seconds: float = 10.0
    retry_base_seconds: float = 2.0
    max_retry_seconds: float = 60.0
    poll_seconds: float = 1.0

    def retry_delay(self, attempts: int) -> float:
        return min(self.retry_base_seconds * 2 ** (attempts - 1), self.max_retry_seconds)


def events_path(conversation_id: str) -> str:
    """Rasa's "append events" call; ``execute_side_effects`` makes it send a bot event on the customer's channel."""
    query = urlencode({"output_channel": "latest", "execute_side_effects": "true"})
    return f"/conversations/{quote(conversation_id, safe='')}/tracker/events?{query}"


def trigger_path(conversation_id: str) -> str:
    return f"/conversations/{quote(conversation_id, safe='')}/trigger_intent?output_channel=latest"


@dataclass(frozen=True)
class _Outcome:
    delivered: bool
    retryable: bool
    error: Optional[str]


class RasaOutbox:
    def __init__(
        self, sessions: sessionmaker, target: RasaTarget, on_change: Callable[[int, str], None]
    ) -> None:
        """``on_change(handoff_id, status)`` is called after each attempt is recorded."""
        self._sessions = sessions
        self._target = target
        self._on_change = on_change
        self._http = requests.Session()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="desk-rasa-outbox", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self._target.timeout_seconds + 2)
        self._http.close()

    def wake(self) -> None:
        """Deliver now rather than at the next poll; called after a commit that added rows."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                self.deliver_due()
            except Exception:  # a database outage must not kill the worker
                logger.exception("delivery round to Rasa failed")
            self._wake.wait(self._target.poll_seconds)

    def deliver_due(self) -> None:
        for item_id in self._due_ids():
            if self._stopping.is_set():
                return
            claimed = self._claim(item_id)
            if claimed is not None:
                self._attempt(item_id, *claimed)

    def _due_ids(self) -> List[int]:
        """The oldest undelivered row of each conversation, when it is pending and its time has come."""
        now = utcnow()
        with self._sessions() as session:
            rows = session.execute(
                select(OutboxItem.id, OutboxItem.conversation_id, OutboxItem.status, OutboxItem.next_attempt_at)
                .where(OutboxItem.status != DeliveryStatus.DELIVERED.value)
                .order_by(OutboxItem.id)
                .limit(BATCH_SIZE)
            ).all()
        seen: Set[str] = set()
        due = []
        for item_id, conversation_id, status, next_attempt_at in rows:
            if conversation_id in seen:
                continue
            seen.add(conversation_id)
            if status == DeliveryStatus.PENDING.value and next_attempt_at <= now:
                due.append(item_id)
        return due

    def _claim(self, item_id: int) -> Optional[Tuple[str, object]]:
        """The path and body to send if this worker won the row (another desk process may be polling too)."""
        now = utcnow()
        lease = timedelta(seconds=self._target.timeout_seconds + CLAIM_MARGIN_SECONDS)
        with self._sessions() as session, session.begin():
            result = session.execute(
                update(OutboxItem)
                .where(
                    OutboxItem.id == item_id,
                    OutboxItem.status == DeliveryStatus.PENDING.value,
                    OutboxItem.next_attempt_at <= now,
                )
                .values(next_attempt_at=now + lease)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:
                return None
            item = session.get(OutboxItem, item_id)
            return item.path, item.body

    def _attempt(self, item_id: int, path: str, body: object) -> None:
        outcome = self._post(path, body)
        now = utcnow()
        with self._sessions() as session, session.begin():
            item = session.get(OutboxItem, item_id)
            item.attempts += 1
            item.last_error = outcome.error
            if outcome.delivered:
                item.status = DeliveryStatus.DELIVERED.value
                item.delivered_at = now
            elif outcome.retryable:
                delay = self._target.retry_delay(item.attempts)
                item.next_attempt_at = now + timedelta(seconds=delay)
                logger.warning("Rasa call %s (%s) failed, retry in %.1fs: %s", item.id, item.kind, delay, outcome.error)
            else:
                item.status = DeliveryStatus.FAILED.value
                logger.error("Rasa refused call %s (%s): %s", item.id, item.kind, outcome.error)
            handoff_id, status = item.handoff_id, item.status
        self._on_change(handoff_id, status)
        if outcome.delivered:
            self.wake()  # the conversation's next row may be waiting on this one

    def _post(self, path: str, body: object) -> _Outcome:
        separator = "&" if "?" in path else "?"
        url = f"{self._target.url}{path}{separator}{urlencode({'token': self._target.token})}"
        try:
            response = self._http.post(url, json=body, timeout=self._target.timeout_seconds)
        except requests.RequestException as exc:
            return _Outcome(False, True, f"Rasa no responde ({type(exc).__name__})")
        if 200 <= response.status_code < 300:
            return _Outcome(True, False, None)
        retryable = response.status_code >= 500 or response.status_code in RETRYABLE_4XX
        return _Outcome(False, retryable, f"Rasa respondió {response.status_code}: {response.text[:200]}")
