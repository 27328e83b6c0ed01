"""Tables of the core-banking mock.

What changes over time only by events is stored as history (consents, application statuses, payments);
what depends on "today" (installment status, days past due, late interest) is computed on read in
``credia.core_banking.loans`` so it is never stale.
"""

from __future__ import annotations

import enum
from decimal import Decimal
from typing import Any, List, Optional

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    inspect,
    text,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import declarative_base, relationship

from credia.credit.policy import EmploymentType  # noqa: F401 (re-exported: the policy defines the types)
from credia.db import ExactDecimal, UTCDateTime, utcnow
from credia.identity import Country, DocumentType  # noqa: F401 (DocumentType: re-exported for the API)

Base: Any = declarative_base()


def Money() -> ExactDecimal:  # noqa: N802 (reads like a column type)
    return ExactDecimal(2)


def Rate() -> ExactDecimal:  # noqa: N802
    return ExactDecimal(6)


class ConsentChannel(str, enum.Enum):
    WHATSAPP = "whatsapp"
    SMS = "sms"
    EMAIL = "email"
    VOICE = "voice"
    WEB = "web"


class ApplicationStatus(str, enum.Enum):
    RECEIVED = "received"
    IN_REVIEW = "in_review"
    REFERRED = "referred"
    APPROVED = "approved"
    REJECTED = "rejected"
    DISBURSED = "disbursed"
    CANCELLED = "cancelled"


class PaymentSource(str, enum.Enum):
    API = "api"
    WEBHOOK = "webhook"
    SEED = "seed"


class PlanStatus(str, enum.Enum):
    ACTIVE = "active"
    # Accepted by the customer on an offer the policy sends to a person; becomes active once approved.
    PENDING_APPROVAL = "pending_approval"
    COMPLETED = "completed"
    BROKEN = "broken"
    CANCELLED = "cancelled"


# A loan holds at most one plan in these statuses: a plan in force or one waiting for approval.
OPEN_PLAN_STATUSES = (PlanStatus.ACTIVE.value, PlanStatus.PENDING_APPROVAL.value)


class PlanKind(str, enum.Enum):
    SETTLEMENT = "settlement"
    INSTALLMENTS = "installments"


class OfferStatus(str, enum.Enum):
    OFFERED = "offered"
    ACCEPTED = "accepted"
    # Never stored: an offered one past its ``valid_until`` is reported as expired.
    EXPIRED = "expired"


class CaseKind(str, enum.Enum):
    DISPUTE = "dispute"
    HARDSHIP = "hardship"
    PAYMENT_CLAIM = "payment_claim"
    PLAN_APPROVAL = "plan_approval"
    LEGAL = "legal"
    NEGOTIATION = "negotiation"
    VERIFICATION = "verification"


class CasePriority(str, enum.Enum):
    NORMAL = "normal"
    HIGH = "high"


class CaseStatus(str, enum.Enum):
    OPEN = "open"
    CLOSED = "closed"


class PromiseStatus(str, enum.Enum):
    PENDING = "pending"
    KEPT = "kept"
    BROKEN = "broken"


class Customer(Base):
    __tablename__ = "customers"
    __table_args__ = (UniqueConstraint("document_type", "document_number", name="uq_customer_document"),)

    id = Column(Integer, primary_key=True)
    document_type = Column(String(8), nullable=False)
    # Stored compact (no spaces, dashes or dots; DNI without its check character) so look-ups match.
    document_number = Column(String(20), nullable=False)
    # Optional: a customer who applies through the assistant may give only document and date of birth.
    first_name = Column(String(80), nullable=True)
    last_name = Column(String(80), nullable=True)
    date_of_birth = Column(Date, nullable=False)
    phone = Column(String(16), nullable=False, index=True)
    email = Column(String(254), nullable=True)
    country = Column(String(2), nullable=False, default=Country.PE.value)
    created_at = Column(UTCDateTime, nullable=False, default=utcnow)

    consent_events: List["ConsentEvent"] = relationship(
        "ConsentEvent", back_populates="customer", order_by="ConsentEvent.id"
    )

    @property
    def full_name(self) -> str:
        return " ".join(part for part in (self.first_name, self.last_name) if part)


