"""Tables of the agent desk: agents and their sessions, handoffs with their messages, the outbox towards Rasa,
tickets and callbacks, and stored answers of idempotent requests.

A handoff that is still open (queued or assigned) holds its conversation id in ``open_conversation_id``, a
unique column, so two requests for the same conversation can never open two handoffs, whatever the database.
"""

from __future__ import annotations

import enum
from typing import Any

from sqlalchemy import JSON, Boolean, Column, ForeignKey, Integer, SmallInteger, String, Text, UniqueConstraint
from sqlalchemy.orm import declarative_base, relationship

from credia.db import UTCDateTime

Base: Any = declarative_base()


class Role(str, enum.Enum):
    AGENT = "agent"
    SUPERVISOR = "supervisor"


class HandoffStatus(str, enum.Enum):
    QUEUED = "queued"
    ASSIGNED = "assigned"
    RESOLVED = "resolved"


class Priority(str, enum.Enum):
    URGENT = "urgent"
    HIGH = "high"
    NORMAL = "normal"

    @property
    def rank(self) -> int:
        """Queue order: lower goes first."""
        return list(Priority).index(self)


class MessageKind(str, enum.Enum):
    CUSTOMER = "customer"
    BOT = "bot"
    AGENT = "agent"
    NOTE = "note"  # internal: never leaves the desk
    SYSTEM = "system"  # the desk's own record (assignments, transfers, hand-back); never leaves the desk


