"""The scheduler's state: one row per planned contact and the audit of every decision (SQLAlchemy; SQLite by
default, PostgreSQL by ``REMINDERS_DATABASE_URL``), so a restart loses nothing and sends nothing twice.

A planned contact is unique per (loan, subject, step). Sending is claim-then-send: the row goes from ``pending``
to ``sending`` in a transaction that also checks the customer's frequency caps while holding the customer's
gate row (a write lock), so two scheduler processes can never both contact a customer beyond a cap; only then
is Rasa called, and the row becomes ``sent``. A process that dies between the call and the record leaves the row
``sending``: the next run asks the conversation whether the reminder (its ``reminder_id``) arrived and either
records it as sent or puts it back to ``pending``; it is never sent twice on a guess.

The audit keeps a decision when it changes (a reminder kept outside the hours from 06:00 to 07:00 is one
"outside_hours" decision, not sixty): sent, skipped with the reason, expired, failed.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Callable, Dict, List, Optional, Set, Tuple
from zoneinfo import ZoneInfo

from sqlalchemy import Column, Date, ForeignKey, Index, Integer, String, UniqueConstraint, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, declarative_base

from credia.db import ExactDecimal, UTCDateTime, make_engine, make_session_factory, utcnow
from credia.reminders.cadence import Step
from credia.reminders.contact import Block, Contacted

Base: Any = declarative_base()

PENDING = "pending"
SENDING = "sending"
SENT = "sent"
SKIPPED = "skipped"  # final: the reminder no longer applies (paid)
EXPIRED = "expired"  # final: its last day passed without it going out
# Outcomes in the audit.
OUTCOME_SENT = "sent"
OUTCOME_SKIPPED = "skipped"
OUTCOME_EXPIRED = "expired"
OUTCOME_FAILED = "failed"
# How far around an instant the frequency caps look (the widest cap is a week).
HISTORY_SPAN = timedelta(days=8)


class ContactRow(Base):
    __tablename__ = "reminder_contacts"
    __table_args__ = (
        UniqueConstraint("loan_id", "subject", "step", name="uq_reminder_step"),
        Index("ix_reminder_contacts_customer_status", "customer_id", "status"),
    )

    id = Column(Integer, primary_key=True)
    # Sent to Rasa with the reminder, and looked for in the conversation after an interruption.
    reminder_id = Column(String(40), nullable=False, unique=True)
    customer_id = Column(Integer, nullable=False)
    loan_id = Column(Integer, nullable=False)
    subject = Column(String(40), nullable=False)  # installment:3, promise:12, plan:4:2
    step = Column(String(40), nullable=False)  # before_due:3, due_today, overdue:7, promise_broken, ...
    kind = Column(String(20), nullable=False)
    due_date = Column(Date, nullable=False)
    due_amount = Column(ExactDecimal(2), nullable=False)
    currency = Column(String(3), nullable=False)
    step_date = Column(Date, nullable=False)
    last_day = Column(Date, nullable=False, index=True)
    time_zone = Column(String(40), nullable=False)
    status = Column(String(10), nullable=False, default=PENDING, index=True)
    last_outcome = Column(String(10), nullable=True)
    last_reason = Column(String(30), nullable=True)
    last_channel = Column(String(10), nullable=True)
    attempts = Column(Integer, nullable=False, default=0)
    not_before = Column(UTCDateTime, nullable=True)  # after a failed delivery, on the scheduler's clock
    channel = Column(String(10), nullable=True)  # whatsapp, sms, web: what consent and caps count
    output_channel = Column(String(30), nullable=True)  # Rasa's output channel
    conversation_id = Column(String(255), nullable=True)
    contacted_at = Column(UTCDateTime, nullable=True)  # on the scheduler's clock: what the caps count
    claimed_at = Column(UTCDateTime, nullable=True)  # real time: when an unconfirmed send is stale
    created_at = Column(UTCDateTime, nullable=False, default=utcnow)
    updated_at = Column(UTCDateTime, nullable=False, default=utcnow)


class DecisionRow(Base):
    """One decision about one planned contact, kept at least two years (``audit_retention_days``)."""

    __tablename__ = "reminder_decisions"

    id = Column(Integer, primary_key=True)
    decided_at = Column(UTCDateTime, nullable=False, index=True)  # the scheduler's clock
    day = Column(Date, nullable=False, index=True)  # the customer's local day
    customer_id = Column(Integer, nullable=False, index=True)
    loan_id = Column(Integer, nullable=False)
    contact_id = Column(Integer, ForeignKey("reminder_contacts.id", ondelete="SET NULL"), nullable=True)
    reminder_id = Column(String(40), nullable=False)
    kind = Column(String(20), nullable=False)
    step = Column(String(40), nullable=False)
    outcome = Column(String(10), nullable=False)
    reason = Column(String(30), nullable=True)
    channel = Column(String(10), nullable=True)
    conversation_id = Column(String(255), nullable=True)
    rule = Column(String(300), nullable=True)
    detail = Column(String(500), nullable=True)
    recorded_at = Column(UTCDateTime, nullable=False, default=utcnow)


class CustomerGate(Base):
    """Locked (updated) while a contact to the customer is claimed, so caps are checked one claim at a time."""

    __tablename__ = "reminder_customer_gates"

    customer_id = Column(Integer, primary_key=True, autoincrement=False)
    touched_at = Column(UTCDateTime, nullable=False)


@dataclass(frozen=True)
class Contact:
    """A planned contact as read from the store (detached from any session)."""

    id: Optional[int]
    reminder_id: str
    customer_id: int
    loan_id: int
    subject: str
    step: str
    kind: str
    due_date: date
    due_amount: Decimal
    currency: str
    step_date: date
    last_day: date
    time_zone: str
    status: str
    last_outcome: Optional[str] = None
    last_reason: Optional[str] = None
    last_channel: Optional[str] = None
    attempts: int = 0
    not_before: Optional[datetime] = None
    channel: Optional[str] = None
    output_channel: Optional[str] = None
    conversation_id: Optional[str] = None
    contacted_at: Optional[datetime] = None
    claimed_at: Optional[datetime] = None

    @classmethod
    def of(cls, row: ContactRow) -> Contact:
        return cls(**{name: getattr(row, name) for name in cls.__dataclass_fields__})

    @classmethod
    def planned(cls, step: Step, time_zone: str) -> Contact:
        return cls(
            id=None, reminder_id=new_reminder_id(), customer_id=step.customer_id, loan_id=step.loan_id,
            subject=step.subject, step=step.step, kind=step.kind, due_date=step.due_date,
            due_amount=step.due_amount, currency=step.currency, step_date=step.step_date, last_day=step.last_day,
            time_zone=time_zone, status=PENDING,
        )

    def local_day(self, at: datetime) -> date:
        return at.astimezone(ZoneInfo(self.time_zone)).date()


@dataclass(frozen=True)
class Route:
    """Where a reminder goes: the consent channel, Rasa's output channel and the conversation."""

    channel: str
    output_channel: str
    conversation_id: str