class ConsentEvent(Base):
    """One grant or withdrawal of contact consent on a channel; the latest per channel is the current state."""

    __tablename__ = "consent_events"
    __table_args__ = (Index("ix_consent_customer_channel", "customer_id", "channel"),)

    id = Column(Integer, primary_key=True)
    customer_id = Column(Integer, ForeignKey("customers.id"), nullable=False)
    channel = Column(String(16), nullable=False)
    granted = Column(Boolean, nullable=False)
    source = Column(String(50), nullable=False)
    recorded_at = Column(UTCDateTime, nullable=False, default=utcnow)

    customer: Customer = relationship("Customer", back_populates="consent_events")


class CreditProduct(Base):
    __tablename__ = "credit_products"

    code = Column(String(20), primary_key=True)
    name = Column(String(80), nullable=False)
    description = Column(Text, nullable=False, default="")
    currency = Column(String(3), nullable=False, default="PEN")
    min_amount = Column(Money(), nullable=False)
    max_amount = Column(Money(), nullable=False)
    min_term_months = Column(Integer, nullable=False)
    max_term_months = Column(Integer, nullable=False)
    tea = Column(Rate(), nullable=False)
    # Late (moratory) interest, as a TEA, charged on overdue principal only: Ley 31143 allows no penalty fees.
    moratory_tea = Column(Rate(), nullable=False)
    min_age = Column(Integer, nullable=False)
    max_age_at_maturity = Column(Integer, nullable=False)
    max_installment_to_income = Column(Rate(), nullable=False)
    requirements = Column(JSON, nullable=False, default=list)
    active = Column(Boolean, nullable=False, default=True)


class CreditApplication(Base):
    """An application; the pre-evaluation's outcome, reasons and offer are kept as they were decided, so the
    customer is told the same thing later even if the policy has changed since."""

    __tablename__ = "credit_applications"

    id = Column(Integer, primary_key=True)
    # What the customer quotes to ask about it: "SOL-" and 6 characters without look-alikes (0/O, 1/I/L).
    code = Column(String(10), nullable=False, unique=True)
    customer_id = Column(Integer, ForeignKey("customers.id"), nullable=False, index=True)
    product_code = Column(String(20), ForeignKey("credit_products.code"), nullable=False)
    amount = Column(Money(), nullable=False)
    term_months = Column(Integer, nullable=False)
    monthly_income = Column(Money(), nullable=False)
    employment_type = Column(String(20), nullable=False)
    employment_tenure_months = Column(Integer, nullable=True)
    channel = Column(String(30), nullable=True)
    # How to reach the applicant about this application (the customer record keeps its own contact data).
    phone = Column(String(16), nullable=True)
    email = Column(String(254), nullable=True)
    status = Column(String(16), nullable=False, default=ApplicationStatus.RECEIVED.value)
    # Null for applications registered for manual review, without the automatic pre-evaluation.
    outcome = Column(String(16), nullable=True)
    reasons = Column(JSON, nullable=False, default=list)
    offer = Column(JSON, nullable=True)
    # A retried submission with the same key returns this application, when the request is the same.
    idempotency_key = Column(String(255), nullable=True, unique=True)
    request_hash = Column(String(64), nullable=True)
    created_at = Column(UTCDateTime, nullable=False, default=utcnow)
    updated_at = Column(UTCDateTime, nullable=False, default=utcnow)

    product: CreditProduct = relationship("CreditProduct")
    documents: List["ApplicationDocument"] = relationship(
        "ApplicationDocument", back_populates="application", order_by="ApplicationDocument.id"
    )
    history: List["ApplicationStatusEvent"] = relationship(
        "ApplicationStatusEvent", back_populates="application", order_by="ApplicationStatusEvent.id"
    )
    loan: Optional["Loan"] = relationship("Loan", back_populates="application", uselist=False)


class ApplicationStatusEvent(Base):
    __tablename__ = "application_status_events"

    id = Column(Integer, primary_key=True)
    application_id = Column(Integer, ForeignKey("credit_applications.id"), nullable=False, index=True)
    from_status = Column(String(16), nullable=True)
    to_status = Column(String(16), nullable=False)
    note = Column(String(500), nullable=True)
    created_at = Column(UTCDateTime, nullable=False, default=utcnow)

    application: CreditApplication = relationship("CreditApplication", back_populates="history")


