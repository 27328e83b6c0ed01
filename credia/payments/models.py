"""Tables of the payments service: payment links and the outbox of webhook notifications.

A notification row is written in the same transaction that marks a link paid, so a payment is never
recorded without its notification (transactional outbox); the notifier delivers rows later, even after a
restart.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import declarative_base

from credia.db import ExactDecimal, UTCDateTime

Base: Any = declarative_base()


def Money() -> ExactDecimal:  # noqa: N802 (reads like a column type)
    return ExactDecimal(2)


class LinkStatus(str, enum.Enum):
    """Status shown to clients; ``expired`` is never stored, it is computed from ``expires_at``."""

    PENDING = "pending"
    PAID = "paid"
    EXPIRED = "expired"


class DeliveryStatus(str, enum.Enum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class PaymentLink(Base):
    __tablename__ = "payment_links"

    id = Column(String(32), primary_key=True)
    idempotency_key = Column(String(255), nullable=False, unique=True)
    request_hash = Column(String(64), nullable=False)
    url = Column(String(512), nullable=False)
    amount = Column(Money(), nullable=False)
    currency = Column(String(3), nullable=False)
    reference = Column(String(64), nullable=False, index=True)
    customer_id = Column(String(64), nullable=False, index=True)
    loan_id = Column(String(64), nullable=True)
    description = Column(String(140), nullable=False, default="")
    # The caller's own keys (e.g. the conversation to tell when it is paid), echoed in every webhook.
    # ``metadata`` is reserved by SQLAlchemy's declarative base, hence the attribute name.
    link_metadata = Column("metadata", JSON, nullable=False, default=dict)
    status = Column(String(16), nullable=False, default=LinkStatus.PENDING.value)
    payment_id = Column(String(32), nullable=True, unique=True)
    expires_at = Column(UTCDateTime, nullable=False)
    created_at = Column(UTCDateTime, nullable=False)
    paid_at = Column(UTCDateTime, nullable=True)

    def status_at(self, now: datetime) -> LinkStatus:
        if self.status == LinkStatus.PAID.value:
            return LinkStatus.PAID
        return LinkStatus.EXPIRED if now >= self.expires_at else LinkStatus.PENDING


class Notification(Base):
    """One webhook to one target; ``body`` keeps the exact bytes so every retry sends the same payload.

    A payment fans out to the targets in their configured order: a row with ``after_id`` waits until that
    row is delivered (the system of record applies a payment before the assistant announces it), and fails
    with it.
    """

    __tablename__ = "payment_notifications"
    __table_args__ = (Index("ix_payment_notifications_due", "status", "next_attempt_at"),)

    id = Column(Integer, primary_key=True, autoincrement=True)
    link_id = Column(String(32), ForeignKey("payment_links.id"), nullable=False, index=True)
    event = Column(String(64), nullable=False)
    target = Column(String(32), nullable=False, default="core_banking")
    after_id = Column(Integer, ForeignKey("payment_notifications.id"), nullable=True)
    payment_id = Column(String(32), nullable=False)
    body = Column(LargeBinary, nullable=False)
    status = Column(String(16), nullable=False, default=DeliveryStatus.PENDING.value)
    attempts = Column(Integer, nullable=False, default=0)
    next_attempt_at = Column(UTCDateTime, nullable=False)
    last_attempt_at = Column(UTCDateTime, nullable=True)
    last_status_code = Column(Integer, nullable=True)
    last_error = Column(Text, nullable=True)
    delivered_at = Column(UTCDateTime, nullable=True)
    created_at = Column(UTCDateTime, nullable=False)
