"""Delivery of the outbox: signed ``payment.completed`` webhooks, retried with backoff.

Targets, in order: core banking (always), then the assistant (``PAYMENTS_ASSISTANT_WEBHOOK_URL``, when set),
which tells the customer in the conversation. A later target's row is only sent once the earlier one is
delivered, so the customer hears of a payment only after core banking applied it.

A background thread picks due rows, claims each one by pushing its ``next_attempt_at`` forward (so two
service instances never send the same row at once), posts the stored bytes, and records the outcome.
Connection errors, timeouts, 5xx, 408 and 429 are retried with exponential backoff up to the maximum number
of attempts; any other answer outside 2xx is a permanent failure. Delivery is at least once: the receiver
de-duplicates on ``payment_id``.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Dict, List, Tuple

import requests
from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session, aliased, sessionmaker

from credia import settings
from credia.db import utcnow
from credia.payments.models import DeliveryStatus, Notification, PaymentLink
from credia.payments.schemas import format_amount
from credia.signing import SIGNATURE_HEADER, sign

logger = logging.getLogger(__name__)

PAYMENT_COMPLETED = "payment.completed"
MAX_RETRY_DELAY_SECONDS = 3600.0
# Time a claimed row stays invisible to other workers beyond the request timeout.
CLAIM_MARGIN_SECONDS = 30.0
BATCH_SIZE = 20
RETRYABLE_4XX = {408, 429}


CORE_BANKING_TARGET = "core_banking"
ASSISTANT_TARGET = "assistant"


@dataclass(frozen=True)
class NotifierSettings:
    targets: Tuple[Tuple[str, str], ...]  # (name, url) in delivery order
    secret: str
    retry_base_seconds: float
    max_attempts: int
    timeout_seconds: float
    poll_seconds: float

    @classmethod
    def from_env(cls) -> NotifierSettings:
        targets = [(CORE_BANKING_TARGET, f"{settings.core_banking_url()}/webhooks/payments")]
        assistant_url = settings.env("PAYMENTS_ASSISTANT_WEBHOOK_URL", "")
        if assistant_url:
            targets.append((ASSISTANT_TARGET, assistant_url))
        return cls(
            targets=tuple(targets),
            secret=settings.payments_webhook_secret(),
            retry_base_seconds=settings.env_float("PAYMENTS_WEBHOOK_RETRY_BASE_SECONDS", 2.0),
            max_attempts=max(1, settings.env_int("PAYMENTS_WEBHOOK_MAX_ATTEMPTS", 10)),
            timeout_seconds=settings.env_float("PAYMENTS_WEBHOOK_TIMEOUT_SECONDS", 5.0),
            poll_seconds=settings.env_float("PAYMENTS_WEBHOOK_POLL_SECONDS", 1.0),
        )

    @property
    def target_names(self) -> List[str]:
        return [name for name, _url in self.targets]

    @property
    def urls(self) -> Dict[str, str]:
        return dict(self.targets)

    def retry_delay(self, attempts: int) -> float:
        """Delay after the ``attempts``-th failed attempt: base, 2·base, 4·base, ... capped at one hour."""
        return min(self.retry_base_seconds * 2 ** (attempts - 1), MAX_RETRY_DELAY_SECONDS)


def completed_payload(link: PaymentLink) -> bytes:
    """The exact bytes sent (and signed) on every attempt for a paid link."""
    payload = {
        "event": PAYMENT_COMPLETED,
        "payment_id": link.payment_id,
        "link_id": link.id,
        "amount": format_amount(link.amount, link.currency),
        "currency": link.currency,
        "reference": link.reference,
        "customer_id": link.customer_id,
        "loan_id": link.loan_id,
        "paid_at": link.paid_at.isoformat(),
        "metadata": link.link_metadata or {},
    }
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


@dataclass(frozen=True)
class _Outcome:
    delivered: bool
    retryable: bool
    status_code: int | None
    error: str | None


class WebhookNotifier:
    def __init__(self, session_factory: sessionmaker, config: NotifierSettings) -> None:
        self._session_factory = session_factory
        self._config = config
        self._http = requests.Session()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="payments-webhook-notifier", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Let an attempt in flight finish and be recorded, then end the thread."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self._config.timeout_seconds + 2)
        self._http.close()

    def wake(self) -> None:
        """Deliver now rather than at the next poll; called after a payment commits."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                self.deliver_due()
                pause = self._seconds_until_next_due()
            except Exception:  # a database outage must not kill the worker
                logger.exception("webhook delivery round failed")
                pause = self._config.poll_seconds
            self._wake.wait(pause)

    def deliver_due(self) -> None:
        for notification_id in self._due_ids():
            if self._stopping.is_set():
                return
            claimed = self._claim(notification_id)
            if claimed is not None:
                self._attempt(notification_id, *claimed)

    def _due_ids(self) -> List[int]:
        """Pending rows whose time has come and whose predecessor, if any, is delivered."""
        before = aliased(Notification)
        with self._session_factory() as session:
            query = (
                select(Notification.id)
                .outerjoin(before, Notification.after_id == before.id)
                .where(
                    Notification.status == DeliveryStatus.PENDING.value,
                    Notification.next_attempt_at <= utcnow(),
                    or_(Notification.after_id.is_(None), before.status == DeliveryStatus.DELIVERED.value),
                )
                .order_by(Notification.next_attempt_at, Notification.id)
                .limit(BATCH_SIZE)
            )
            return list(session.execute(query).scalars())

    def _seconds_until_next_due(self) -> float:
        with self._session_factory() as session:
            next_due: datetime | None = session.execute(
                select(func.min(Notification.next_attempt_at)).where(
                    Notification.status == DeliveryStatus.PENDING.value
                )
            ).scalar_one()
        if next_due is None:
            return self._config.poll_seconds
        return min(max((next_due - utcnow()).total_seconds(), 0.0), self._config.poll_seconds)

    def _claim(self, notification_id: int) -> Tuple[str, bytes] | None:
        """Return the target and body to send if this worker won the row, else None."""
        now = utcnow()
        lease = timedelta(seconds=self._config.timeout_seconds + CLAIM_MARGIN_SECONDS)
        with self._session_factory() as session, session.begin():
            result = session.execute(
                update(Notification)
                .where(
                    Notification.id == notification_id,
                    Notification.status == DeliveryStatus.PENDING.value,
                    Notification.next_attempt_at <= now,
                )
                .values(next_attempt_at=now + lease)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:
                return None
            notification = session.get(Notification, notification_id)
            return notification.target, notification.body

    def _attempt(self, notification_id: int, target: str, body: bytes) -> None:
        url = self._config.urls.get(target)
        outcome = self._post(url, body) if url else _Outcome(False, False, None, f"no URL configured for {target}")
        now = utcnow()
        with self._session_factory() as session, session.begin():
            notification = session.get(Notification, notification_id)
            notification.attempts += 1
            notification.last_attempt_at = now
            notification.last_status_code = outcome.status_code
            notification.last_error = outcome.error
            if outcome.delivered:
                notification.status = DeliveryStatus.DELIVERED.value
                notification.delivered_at = now
                logger.info("webhook %s delivered for %s", notification.id, notification.payment_id)
            elif outcome.retryable and notification.attempts < self._config.max_attempts:
                delay = self._config.retry_delay(notification.attempts)
                notification.next_attempt_at = now + timedelta(seconds=delay)
                logger.warning(
                    "webhook %s attempt %d failed, retry in %.1fs: %s",
                    notification.id,
                    notification.attempts,
                    delay,
                    outcome.error,
                )
            else:
                notification.status = DeliveryStatus.FAILED.value
                logger.error(
                    "webhook %s to %s failed for good after %d attempts: %s",
                    notification.id,
                    target,
                    notification.attempts,
                    outcome.error,
                )
                self._fail_followers(session, notification)

    @staticmethod
    def _fail_followers(session: Session, failed: Notification) -> None:
        """Rows waiting on a row that failed for good would wait forever; they fail with it."""
        waiting = [failed.id]
        while waiting:
            followers = session.execute(
                select(Notification).where(Notification.after_id.in_(waiting))
            ).scalars().all()
            for follower in followers:
                follower.status = DeliveryStatus.FAILED.value
                follower.last_error = f"not sent: webhook {failed.id} to {failed.target} failed"
            waiting = [follower.id for follower in followers]

    def _post(self, url: str, body: bytes) -> _Outcome:
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self._config.secret, body),
            "User-Agent": "credia-payments",
        }
        try:
            response = self._http.post(
                url,
                data=body,
                headers=headers,
                timeout=self._config.timeout_seconds,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            return _Outcome(False, True, None, f"{type(exc).__name__}: {exc}"[:500])
        code = response.status_code
        if 200 <= code < 300:
            return _Outcome(True, False, code, None)
        retryable = code >= 500 or code in RETRYABLE_4XX
        return _Outcome(False, retryable, code, f"HTTP {code}: {response.text[:200]}")