class ApplicationDocument(Base):
    """A document the customer sent for an application: where it is (a URL or a channel's media id)."""

    __tablename__ = "application_documents"

    id = Column(Integer, primary_key=True)
    application_id = Column(Integer, ForeignKey("credit_applications.id"), nullable=False, index=True)
    kind = Column(String(40), nullable=False)
    filename = Column(String(255), nullable=False)
    content_type = Column(String(100), nullable=False)
    media_url = Column(String(2000), nullable=True)
    media_id = Column(String(200), nullable=True)
    received_at = Column(UTCDateTime, nullable=False, default=utcnow)

    application: CreditApplication = relationship("CreditApplication", back_populates="documents")


class ProcessingConsent(Base):
    """Consent to process personal data for a purpose (Ley 29733), kept as evidence of when and where it was
    given; separate from contact consents, which say which channels may be used."""

    __tablename__ = "processing_consents"

    id = Column(Integer, primary_key=True)
    customer_id = Column(Integer, ForeignKey("customers.id"), nullable=False, index=True)
    application_id = Column(Integer, ForeignKey("credit_applications.id"), nullable=True, index=True)
    purpose = Column(String(40), nullable=False)
    granted = Column(Boolean, nullable=False)
    source = Column(String(100), nullable=False)
    recorded_at = Column(UTCDateTime, nullable=False, default=utcnow)


class Loan(Base):
    __tablename__ = "loans"

    id = Column(Integer, primary_key=True)
    customer_id = Column(Integer, ForeignKey("customers.id"), nullable=False, index=True)
    product_code = Column(String(20), ForeignKey("credit_products.code"), nullable=False)
    application_id = Column(Integer, ForeignKey("credit_applications.id"), nullable=True, unique=True)
    currency = Column(String(3), nullable=False, default="PEN")
    principal = Column(Money(), nullable=False)
    term_months = Column(Integer, nullable=False)
    # Rates are copied from the product at disbursement: a later product change never alters a signed loan.
    tea = Column(Rate(), nullable=False)
    moratory_tea = Column(Rate(), nullable=False)
    disbursed_on = Column(Date, nullable=False)
    created_at = Column(UTCDateTime, nullable=False, default=utcnow)

    product: CreditProduct = relationship("CreditProduct")
    application: Optional[CreditApplication] = relationship("CreditApplication", back_populates="loan")
    installments: List["Installment"] = relationship(
        "Installment", back_populates="loan", order_by="Installment.number"
    )


class Installment(Base):
    """One scheduled installment and what has been paid of it, per component.

    Late interest is accrued lazily: ``late_interest_accrued`` holds what was fixed at each payment (up to
    ``accrued_until``); what accrued since is computed on read, so the balance is right on any day.
    """

    __tablename__ = "installments"
    __table_args__ = (UniqueConstraint("loan_id", "number", name="uq_installment_number"),)

    id = Column(Integer, primary_key=True)
    loan_id = Column(Integer, ForeignKey("loans.id"), nullable=False, index=True)
    number = Column(Integer, nullable=False)
    due_date = Column(Date, nullable=False)
    principal = Column(Money(), nullable=False)
    interest = Column(Money(), nullable=False)
    amount = Column(Money(), nullable=False)
    principal_paid = Column(Money(), nullable=False, default=Decimal("0"))
    interest_paid = Column(Money(), nullable=False, default=Decimal("0"))
    late_interest_accrued = Column(Money(), nullable=False, default=Decimal("0"))
    late_interest_paid = Column(Money(), nullable=False, default=Decimal("0"))
    accrued_until = Column(Date, nullable=True)
    paid_on = Column(Date, nullable=True)

    loan: Loan = relationship("Loan", back_populates="installments")

    @property
    def paid_amount(self) -> Decimal:
        return self.principal_paid + self.interest_paid


class Payment(Base):
    """A payment applied to a loan; ``external_id`` is unique so no payment can ever be applied twice."""

    __tablename__ = "payments"

    id = Column(Integer, primary_key=True)
    loan_id = Column(Integer, ForeignKey("loans.id"), nullable=False, index=True)
    external_id = Column(String(100), nullable=False, unique=True)
    amount = Column(Money(), nullable=False)
    currency = Column(String(3), nullable=False, default="PEN")
    channel = Column(String(40), nullable=False)
    source = Column(String(10), nullable=False)
    reference = Column(String(100), nullable=True)
    paid_at = Column(UTCDateTime, nullable=False)
    created_at = Column(UTCDateTime, nullable=False, default=utcnow)
    # How the amount was split over installments: [{"installment_number", "late_interest", "interest", "principal"}]
    allocation = Column(JSON, nullable=False, default=list)