@dataclass(frozen=True)
class Decision:
    decided_at: datetime
    contact: Contact
    outcome: str
    reason: Optional[str] = None
    rule: Optional[str] = None
    detail: Optional[str] = None
    route: Optional[Route] = None

    def as_json(self) -> Dict[str, Any]:
        contact = self.contact
        return {
            "decided_at": self.decided_at.isoformat(),
            "day": contact.local_day(self.decided_at).isoformat(),
            "customer_id": contact.customer_id,
            "loan_id": contact.loan_id,
            "reminder_id": contact.reminder_id,
            "kind": contact.kind,
            "step": contact.step,
            "due_date": contact.due_date.isoformat(),
            "due_amount": str(contact.due_amount),
            "outcome": self.outcome,
            "reason": self.reason,
            "channel": self.route.channel if self.route else None,
            "conversation_id": self.route.conversation_id if self.route else None,
            "rule": self.rule,
            "detail": self.detail,
        }


def new_reminder_id() -> str:
    return "rem_" + secrets.token_hex(12)


# Why a claim did not happen although no rule blocked it: another process took the contact first.
TAKEN = Block("taken", "another scheduler process handled this reminder")
CapCheck = Callable[[List[Contacted]], Optional[Block]]


class ContactStore:
    """Planned contacts and decisions in a database; every method is one short transaction."""

    def __init__(self, database_url: str) -> None:
        self.engine = make_engine(database_url)
        Base.metadata.create_all(self.engine)
        self.sessions = make_session_factory(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    # --- planning ------------------------------------------------------------------------------------------

    def plan(self, step: Step, time_zone: str) -> Contact:
        """The contact of this step, created on first sight; a pending one follows the amount due."""
        with self.sessions() as session:
            row = self._row(session, step.key)
            if row is None:
                row = _new_row(Contact.planned(step, time_zone))
                session.add(row)
                try:
                    session.commit()
                except IntegrityError:  # another process planned it first
                    session.rollback()
                    row = self._row(session, step.key)
                    assert row is not None
            elif row.status == PENDING and row.due_amount != step.due_amount:
                row.due_amount = step.due_amount
                row.updated_at = utcnow()
                session.commit()
            return Contact.of(row)

    @staticmethod
    def _row(session: Session, key: Tuple[int, str, str]) -> Optional[ContactRow]:
        loan_id, subject, step = key
        return session.execute(
            select(ContactRow).where(ContactRow.loan_id == loan_id, ContactRow.subject == subject,
                                     ContactRow.step == step)
        ).scalar_one_or_none()

    def overdue_pending(self, at: datetime) -> List[Contact]:
        """Pending contacts whose last day has passed where the customer is (the candidates to expire)."""
        horizon = (at + timedelta(days=1)).astimezone(timezone.utc).date()
        with self.sessions() as session:
            rows = session.execute(
                select(ContactRow).where(ContactRow.status == PENDING, ContactRow.last_day < horizon)
            ).scalars()
            return [contact for contact in map(Contact.of, rows) if contact.last_day < contact.local_day(at)]

    def pending_of_loan(self, loan_id: int) -> List[Contact]:
        with self.sessions() as session:
            rows = session.execute(
                select(ContactRow).where(ContactRow.loan_id == loan_id, ContactRow.status == PENDING)
            ).scalars()
            return [Contact.of(row) for row in rows]

    def stale_sending(self, claimed_before: datetime) -> List[Contact]:
        with self.sessions() as session:
            rows = session.execute(
                select(ContactRow).where(ContactRow.status == SENDING, ContactRow.claimed_at < claimed_before)
            ).scalars()
            return [Contact.of(row) for row in rows]

    def history(self, customer_id: int, at: datetime) -> List[Contacted]:
        with self.sessions() as session:
            return _history(session, customer_id, at)

    # --- sending -------------------------------------------------------------------------------------------

    def claim(self, contact: Contact, route: Route, at: datetime, check: CapCheck) -> Optional[Block]:
        """Move a pending contact to ``sending`` if ``check`` (the frequency caps) lets one more contact through,
        holding the customer's gate so no other claim for this customer runs at the same time."""
        with self.sessions() as session:
            _lock_gate(session, contact.customer_id)
            block = check(_history(session, contact.customer_id, at))
            if block is not None:
                session.commit()
                return block
            claimed = session.execute(
                update(ContactRow)
                .where(ContactRow.id == contact.id, ContactRow.status == PENDING)
                .values(status=SENDING, channel=route.channel, output_channel=route.output_channel,
                        conversation_id=route.conversation_id, contacted_at=at, claimed_at=utcnow(),
                        attempts=ContactRow.attempts + 1, updated_at=utcnow())
                .execution_options(synchronize_session=False)
            ).rowcount
            session.commit()
            return None if claimed == 1 else TAKEN

    def mark_sent(self, contact: Contact) -> Contact:
        return self._move(contact, SENDING, SENT)

    def release(self, contact: Contact, not_before: Optional[datetime] = None) -> Contact:
        """Back to pending after a delivery that certainly did not happen (or was not confirmed)."""
        return self._move(contact, SENDING, PENDING, contacted_at=None, claimed_at=None, not_before=not_before)

    def finish(self, contact: Contact, status: str) -> Contact:
        return self._move(contact, PENDING, status)

    def _move(self, contact: Contact, from_status: str, to_status: str, **values: Any) -> Contact:
        with self.sessions() as session:
            session.execute(
                update(ContactRow)
                .where(ContactRow.id == contact.id, ContactRow.status == from_status)
                .values(status=to_status, updated_at=utcnow(), **values)
                .execution_options(synchronize_session=False)
            )
            session.commit()
            row = session.get(ContactRow, contact.id)
            return Contact.of(row) if row is not None else contact

    # --- audit ---------------------------------------------------------------------------------------------

    def note(self, decision: Decision) -> bool:
        """Keep the decision when it differs from the contact's last one (reason or channel; always for sent,
        expired and failed)."""
        contact = decision.contact
        channel = decision.route.channel if decision.route else None
        with self.sessions() as session:
            row = session.get(ContactRow, contact.id)
            if row is None:
                return False
            last = (row.last_outcome, row.last_reason, row.last_channel)
            if decision.outcome == OUTCOME_SKIPPED and last == (decision.outcome, decision.reason, channel):
                return False
            row.last_outcome, row.last_reason, row.last_channel = decision.outcome, decision.reason, channel
            session.add(_decision_row(decision))
            session.commit()
            return True

    def decisions(
        self, customer_id: Optional[int] = None, day: Optional[date] = None, limit: int = 500, offset: int = 0
    ) -> List[Dict[str, Any]]:
        """Decisions, oldest first, of a customer and/or a day (the customer's local day)."""
        query = select(DecisionRow)
        if customer_id is not None:
            query = query.where(DecisionRow.customer_id == customer_id)
        if day is not None:
            query = query.where(DecisionRow.day == day)
        query = query.order_by(DecisionRow.decided_at, DecisionRow.id).limit(limit).offset(offset)
        with self.sessions() as session:
            return [_decision_json(row) for row in session.execute(query).scalars()]

    def purge(self, before: datetime) -> int:
        """Delete decisions decided before ``before``, and contacts whose last day is long past and that no
        remaining decision refers to; the caller keeps ``before`` at least the retention period back."""
        with self.sessions() as session:
            removed = session.execute(
                delete(DecisionRow).where(DecisionRow.decided_at < before).execution_options(synchronize_session=False)
            ).rowcount
            referenced = select(DecisionRow.contact_id).where(DecisionRow.contact_id.isnot(None))
            session.execute(
                delete(ContactRow)
                .where(ContactRow.last_day < before.date(), ContactRow.status.in_((SENT, SKIPPED, EXPIRED)),
                       ContactRow.id.notin_(referenced))
                .execution_options(synchronize_session=False)
            )
            session.commit()
            return int(removed or 0)


class DryRunStore:
    """The store as a dry run sees it: reads the real one, keeps every write in memory, and reports every
    decision (nothing is stored, nothing is sent)."""

    def __init__(self, base: ContactStore) -> None:
        self.base = base
        self.contacts: Dict[Tuple[int, str, str], Contact] = {}
        self.sent: Dict[int, List[Contacted]] = {}
        self.recorded: List[Decision] = []
        self.finished: Set[Optional[int]] = set()
        self._ids = 0

    def plan(self, step: Step, time_zone: str) -> Contact:
        if step.key not in self.contacts:
            with self.base.sessions() as session:
                row = self.base._row(session, step.key)
            self._ids -= 1
            contact = Contact.of(row) if row is not None else replace(Contact.planned(step, time_zone), id=self._ids)
            self.contacts[step.key] = replace(contact, due_amount=step.due_amount)
        return self.contacts[step.key]

    def overdue_pending(self, at: datetime) -> List[Contact]:
        return []

    def pending_of_loan(self, loan_id: int) -> List[Contact]:
        return [contact for contact in self.base.pending_of_loan(loan_id) if contact.id not in self.finished]

    def stale_sending(self, claimed_before: datetime) -> List[Contact]:
        return []

    def history(self, customer_id: int, at: datetime) -> List[Contacted]:
        return self.base.history(customer_id, at) + self.sent.get(customer_id, [])

    def claim(self, contact: Contact, route: Route, at: datetime, check: CapCheck) -> Optional[Block]:
        block = check(self.history(contact.customer_id, at))
        if block is None:
            self.sent.setdefault(contact.customer_id, []).append(Contacted(at, route.channel))
        return block

    def mark_sent(self, contact: Contact) -> Contact:
        return replace(contact, status=SENT)

    def release(self, contact: Contact, not_before: Optional[datetime] = None) -> Contact:
        return replace(contact, status=PENDING)

    def finish(self, contact: Contact, status: str) -> Contact:
        self.finished.add(contact.id)
        return replace(contact, status=status)

    def note(self, decision: Decision) -> bool:
        self.recorded.append(decision)
        return True


def _new_row(contact: Contact) -> ContactRow:
    fields = {name: getattr(contact, name) for name in Contact.__dataclass_fields__ if name != "id"}
    now = utcnow()
    return ContactRow(**fields, created_at=now, updated_at=now)


def _lock_gate(session: Session, customer_id: int) -> None:
    """Take the customer's gate: the UPDATE comes first so SQLite's write lock (a row lock on PostgreSQL) is
    held before the history is read; the row is created the first time."""
    touched = session.execute(
        update(CustomerGate).where(CustomerGate.customer_id == customer_id).values(touched_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount
    if touched:
        return
    session.add(CustomerGate(customer_id=customer_id, touched_at=utcnow()))
    try:
        session.flush()
    except IntegrityError:  # created by another claim in the meantime: lock that one
        session.rollback()
        _lock_gate(session, customer_id)


def _history(session: Session, customer_id: int, at: datetime) -> List[Contacted]:
    rows = session.execute(
        select(ContactRow.contacted_at, ContactRow.channel).where(
            ContactRow.customer_id == customer_id,
            ContactRow.status.in_((SENDING, SENT)),
            ContactRow.contacted_at > at - HISTORY_SPAN,
            ContactRow.contacted_at < at + HISTORY_SPAN,
        ).order_by(ContactRow.contacted_at)
    )
    return [Contacted(contacted_at, channel) for contacted_at, channel in rows]


def _decision_row(decision: Decision) -> DecisionRow:
    contact = decision.contact
    return DecisionRow(
        decided_at=decision.decided_at,
        day=contact.local_day(decision.decided_at),
        customer_id=contact.customer_id,
        loan_id=contact.loan_id,
        contact_id=contact.id,
        reminder_id=contact.reminder_id,
        kind=contact.kind,
        step=contact.step,
        outcome=decision.outcome,
        reason=decision.reason,
        channel=decision.route.channel if decision.route else None,
        conversation_id=decision.route.conversation_id if decision.route else None,
        rule=(decision.rule or "")[:300] or None,
        detail=(decision.detail or "")[:500] or None,
        recorded_at=utcnow(),
    )


def _decision_json(row: DecisionRow) -> Dict[str, Any]:
    return {
        "id": row.id,
        "decided_at": row.decided_at.isoformat(),
        "day": row.day.isoformat(),
        "customer_id": row.customer_id,
        "loan_id": row.loan_id,
        "reminder_id": row.reminder_id,
        "kind": row.kind,
        "step": row.step,
        "outcome": row.outcome,
        "reason": row.reason,
        "channel": row.channel,
        "conversation_id": row.conversation_id,
        "rule": row.rule,
        "detail": row.detail,
    }