class DeliveryStatus(str, enum.Enum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # Rasa refused it for good; waits for an agent to retry


class TicketKind(str, enum.Enum):
    CALLBACK = "callback"
    TICKET = "ticket"


class Agent(Base):
    __tablename__ = "agents"

    id = Column(Integer, primary_key=True, autoincrement=True)
    username = Column(String(64), nullable=False, unique=True)
    display_name = Column(String(120), nullable=False)
    role = Column(String(16), nullable=False)
    password_hash = Column(String(255), nullable=False)
    active = Column(Boolean, nullable=False, default=True)
    available = Column(Boolean, nullable=False, default=True)  # False: logged in but on a break
    created_at = Column(UTCDateTime, nullable=False)


class AuthSession(Base):
    """A console login; only the SHA-256 of its token is stored, so a copy of the database opens nothing."""

    __tablename__ = "auth_sessions"

    id = Column(Integer, primary_key=True, autoincrement=True)
    token_hash = Column(String(64), nullable=False, unique=True)
    csrf_token = Column(String(64), nullable=False)
    agent_id = Column(Integer, ForeignKey("agents.id", ondelete="CASCADE"), nullable=False, index=True)
    created_at = Column(UTCDateTime, nullable=False)
    last_seen_at = Column(UTCDateTime, nullable=False)
    expires_at = Column(UTCDateTime, nullable=False)

    agent = relationship(Agent, lazy="joined")


class LoginThrottle(Base):
    """Failed logins per user name (known or not, so the answers never tell which names exist)."""

    __tablename__ = "login_throttle"

    username = Column(String(64), primary_key=True)
    failures = Column(Integer, nullable=False, default=0)
    last_failure_at = Column(UTCDateTime, nullable=True)
    locked_until = Column(UTCDateTime, nullable=True)


class Handoff(Base):
    __tablename__ = "handoffs"

    id = Column(Integer, primary_key=True, autoincrement=True)
    conversation_id = Column(String(255), nullable=False, index=True)
    open_conversation_id = Column(String(255), nullable=True, unique=True)
    channel = Column(String(64), nullable=False)
    country = Column(String(2), nullable=False)
    reason = Column(String(64), nullable=False)
    priority = Column(String(16), nullable=False)
    priority_rank = Column(SmallInteger, nullable=False, index=True)
    customer = Column(JSON, nullable=False)
    journey = Column(String(64), nullable=True)
    values = Column("captured_values", JSON, nullable=False)  # VALUES is an SQL keyword
    offers = Column(JSON, nullable=False)
    status = Column(String(16), nullable=False, index=True)
    agent_id = Column(Integer, ForeignKey("agents.id"), nullable=True, index=True)
    created_at = Column(UTCDateTime, nullable=False)
    assigned_at = Column(UTCDateTime, nullable=True)
    resolved_at = Column(UTCDateTime, nullable=True)
    outcome = Column(String(40), nullable=True)
    survey_requested = Column(Boolean, nullable=False, default=False)
    survey_rating = Column(SmallInteger, nullable=True)
    survey_at = Column(UTCDateTime, nullable=True)

    agent = relationship(Agent, lazy="joined")
    messages = relationship("Message", order_by="Message.id", back_populates="handoff", lazy="selectin")


class Message(Base):
    """One line of the conversation as the desk shows it: the transcript sent with the handoff, live customer
    messages, agents' replies, internal notes and the desk's own records."""

    __tablename__ = "messages"

    id = Column(Integer, primary_key=True, autoincrement=True)
    handoff_id = Column(Integer, ForeignKey("handoffs.id", ondelete="CASCADE"), nullable=False, index=True)
    kind = Column(String(16), nullable=False)
    text = Column(Text, nullable=False)
    attachments = Column(JSON, nullable=False, default=list)
    author_id = Column(Integer, ForeignKey("agents.id"), nullable=True)
    event_id = Column(String(300), nullable=True, unique=True)  # the assistant's id of a live customer message
    at = Column(UTCDateTime, nullable=False)

    handoff = relationship(Handoff, back_populates="messages")
    author = relationship(Agent, lazy="joined")
    delivery = relationship("OutboxItem", uselist=False, back_populates="message", lazy="joined")


class OutboxItem(Base):
    """A call to Rasa's HTTP API, written in the same transaction as what caused it and delivered in order per
    conversation by the background worker, so a reply or a hand-back is never lost when Rasa is down."""

    __tablename__ = "outbox"

    id = Column(Integer, primary_key=True, autoincrement=True)
    handoff_id = Column(Integer, ForeignKey("handoffs.id", ondelete="CASCADE"), nullable=False, index=True)
    conversation_id = Column(String(255), nullable=False, index=True)
    message_id = Column(Integer, ForeignKey("messages.id"), nullable=True)
    kind = Column(String(16), nullable=False)  # reply, resume, handback
    path = Column(String(600), nullable=False)  # under RASA_URL, without the token
    body = Column(JSON, nullable=False)
    status = Column(String(16), nullable=False, index=True)
    attempts = Column(Integer, nullable=False, default=0)
    next_attempt_at = Column(UTCDateTime, nullable=False)
    last_error = Column(Text, nullable=True)
    created_at = Column(UTCDateTime, nullable=False)
    delivered_at = Column(UTCDateTime, nullable=True)

    message = relationship(Message, back_populates="delivery")


class Ticket(Base):
    __tablename__ = "tickets"

    id = Column(Integer, primary_key=True, autoincrement=True)
    code = Column(String(16), nullable=False, unique=True)
    kind = Column(String(16), nullable=False)
    conversation_id = Column(String(255), nullable=False, index=True)
    callback_at = Column(UTCDateTime, nullable=True)
    contact = Column(String(120), nullable=True)
    summary = Column(Text, nullable=False)
    customer = Column(JSON, nullable=False)
    created_by_id = Column(Integer, ForeignKey("agents.id"), nullable=True)  # None: the assistant opened it
    created_at = Column(UTCDateTime, nullable=False)
    done_at = Column(UTCDateTime, nullable=True)
    done_by_id = Column(Integer, ForeignKey("agents.id"), nullable=True)

    created_by = relationship(Agent, foreign_keys=[created_by_id], lazy="joined")
    done_by = relationship(Agent, foreign_keys=[done_by_id], lazy="joined")


class IdempotentRequest(Base):
    """The answer given to a service-API request with an ``Idempotency-Key``, replayed for a retry."""

    __tablename__ = "idempotent_requests"
    __table_args__ = (UniqueConstraint("scope", "key"),)

    id = Column(Integer, primary_key=True, autoincrement=True)
    scope = Column(String(32), nullable=False)
    key = Column(String(255), nullable=False)
    request_hash = Column(String(64), nullable=False)
    status_code = Column(Integer, nullable=False)
    response = Column(JSON, nullable=False)
    created_at = Column(UTCDateTime, nullable=False)