_OPEN_PLAN = text("status IN ('active', 'pending_approval')")


class PlanOffer(Base):
    """A plan shown to a customer, kept exactly as shown so that accepting it books those very numbers."""

    __tablename__ = "plan_offers"

    # "OF-" and 6 characters without look-alikes: customers may read it aloud.
    id = Column(String(9), primary_key=True)
    loan_id = Column(Integer, ForeignKey("loans.id"), nullable=False, index=True)
    kind = Column(String(12), nullable=False)
    debt = Column(Money(), nullable=False)
    discount = Column(Money(), nullable=False)
    down_payment = Column(Money(), nullable=False)
    installments_count = Column(Integer, nullable=False)
    installment_amount = Column(Money(), nullable=False)
    total_to_pay = Column(Money(), nullable=False)
    first_due_date = Column(Date, nullable=False)
    valid_until = Column(Date, nullable=False)
    needs_approval = Column(Boolean, nullable=False)
    # [{"number", "due_date", "amount"}] as shown; number 0 is due the day the plan is agreed.
    schedule = Column(JSON, nullable=False)
    # What the customer said they can pay a month, for a counter-offer.
    monthly_amount = Column(Money(), nullable=True)
    channel = Column(String(40), nullable=False)
    status = Column(String(10), nullable=False, default=OfferStatus.OFFERED.value)
    created_at = Column(UTCDateTime, nullable=False, default=utcnow)
    accepted_at = Column(UTCDateTime, nullable=True)


class PaymentPlan(Base):
    __tablename__ = "payment_plans"
    # At most one open plan per loan, even when two agents (or two accepted offers) race.
    __table_args__ = (
        Index("uq_payment_plan_open", "loan_id", unique=True, sqlite_where=_OPEN_PLAN, postgresql_where=_OPEN_PLAN),
    )

    id = Column(Integer, primary_key=True)
    loan_id = Column(Integer, ForeignKey("loans.id"), nullable=False, index=True)
    # Set when the customer accepted an offer; an offer books one plan at most.
    offer_id = Column(String(9), ForeignKey("plan_offers.id"), nullable=True, unique=True)
    kind = Column(String(12), nullable=False, default=PlanKind.INSTALLMENTS.value)
    channel = Column(String(40), nullable=False)
    total_amount = Column(Money(), nullable=False)
    discount = Column(Money(), nullable=False)
    down_payment = Column(Money(), nullable=False)
    installments_count = Column(Integer, nullable=False)
    installment_amount = Column(Money(), nullable=False)
    first_due_date = Column(Date, nullable=False)
    status = Column(String(16), nullable=False, default=PlanStatus.ACTIVE.value)
    created_at = Column(UTCDateTime, nullable=False, default=utcnow)

    schedule: List["PlanInstallment"] = relationship(
        "PlanInstallment", order_by="PlanInstallment.number", cascade="all, delete-orphan"
    )


class PlanInstallment(Base):
    """One payment of a plan; number 0 is the down payment (or the settlement) due the day it was agreed."""

    __tablename__ = "payment_plan_installments"
    __table_args__ = (UniqueConstraint("plan_id", "number", name="uq_plan_installment_number"),)

    id = Column(Integer, primary_key=True)
    plan_id = Column(Integer, ForeignKey("payment_plans.id"), nullable=False, index=True)
    number = Column(Integer, nullable=False)
    due_date = Column(Date, nullable=False)
    amount = Column(Money(), nullable=False)


class PromiseToPay(Base):
    __tablename__ = "promises_to_pay"
    __table_args__ = (
        Index(
            "uq_promise_pending",
            "loan_id",
            unique=True,
            sqlite_where=text("status = 'pending'"),
            postgresql_where=text("status = 'pending'"),
        ),
    )

    id = Column(Integer, primary_key=True)
    loan_id = Column(Integer, ForeignKey("loans.id"), nullable=False, index=True)
    amount = Column(Money(), nullable=False)
    promised_date = Column(Date, nullable=False)
    status = Column(String(10), nullable=False, default=PromiseStatus.PENDING.value)
    # Where the customer made it (whatsapp, socketio, call_center, ...), for promise-to-pay rates per channel.
    channel = Column(String(40), nullable=False, default="api")
    created_at = Column(UTCDateTime, nullable=False, default=utcnow)
    resolved_at = Column(UTCDateTime, nullable=True)


class Case(Base):
    """Something a person must handle: a dispute, hardship, a payment the customer says they made, a plan to
    approve, a legal matter. An open dispute on a loan holds collection contact on it until it is closed."""

    __tablename__ = "cases"
    __table_args__ = (Index("ix_case_loan_kind_status", "loan_id", "kind", "status"),)

    id = Column(Integer, primary_key=True)
    # "CAS-" and 6 characters without look-alikes, to quote on the phone.
    code = Column(String(10), nullable=False, unique=True)
    kind = Column(String(16), nullable=False)
    customer_id = Column(Integer, ForeignKey("customers.id"), nullable=True, index=True)
    loan_id = Column(Integer, ForeignKey("loans.id"), nullable=True)
    channel = Column(String(40), nullable=False)
    conversation_id = Column(String(200), nullable=True)
    priority = Column(String(8), nullable=False, default=CasePriority.NORMAL.value)
    summary = Column(String(500), nullable=False)
    details = Column(JSON, nullable=False, default=dict)
    # [{"filename", "content_type", "url"}]: where the files are (a URL or a channel's media id).
    attachments = Column(JSON, nullable=False, default=list)
    status = Column(String(8), nullable=False, default=CaseStatus.OPEN.value)
    outcome = Column(String(500), nullable=True)
    # A retried request with the same key returns this case.
    idempotency_key = Column(String(255), nullable=True, unique=True)
    created_at = Column(UTCDateTime, nullable=False, default=utcnow)
    closed_at = Column(UTCDateTime, nullable=True)


class IdentityChallenge(Base):
    """A one-time code sent by SMS, kept only as a hash. Unknown documents get one too, never sent, so the
    answer to a code request says nothing about who is a customer."""

    __tablename__ = "identity_challenges"

    id = Column(String(32), primary_key=True)
    document_type = Column(String(8), nullable=False)
    document_number = Column(String(20), nullable=False)
    customer_id = Column(Integer, ForeignKey("customers.id"), nullable=True)
    code_hash = Column(String(64), nullable=False)
    expires_at = Column(UTCDateTime, nullable=False)
    used_at = Column(UTCDateTime, nullable=True)
    created_at = Column(UTCDateTime, nullable=False, default=utcnow)


class VerificationState(Base):
    """Consecutive failed verifications of a document (customer or not) and the lock they lead to."""

    __tablename__ = "identity_verification_states"

    document_type = Column(String(8), primary_key=True)
    document_number = Column(String(20), primary_key=True)
    failures = Column(Integer, nullable=False, default=0)
    locked_until = Column(UTCDateTime, nullable=True)
    updated_at = Column(UTCDateTime, nullable=False, default=utcnow)


class SmsMessage(Base):
    """The mock SMS gateway's outbox: what would have been sent, readable through ``GET /mock/sms``."""

    __tablename__ = "sms_outbox"

    id = Column(Integer, primary_key=True)
    customer_id = Column(Integer, ForeignKey("customers.id"), nullable=True, index=True)
    to = Column(String(16), nullable=False, index=True)
    text = Column(String(500), nullable=False)
    sent_at = Column(UTCDateTime, nullable=False, default=utcnow)


def outdated_tables(engine: Engine) -> List[str]:
    """Tables of an existing database that lack columns this version needs, as "table (column, ...)".

    There are no migrations in the mock: an old database file is reported so that it can be deleted and
    seeded afresh, instead of failing later on the first query that needs a new column.
    """
    inspector = inspect(engine)
    existing = set(inspector.get_table_names())
    problems = []
    for table in Base.metadata.sorted_tables:
        if table.name not in existing:
            continue
        present = {column["name"] for column in inspector.get_columns(table.name)}
        missing = [column.name for column in table.columns if column.name not in present]
        if missing:
            problems.append(f"{table.name} ({', '.join(missing)})")
    return problems
