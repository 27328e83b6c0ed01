"""What the service does to its data, shared by the HTTP API and the seed so both follow the same rules.

Functions raise ``NotFound``, ``Conflict`` (the resource's state forbids it) or ``Invalid`` (the values are
wrong); the API maps them to 404, 409 and 422 with the message as ``detail``. Only ``record_payment``
commits by itself, because its idempotency depends on how the transaction ends.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import re
import secrets
import string
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Dict, List, Optional, Sequence, Tuple

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from credia.collections import plans
from credia.collections.policy import MAX_PROMISE_DAYS, CollectionsPolicy, VerificationRules
from credia.core_banking.loans import CENT, LIMA, LoanPosition, allocate_payment, loan_position
from credia.core_banking.models import (
    OPEN_PLAN_STATUSES,
    ApplicationDocument,
    ApplicationStatus,
    ApplicationStatusEvent,
    Case,
    CaseKind,
    CaseStatus,
    ConsentChannel,
    ConsentEvent,
    CreditApplication,
    CreditProduct,
    Customer,
    IdentityChallenge,
    Installment,
    Loan,
    OfferStatus,
    Payment,
    PaymentPlan,
    PaymentSource,
    PlanInstallment,
    PlanKind,
    PlanOffer,
    PlanStatus,
    ProcessingConsent,
    PromiseStatus,
    PromiseToPay,
    SmsMessage,
    VerificationState,
)
from credia.credit import maths
from credia.credit.evaluation import Evaluation, Outcome
from credia.credit.maths import ZERO, add_months, ceil_money, french_installment, french_schedule
from credia.credit.policy import CreditPolicy
from credia.credit.policy import Product as ProductRules

# Transitions a lender's workflow allows; anything else is refused with the reason. From ``received`` the
# automatic pre-evaluation may approve, refer or reject at once.
ALLOWED_TRANSITIONS: Dict[ApplicationStatus, Tuple[ApplicationStatus, ...]] = {
    ApplicationStatus.RECEIVED: (
        ApplicationStatus.IN_REVIEW,
        ApplicationStatus.REFERRED,
        ApplicationStatus.APPROVED,
        ApplicationStatus.REJECTED,
        ApplicationStatus.CANCELLED,
    ),
    ApplicationStatus.IN_REVIEW: (
        ApplicationStatus.REFERRED,
        ApplicationStatus.APPROVED,
        ApplicationStatus.REJECTED,
        ApplicationStatus.CANCELLED,
    ),
    ApplicationStatus.REFERRED: (ApplicationStatus.APPROVED, ApplicationStatus.REJECTED, ApplicationStatus.CANCELLED),
    ApplicationStatus.APPROVED: (ApplicationStatus.DISBURSED, ApplicationStatus.CANCELLED),
    ApplicationStatus.REJECTED: (),
    ApplicationStatus.DISBURSED: (),
    ApplicationStatus.CANCELLED: (),
}
OPEN_APPLICATION_STATUSES = frozenset(
    status.value for status, targets in ALLOWED_TRANSITIONS.items() if targets
)
# Sanity bounds of the system of record (with MAX_PROMISE_DAYS, shared with the collections policy so that the
# policy can never allow more); the negotiation policy is stricter and applies first.
MAX_PLAN_FIRST_DUE_DAYS = 60
# Application, offer and case codes: customers read them aloud and type them, so no 0/O, 1/I/L look-alikes.
CODE_PREFIX = "SOL-"
OFFER_PREFIX = "OF-"
CASE_PREFIX = "CAS-"
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 6
_CODE_PATTERN = re.compile(rf"^(?:SOL)?([{CODE_ALPHABET}]{{{CODE_LENGTH}}})$")
_SYSTEM_RANDOM = secrets.SystemRandom()
# What the pre-evaluation does to the status; a counter-offer stays ``received`` until the customer accepts.
OUTCOME_STATUS: Dict[Outcome, Optional[ApplicationStatus]] = {
    Outcome.PRE_APPROVED: ApplicationStatus.APPROVED,
    Outcome.COUNTER_OFFER: None,
    Outcome.REFERRED: ApplicationStatus.REFERRED,
    Outcome.DECLINED: ApplicationStatus.REJECTED,
}
OUTCOME_NOTES: Dict[Outcome, str] = {
    Outcome.PRE_APPROVED: "Preaprobada en la evaluación automática.",
    Outcome.COUNTER_OFFER: "Contraoferta de la evaluación automática, pendiente de aceptación.",
    Outcome.REFERRED: "Derivada a un asesor por la evaluación automática.",
    Outcome.DECLINED: "No aprobada en la evaluación automática.",
}
DOCUMENT_STATUSES = frozenset(
    status.value
    for status in (
        ApplicationStatus.RECEIVED,
        ApplicationStatus.IN_REVIEW,
        ApplicationStatus.REFERRED,
        ApplicationStatus.APPROVED,
    )
)
DATA_PROCESSING_PURPOSE = "credit_evaluation"
# Channels of what the service records without a customer-facing channel.
API_CHANNEL = "api"
AGENT_CHANNEL = "agent"
# Why plan offers cannot be made, besides the counter-offer reasons of ``credia.collections.plans``.
NOTHING_OVERDUE = "nothing_overdue"
PLAN_ACTIVE = "plan_active"
COLLECTIONS_HOLD = "collections_hold"
SMS_CODE_TEXT = (
    "Credia: su código de verificación es {code}. Vence en {minutes} minutos. No lo comparta con nadie: "
    "nunca se lo pediremos por llamada."
)


class OperationError(Exception):
    """A request the service refuses, with a message for the integrator."""

    status_code = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(OperationError):
    status_code = 404


class Conflict(OperationError):
    status_code = 409


class Invalid(OperationError):
    status_code = 422


def soles(amount: Decimal) -> str:
    return f"S/ {amount:,.2f}"


def lima_date(moment: datetime) -> date:
    return moment.astimezone(LIMA).date()


def get_customer(session: Session, customer_id: int) -> Customer:
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise NotFound(f"customer {customer_id} not found")
    return customer


def get_product(session: Session, code: str) -> CreditProduct:
    product = session.get(CreditProduct, code.upper())
    if product is None:
        raise NotFound(f"product {code!r} not found")
    return product


def get_application(session: Session, application_id: int) -> CreditApplication:
    application = session.get(CreditApplication, application_id)
    if application is None:
        raise NotFound(f"application {application_id} not found")
    return application


def get_loan(session: Session, loan_id: int) -> Loan:
    loan = session.get(Loan, loan_id)
    if loan is None:
        raise NotFound(f"loan {loan_id} not found")
    return loan


def position(loan: Loan, as_of: date) -> LoanPosition:
    return loan_position(loan.installments, loan.moratory_tea, as_of)


def find_customer_by_document(session: Session, document_type: str, document_number: str) -> Optional[Customer]:
    return session.execute(
        select(Customer).where(
            Customer.document_type == document_type, Customer.document_number == document_number
        )
    ).scalar_one_or_none()


def add_customer(session: Session, customer: Customer) -> Customer:
    """Insert a customer; a duplicate document is a conflict, even when two requests race."""
    if find_customer_by_document(session, customer.document_type, customer.document_number) is not None:
        raise Conflict(f"a customer with {customer.document_type} {customer.document_number} already exists")
    session.add(customer)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise Conflict(
            f"a customer with {customer.document_type} {customer.document_number} already exists"
        ) from None
    return customer


def record_consent(
    session: Session, customer: Customer, channel: ConsentChannel, granted: bool, source: str, at: datetime
) -> ConsentEvent:
    """Append a consent event; every request is kept, even a repeat, as evidence of when it was confirmed."""
    event = ConsentEvent(customer=customer, channel=channel.value, granted=granted, source=source, recorded_at=at)
    session.add(event)
    return event


def current_consents(customer: Customer) -> Dict[ConsentChannel, Optional[ConsentEvent]]:
    """Latest event per channel; a channel never answered has no consent (opt-in is required)."""
    latest: Dict[ConsentChannel, Optional[ConsentEvent]] = {channel: None for channel in ConsentChannel}
    for event in customer.consent_events:
        latest[ConsentChannel(event.channel)] = event
    return latest


def opt_out(
    session: Session, channel: ConsentChannel, address: str, source: str, at: datetime
) -> List[ConsentEvent]:
    """Withdraw consent on ``channel`` for every customer with this phone (E.164) or e-mail; a customer whose
    consent there is already withdrawn is left as is, so a repeated "BAJA" records nothing new."""
    column = func.lower(Customer.email) if "@" in address else Customer.phone
    customers = session.execute(select(Customer).where(column == address).order_by(Customer.id)).scalars()
    events = []
    for customer in customers:
        latest = current_consents(customer)[channel]
        if latest is None or latest.granted:
            events.append(record_consent(session, customer, channel, False, source, at))
    session.flush()
    return events


def new_application_code(session: Session, rng: random.Random = _SYSTEM_RANDOM) -> str:
    """An unused ``SOL-XXXXXX`` code; the seed passes its own generator so demo codes are repeatable."""
    return _unused_code(session, CreditApplication.code, CODE_PREFIX, rng)


def _unused_code(session: Session, column: Any, prefix: str, rng: random.Random = _SYSTEM_RANDOM) -> str:
    while True:
        code = prefix + "".join(rng.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        if session.execute(select(column).where(column == code)).scalar() is None:
            return code


def normalise_application_code(text: str) -> Optional[str]:
    """The stored form of a code as a customer may type it ("sol 7k3m9q", "7K3M9Q"), or None if it is not one."""
    match = _CODE_PATTERN.match(re.sub(r"[\s\-_.]", "", text).upper())
    return CODE_PREFIX + match.group(1) if match else None


def find_application_by_key(session: Session, idempotency_key: str) -> Optional[CreditApplication]:
    return session.execute(
        select(CreditApplication).where(CreditApplication.idempotency_key == idempotency_key)
    ).scalar_one_or_none()


def sync_products(session: Session, policy: CreditPolicy) -> None:
    """Make the products table what the policy file says: the file is the single source of products; the
    table exists for what refers to a product (applications, loans). Products no longer in the file are
    kept, inactive, because old applications and loans still point at them."""
    listed = set()
    for rules in policy.products:
        product = session.get(CreditProduct, rules.code)
        if product is None:
            product = CreditProduct(code=rules.code)
            session.add(product)
        product.name = rules.name
        product.description = rules.description
        product.currency = rules.currency
        product.min_amount = rules.amount.min
        product.max_amount = rules.amount.max
        product.min_term_months = rules.term_months.min
        product.max_term_months = rules.term_months.max
        product.tea = rules.tea
        product.moratory_tea = rules.moratory_tea
        product.min_age = rules.age.min
        product.max_age_at_maturity = rules.age.max_at_maturity
        product.max_installment_to_income = rules.installment_to_income.default
        product.requirements = list(rules.requirements)
        product.active = True
        listed.add(rules.code)
    for product in session.execute(select(CreditProduct)).scalars():
        product.active = product.code in listed
    session.flush()


def create_application(
    session: Session,
    customer: Customer,
    product: CreditProduct,
    amount: Decimal,
    term_months: int,
    monthly_income: Decimal,
    employment_type: str,
    at: datetime,
    code: str,
    employment_tenure_months: Optional[int] = None,
    channel: Optional[str] = None,
    phone: Optional[str] = None,
    email: Optional[str] = None,
    idempotency_key: Optional[str] = None,
    request_hash: Optional[str] = None,
) -> CreditApplication:
    """Register an application within the product's limits; eligibility is judged by ``record_evaluation``
    or, for applications registered for manual review, later in review."""
    if not product.active:
        raise Conflict(f"product {product.code} is not offered any more")
    if not product.min_amount <= amount <= product.max_amount:
        raise Invalid(
            f"amount must be between {soles(product.min_amount)} and {soles(product.max_amount)} "
            f"for {product.code}"
        )
    if not product.min_term_months <= term_months <= product.max_term_months:
        raise Invalid(
            f"term must be between {product.min_term_months} and {product.max_term_months} months "
            f"for {product.code}"
        )
    open_application = session.execute(
        select(CreditApplication.id).where(
            CreditApplication.customer_id == customer.id,
            CreditApplication.product_code == product.code,
            CreditApplication.status.in_(OPEN_APPLICATION_STATUSES),
        )
    ).scalar()
    if open_application is not None:
        raise Conflict(f"customer already has application {open_application} in progress for {product.code}")
    application = CreditApplication(
        code=code,
        customer_id=customer.id,
        product_code=product.code,
        amount=amount,
        term_months=term_months,
        monthly_income=monthly_income,
        employment_type=employment_type,
        employment_tenure_months=employment_tenure_months,
        channel=channel,
        phone=phone,
        email=email,
        status=ApplicationStatus.RECEIVED.value,
        reasons=[],
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        created_at=at,
        updated_at=at,
    )
    application.history.append(
        ApplicationStatusEvent(from_status=None, to_status=ApplicationStatus.RECEIVED.value, created_at=at)
    )
    session.add(application)
    session.flush()
    return application


def application_installment(application: CreditApplication) -> Decimal:
    return french_installment(application.amount, application.product.tea, application.term_months)


def record_processing_consent(
    session: Session, customer: Customer, application: CreditApplication, source: str, at: datetime
) -> ProcessingConsent:
    """Keep the customer's consent to evaluate their data (Ley 29733) with the application it was given for."""
    consent = ProcessingConsent(
        customer_id=customer.id,
        application_id=application.id,
        purpose=DATA_PROCESSING_PURPOSE,
        granted=True,
        source=source,
        recorded_at=at,
    )
    session.add(consent)
    return consent


def worst_days_past_due(session: Session, customer: Customer, today: date) -> int:
    """Days past due of the customer's most overdue loan with the lender today (0 when none is overdue)."""
    return max((position(loan, today).days_past_due for loan in loans_of(session, customer)), default=0)


def record_evaluation(
    session: Session, application: CreditApplication, evaluation: Evaluation, at: datetime
) -> CreditApplication:
    """Store the pre-evaluation as decided and move the status to match, with a note in the history."""
    application.outcome = evaluation.outcome.value
    application.reasons = [reason.as_json() for reason in evaluation.reasons]
    application.offer = evaluation.offer.as_json() if evaluation.offer is not None else None
    target = OUTCOME_STATUS[evaluation.outcome]
    note = OUTCOME_NOTES[evaluation.outcome]
    if target is None:
        application.history[-1].note = note
        session.flush()
        return application
    return transition_application(session, application, target, note, at)


def accept_offer(session: Session, application: CreditApplication, at: datetime) -> CreditApplication:
    """The customer takes the counter-offer: the application becomes what was offered, and is approved.

    Accepting twice returns the accepted application, so a retried request does no harm.
    """
    offer = application.offer
    if application.outcome != Outcome.COUNTER_OFFER.value or not offer:
        raise Conflict(f"application {application.id} has no counter-offer to accept")
    accepted = (
        application.status == ApplicationStatus.APPROVED.value
        and application.amount == Decimal(offer["amount"])
        and application.term_months == offer["term_months"]
    )
    if accepted:
        return application
    if application.status != ApplicationStatus.RECEIVED.value:
        raise Conflict(
            f"application {application.id} is {application.status}; its counter-offer can no longer be accepted"
        )
    application.amount = Decimal(offer["amount"])
    application.term_months = offer["term_months"]
    return transition_application(
        session, application, ApplicationStatus.APPROVED, "Contraoferta aceptada por el cliente.", at
    )


def add_document(
    session: Session,
    application: CreditApplication,
    rules: ProductRules,
    kind: str,
    filename: str,
    content_type: str,
    media_url: Optional[str],
    media_id: Optional[str],
    at: datetime,
) -> ApplicationDocument:
    """Record a document the product asks for, while the application is still open."""
    codes = [document.code for document in rules.required_documents]
    if kind not in codes:
        raise Invalid(f"kind must be one of {', '.join(codes)} for {rules.code}")
    if application.status not in DOCUMENT_STATUSES:
        raise Conflict(f"application {application.id} is {application.status}; it takes no more documents")
    document = ApplicationDocument(
        kind=kind,
        filename=filename,
        content_type=content_type,
        media_url=media_url,
        media_id=media_id,
        received_at=at,
    )
    application.documents.append(document)
    session.flush()
    return document


def transition_application(
    session: Session, application: CreditApplication, target: ApplicationStatus, note: Optional[str], at: datetime
) -> CreditApplication:
    """Move an application along the workflow; disbursing it opens the loan on that day."""
    current = ApplicationStatus(application.status)
    allowed = ALLOWED_TRANSITIONS[current]
    if target not in allowed:
        options = ", ".join(status.value for status in allowed) or "none, it is final"
        raise Conflict(
            f"application {application.id} cannot go from {current.value} to {target.value}; "
            f"allowed: {options}"
        )
    application.status = target.value
    application.updated_at = at
    application.history.append(
        ApplicationStatusEvent(from_status=current.value, to_status=target.value, note=note, created_at=at)
    )
    if target is ApplicationStatus.DISBURSED:
        create_loan(
            session,
            customer_id=application.customer_id,
            product=application.product,
            principal=application.amount,
            term_months=application.term_months,
            disbursed_on=lima_date(at),
            application=application,
            at=at,
        )
    session.flush()
    return application


def create_loan(
    session: Session,
    customer_id: int,
    product: CreditProduct,
    principal: Decimal,
    term_months: int,
    disbursed_on: date,
    at: datetime,
    application: Optional[CreditApplication] = None,
) -> Loan:
    """Book a loan with its French schedule; the first installment falls due a month later (day ≤ 28)."""
    loan = Loan(
        customer_id=customer_id,
        product=product,
        application=application,
        currency=product.currency,
        principal=principal,
        term_months=term_months,
        tea=product.tea,
        moratory_tea=product.moratory_tea,
        disbursed_on=disbursed_on,
        created_at=at,
    )
    for row in french_schedule(principal, product.tea, term_months, maths.first_due_date(disbursed_on)):
        loan.installments.append(
            Installment(
                number=row.number,
                due_date=row.due_date,
                principal=row.principal,
                interest=row.interest,
                amount=row.amount,
                principal_paid=ZERO,
                interest_paid=ZERO,
                late_interest_accrued=ZERO,
                late_interest_paid=ZERO,
            )
        )
    session.add(loan)
    session.flush()
    return loan


@dataclass(frozen=True)
class PaymentResult:
    payment: Payment
    duplicate: bool


def find_payment(session: Session, external_id: str) -> Optional[Payment]:
    return session.execute(select(Payment).where(Payment.external_id == external_id)).scalar_one_or_none()


def new_payment(
    loan: Loan,
    amount: Decimal,
    external_id: str,
    channel: str,
    source: PaymentSource,
    paid_at: datetime,
    recorded_at: datetime,
    reference: Optional[str] = None,
) -> Payment:
    return Payment(
        loan_id=loan.id,
        external_id=external_id,
        amount=amount,
        currency=loan.currency,
        channel=channel,
        source=source.value,
        reference=reference,
        paid_at=paid_at,
        created_at=recorded_at,
        allocation=[],
    )


def apply_payment(payment: Payment, loan: Loan, installments: Sequence[Installment], on_date: date) -> None:
    """Check the amount against the balance on ``on_date``, allocate it, and record the split on the payment."""
    balance = loan_position(installments, loan.moratory_tea, on_date).outstanding_balance
    if balance <= 0:
        raise Conflict(f"loan {loan.id} is paid off; nothing to apply")
    if payment.amount > balance:
        raise Invalid(f"amount {soles(payment.amount)} exceeds the outstanding balance of {soles(balance)}")
    allocations = allocate_payment(installments, loan.moratory_tea, payment.amount, on_date)
    payment.allocation = [
        {
            "installment_number": part.installment_number,
            "late_interest": str(part.late_interest),
            "interest": str(part.interest),
            "principal": str(part.principal),
        }
        for part in allocations
    ]


def _locked_installments(session: Session, loan: Loan) -> List[Installment]:
    """Lock the loan (FOR UPDATE where the database has it) and read its installments afresh."""
    session.execute(
        select(Loan).where(Loan.id == loan.id).with_for_update().execution_options(populate_existing=True)
    )
    return list(
        session.execute(
            select(Installment)
            .where(Installment.loan_id == loan.id)
            .order_by(Installment.number)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).scalars()
    )


def record_payment(
    session: Session,
    loan: Loan,
    amount: Decimal,
    external_id: str,
    channel: str,
    source: PaymentSource,
    paid_at: datetime,
    today: date,
    reference: Optional[str] = None,
) -> PaymentResult:
    """Apply a payment exactly once per ``external_id`` and commit.

    A repeat with the same loan and amount is reported as a duplicate; the same ``external_id`` with other
    data is a conflict, because it means two different payments share an id. Late interest is computed up
    to the day it was paid in Lima (never after today).
    """
    existing = find_payment(session, external_id)
    if existing is not None:
        return _duplicate(existing, loan, amount)
    now = datetime.now(LIMA)
    payment = new_payment(loan, amount, external_id, channel, source, paid_at, now, reference)
    try:
        # Insert first: the unique external_id settles a race before anything is read for the allocation,
        # and on SQLite the insert takes the write lock, so the installments read next cannot be stale.
        session.add(payment)
        session.flush()
        apply_payment(payment, loan, _locked_installments(session, loan), min(lima_date(paid_at), today))
        refresh_promises(session, loan, today, now)
        session.commit()
    except IntegrityError:
        session.rollback()
        existing = find_payment(session, external_id)
        if existing is None:
            raise
        return _duplicate(existing, loan, amount)
    except OperationError:
        session.rollback()
        raise
    return PaymentResult(payment, duplicate=False)


def _duplicate(existing: Payment, loan: Loan, amount: Decimal) -> PaymentResult:
    if existing.loan_id != loan.id or existing.amount != amount:
        raise Conflict(
            f"external_id {existing.external_id!r} was already used for another payment "
            f"({soles(existing.amount)} on loan {existing.loan_id})"
        )
    return PaymentResult(existing, duplicate=True)


def loan_payments(session: Session, loan: Loan) -> List[Payment]:
    return list(
        session.execute(select(Payment).where(Payment.loan_id == loan.id).order_by(Payment.paid_at, Payment.id))
        .scalars()
    )


def refresh_promises(session: Session, loan: Loan, today: date, at: datetime) -> List[PromiseToPay]:
    """Settle pending promises: kept once payments from the promise's day to its date cover the amount,
    broken once the date has passed without that."""
    promises = list(
        session.execute(select(PromiseToPay).where(PromiseToPay.loan_id == loan.id).order_by(PromiseToPay.id))
        .scalars()
    )
    pending = [p for p in promises if p.status == PromiseStatus.PENDING.value]
    if pending:
        payments = loan_payments(session, loan)
        for promise in pending:
            start = lima_date(promise.created_at)
            paid = sum(
                (p.amount for p in payments if start <= lima_date(p.paid_at) <= promise.promised_date), ZERO
            )
            if paid >= promise.amount:
                promise.status = PromiseStatus.KEPT.value
                promise.resolved_at = at
            elif today > promise.promised_date:
                promise.status = PromiseStatus.BROKEN.value
                promise.resolved_at = at
        session.flush()
    return promises


def promises_made(
    session: Session,
    today: date,
    at: datetime,
    since: Optional[date] = None,
    until: Optional[date] = None,
    channel: Optional[str] = None,
) -> List[PromiseToPay]:
    """Promises made from ``since`` to ``until`` (days in Lima, inclusive) on ``channel``, oldest first; every
    pending promise is settled first, so the kept-rate of a period is read from settled outcomes."""
    pending_loans = select(PromiseToPay.loan_id).where(PromiseToPay.status == PromiseStatus.PENDING.value)
    for loan in session.execute(select(Loan).where(Loan.id.in_(pending_loans.distinct()))).scalars():
        refresh_promises(session, loan, today, at)
    query = select(PromiseToPay)
    if since is not None:
        query = query.where(PromiseToPay.created_at >= datetime.combine(since, datetime.min.time(), LIMA))
    if until is not None:
        end = datetime.combine(until + timedelta(days=1), datetime.min.time(), LIMA)
        query = query.where(PromiseToPay.created_at < end)
    if channel is not None:
        query = query.where(PromiseToPay.channel == channel)
    return list(session.execute(query.order_by(PromiseToPay.id)).scalars())


@dataclass(frozen=True)
class PromiseTerms:
    """What a promise to pay on a loan may be today: an amount and a date within these bounds."""

    bucket: str
    min_amount: Decimal
    max_amount: Decimal
    suggested_amount: Decimal
    earliest_date: date
    latest_date: date


def promise_terms(loan: Loan, policy: CollectionsPolicy, today: date) -> PromiseTerms:
    """The collections policy for the loan's bucket: at least ``promise_min_rate`` of the overdue debt (rounded
    up to the cent, never above the balance), from today to ``promise_max_days`` ahead."""
    state = position(loan, today)
    if state.total_overdue <= 0:
        raise Conflict(f"loan {loan.id} has nothing overdue; a promise to pay needs overdue debt")
    rules = policy.bucket(state.bucket)
    balance = state.outstanding_balance
    minimum = min(max(ceil_money(rules.promise_min_rate * state.total_overdue), CENT), balance)
    return PromiseTerms(
        bucket=state.bucket,
        min_amount=minimum,
        max_amount=balance,
        suggested_amount=state.total_overdue,
        earliest_date=today,
        latest_date=today + timedelta(days=rules.promise_max_days),
    )


def pending_promise(session: Session, loan: Loan, today: date, at: datetime) -> Optional[PromiseToPay]:
    pending = PromiseStatus.PENDING.value
    return next((p for p in refresh_promises(session, loan, today, at) if p.status == pending), None)


def create_promise(
    session: Session,
    loan: Loan,
    amount: Decimal,
    promised_date: date,
    today: date,
    at: datetime,
    channel: str = API_CHANNEL,
    terms: Optional[PromiseTerms] = None,
) -> PromiseToPay:
    """Record a promise to pay within ``terms`` (the collections policy, from ``promise_terms``), or within the
    system's bounds only when there are none (the seed's history); a loan holds one pending promise at a time."""
    state = position(loan, today)
    balance = state.outstanding_balance
    if balance <= 0:
        raise Conflict(f"loan {loan.id} is paid off")
    if pending_promise(session, loan, today, at) is not None:
        raise Conflict(f"loan {loan.id} already has a pending promise to pay")
    bounds = terms or PromiseTerms(
        state.bucket, CENT, balance, state.total_overdue, today, today + timedelta(days=MAX_PROMISE_DAYS)
    )
    problems = []
    if not bounds.earliest_date <= promised_date <= bounds.latest_date:
        where = "is in the past" if promised_date < bounds.earliest_date else "is too far ahead"
        problems.append(
            f"promised_date {promised_date.isoformat()} {where}: it must be from "
            f"{bounds.earliest_date.isoformat()} to {bounds.latest_date.isoformat()}"
        )
    if not bounds.min_amount <= amount <= bounds.max_amount:
        problems.append(
            f"amount {soles(amount)} must be from {soles(bounds.min_amount)} to {soles(bounds.max_amount)} "
            "(the outstanding balance)"
        )
    if problems:
        raise Invalid("; ".join(problems))
    promise = PromiseToPay(
        loan_id=loan.id,
        amount=amount,
        promised_date=promised_date,
        status=PromiseStatus.PENDING.value,
        channel=channel,
        created_at=at,
    )
    _insert_one_open(session, promise, f"loan {loan.id} already has a pending promise to pay")
    return promise


def _insert_one_open(session: Session, row: PromiseToPay | PaymentPlan, conflict: str) -> None:
    """Insert a row that a partial unique index allows once per loan; losing a race is a conflict."""
    session.add(row)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise Conflict(conflict) from None


def open_plan(session: Session, loan_id: int) -> Optional[PaymentPlan]:
    """The loan's plan in force or waiting for approval, if any (there is one at most)."""
    return session.execute(
        select(PaymentPlan).where(PaymentPlan.loan_id == loan_id, PaymentPlan.status.in_(OPEN_PLAN_STATUSES))
    ).scalar_one_or_none()


def _open_plan_conflict(loan_id: int, plan: PaymentPlan) -> str:
    if plan.offer_id is not None:
        return (
            f"another offer of loan {loan_id} ({plan.offer_id}) was already accepted: payment plan {plan.id} "
            f"is {plan.status}"
        )
    return f"loan {loan_id} already has payment plan {plan.id} ({plan.status})"


def create_payment_plan(
    session: Session,
    loan: Loan,
    installments_count: int,
    down_payment: Decimal,
    discount: Decimal,
    first_due_date: Optional[date],
    today: date,
    at: datetime,
) -> PaymentPlan:
    """An agent records a plan already approved: the overdue debt (installments plus late interest), less the
    discount and the down payment (due today), in equal monthly installments rounded up to the cent, the last
    one adjusted; one open plan per loan."""
    state = position(loan, today)
    total = state.total_overdue
    if total <= 0:
        raise Conflict(f"loan {loan.id} has nothing overdue; a payment plan needs overdue debt")
    if discount + down_payment >= total:
        raise Invalid(
            f"discount plus down payment ({soles(discount + down_payment)}) must be less than the overdue "
            f"debt of {soles(total)}"
        )
    first_due = first_due_date or add_months(today, 1)
    if first_due < today:
        raise Invalid(f"first_due_date {first_due.isoformat()} is in the past")
    if first_due > today + timedelta(days=MAX_PLAN_FIRST_DUE_DAYS):
        raise Invalid(f"first_due_date must be within {MAX_PLAN_FIRST_DUE_DAYS} days")
    rest = total - discount - down_payment
    schedule = plans.payment_schedule(down_payment, rest, installments_count, today, first_due)
    if schedule[-1].amount <= 0:
        raise Invalid(f"{soles(rest)} is too little to split in {installments_count} installments")
    current = open_plan(session, loan.id)
    if current is not None:
        raise Conflict(_open_plan_conflict(loan.id, current))
    plan = PaymentPlan(
        loan_id=loan.id,
        kind=PlanKind.INSTALLMENTS.value,
        channel=AGENT_CHANNEL,
        total_amount=total,
        discount=discount,
        down_payment=down_payment,
        installments_count=installments_count,
        installment_amount=schedule[-installments_count].amount,
        first_due_date=first_due,
        status=PlanStatus.ACTIVE.value,
        created_at=at,
        schedule=[PlanInstallment(number=row.number, due_date=row.due_date, amount=row.amount) for row in schedule],
    )
    _insert_one_open(session, plan, f"loan {loan.id} already has an open payment plan")
    return plan


def loans_of(session: Session, customer: Customer) -> Sequence[Loan]:
    return list(session.execute(select(Loan).where(Loan.customer_id == customer.id).order_by(Loan.id)).scalars())


def loan_for_unassigned_payment(session: Session, customer: Customer, today: date) -> Loan:
    """Where a payment without a loan goes: the customer's most overdue active loan, the oldest on a tie."""
    candidates = [
        (state.days_past_due, -loan.id, loan)
        for loan in loans_of(session, customer)
        if (state := position(loan, today)).status == "active"
    ]
    if not candidates:
        raise Conflict(f"customer {customer.id} has no active loan to apply the payment to")
    return max(candidates, key=lambda item: item[:2])[2]


# --- collections: plan offers, cases, identity ---------------------------------------------------------------


@dataclass(frozen=True)
class Negotiation:
    """The answer to a request for plan offers: the offers stored, or why there are none."""

    bucket: str
    debt: Decimal
    feasible: bool
    reason: Optional[str]
    required_installments: Optional[int]
    max_installments: int
    needs_approval: bool
    offers: List[PlanOffer]


def has_collections_hold(session: Session, loan_id: int) -> bool:
    """True while a dispute on the loan is open: nobody may contact the customer to collect it."""
    return (
        session.execute(
            select(Case.id).where(
                Case.loan_id == loan_id, Case.kind == CaseKind.DISPUTE.value, Case.status == CaseStatus.OPEN.value
            )
        ).first()
        is not None
    )


def offer_plans(
    session: Session,
    loan: Loan,
    policy: CollectionsPolicy,
    monthly_amount: Optional[Decimal],
    channel: str,
    today: date,
    at: datetime,
) -> Negotiation:
    """Store the plans the policy allows on the loan's overdue debt today (the standard options, or the plan
    for ``monthly_amount``), each with its own code, so that accepting one books exactly what was shown."""
    state = position(loan, today)
    debt = state.total_overdue
    if debt <= 0:
        return Negotiation(state.bucket, debt, False, NOTHING_OVERDUE, None, 0, False, [])
    rules = policy.bucket(state.bucket)

    def refused(reason: Optional[str], required: Optional[int] = None) -> Negotiation:
        return Negotiation(
            state.bucket, debt, False, reason, required, rules.max_installments, plans.needs_approval(debt, rules), []
        )

    if has_collections_hold(session, loan.id):
        return refused(COLLECTIONS_HOLD)
    if open_plan(session, loan.id) is not None:
        return refused(PLAN_ACTIVE)
    if monthly_amount is None:
        options = plans.plan_options(debt, rules, today)
    else:
        counter = plans.plan_for_monthly_amount(debt, rules, today, monthly_amount)
        if counter.plan is None:
            return refused(counter.reason, counter.required_installments)
        options = [counter.plan]
    offers = [_plan_offer(session, loan, option, monthly_amount, channel, at) for option in options]
    session.flush()
    return Negotiation(
        state.bucket, debt, True, None, None, rules.max_installments, plans.needs_approval(debt, rules), offers
    )


def _plan_offer(
    session: Session,
    loan: Loan,
    option: plans.PlanOption,
    monthly_amount: Optional[Decimal],
    channel: str,
    at: datetime,
) -> PlanOffer:
    offer = PlanOffer(
        id=_unused_code(session, PlanOffer.id, OFFER_PREFIX),
        loan_id=loan.id,
        kind=option.kind,
        debt=option.debt,
        discount=option.discount,
        down_payment=option.down_payment,
        installments_count=option.installments_count,
        installment_amount=option.installment_amount,
        total_to_pay=option.total_to_pay,
        first_due_date=option.first_due_date,
        valid_until=option.valid_until,
        needs_approval=option.needs_approval,
        schedule=[
            {"number": row.number, "due_date": row.due_date.isoformat(), "amount": str(row.amount)}
            for row in option.schedule
        ],
        monthly_amount=monthly_amount,
        channel=channel,
        status=OfferStatus.OFFERED.value,
        created_at=at,
    )
    session.add(offer)
    return offer


def get_plan_offer(session: Session, offer_id: str) -> PlanOffer:
    offer = session.get(PlanOffer, offer_id.strip().upper())
    if offer is None:
        raise NotFound(f"plan offer {offer_id!r} not found")
    return offer


def offer_status(offer: PlanOffer, today: date) -> OfferStatus:
    """Accepted, or offered until its ``valid_until`` (inclusive) and expired after."""
    if offer.status == OfferStatus.ACCEPTED.value:
        return OfferStatus.ACCEPTED
    return OfferStatus.EXPIRED if today > offer.valid_until else OfferStatus.OFFERED


def _plan_of_offer(session: Session, offer_id: str) -> Optional[PaymentPlan]:
    return session.execute(select(PaymentPlan).where(PaymentPlan.offer_id == offer_id)).scalar_one_or_none()


def accept_plan_offer(
    session: Session, offer: PlanOffer, channel: str, today: date, at: datetime
) -> Tuple[PaymentPlan, bool]:
    """Book the plan exactly as offered, with its schedule: active, or waiting for a person's approval when the
    offer said so. Accepting again returns the same plan; the flag says whether it is new."""
    booked = _plan_of_offer(session, offer.id)
    if booked is not None:
        return booked, False
    if offer_status(offer, today) is OfferStatus.EXPIRED:
        raise Conflict(f"offer {offer.id} expired on {offer.valid_until.isoformat()}; ask for new offers")
    loan = get_loan(session, offer.loan_id)
    if position(loan, today).total_overdue <= 0:
        raise Conflict(f"loan {loan.id} has nothing overdue any more; offer {offer.id} no longer applies")
    current = open_plan(session, loan.id)
    if current is not None:
        raise Conflict(_open_plan_conflict(loan.id, current))
    pending = PlanStatus.PENDING_APPROVAL if offer.needs_approval else PlanStatus.ACTIVE
    plan = PaymentPlan(
        loan_id=loan.id,
        offer_id=offer.id,
        kind=offer.kind,
        channel=channel,
        total_amount=offer.debt,
        discount=offer.discount,
        down_payment=offer.down_payment,
        installments_count=offer.installments_count,
        installment_amount=offer.installment_amount,
        first_due_date=offer.first_due_date,
        status=pending.value,
        created_at=at,
        schedule=[
            PlanInstallment(
                number=row["number"], due_date=date.fromisoformat(row["due_date"]), amount=Decimal(row["amount"])
            )
            for row in offer.schedule
        ],
    )
    offer.status = OfferStatus.ACCEPTED.value
    offer.accepted_at = at
    session.add(plan)
    try:
        session.flush()
    except IntegrityError:
        # A concurrent request booked this offer (answer with its plan) or another plan of the loan (conflict).
        session.rollback()
        booked = _plan_of_offer(session, offer.id)
        if booked is not None:
            return booked, False
        current = open_plan(session, offer.loan_id)
        raise Conflict(
            _open_plan_conflict(offer.loan_id, current) if current else f"offer {offer.id} could not be accepted"
        ) from None
    return plan, True


def find_case_by_key(session: Session, idempotency_key: str) -> Optional[Case]:
    return session.execute(select(Case).where(Case.idempotency_key == idempotency_key)).scalar_one_or_none()


def get_case(session: Session, case_id: int) -> Case:
    case = session.get(Case, case_id)
    if case is None:
        raise NotFound(f"case {case_id} not found")
    return case


def open_case(
    session: Session,
    kind: CaseKind,
    customer_id: Optional[int],
    loan_id: Optional[int],
    channel: str,
    conversation_id: Optional[str],
    priority: str,
    summary: str,
    details: Dict[str, Any],
    attachments: List[Dict[str, Any]],
    idempotency_key: Optional[str],
    at: datetime,
) -> Case:
    """Open a case for a person; a case about a loan is the loan owner's (given or not), and an open dispute
    holds collection contact on that loan until the case is closed."""
    customer = get_customer(session, customer_id) if customer_id is not None else None
    loan = get_loan(session, loan_id) if loan_id is not None else None
    if loan is not None:
        if customer is not None and loan.customer_id != customer.id:
            raise Conflict(f"loan {loan.id} does not belong to customer {customer.id}")
        customer_id = loan.customer_id
    case = Case(
        code=_unused_code(session, Case.code, CASE_PREFIX),
        kind=kind.value,
        customer_id=customer_id,
        loan_id=loan_id,
        channel=channel,
        conversation_id=conversation_id,
        priority=priority,
        summary=summary,
        details=details,
        attachments=attachments,
        status=CaseStatus.OPEN.value,
        idempotency_key=idempotency_key,
        created_at=at,
    )
    session.add(case)
    session.flush()
    return case


def close_case(session: Session, case: Case, outcome: str, at: datetime) -> Case:
    """Close a case with its outcome (releasing a dispute's hold); closing again with the same outcome is a
    harmless repeat, with another one a conflict."""
    if case.status == CaseStatus.CLOSED.value:
        if case.outcome == outcome:
            return case
        raise Conflict(f"case {case.code} is already closed with outcome {case.outcome!r}")
    case.status = CaseStatus.CLOSED.value
    case.outcome = outcome
    case.closed_at = at
    session.flush()
    return case


@dataclass(frozen=True)
class Verification:
    verified: bool
    customer: Optional[Customer]
    attempts_left: int
    locked_until: Optional[datetime]


def _code_hash(challenge_id: str, code: str) -> str:
    return hashlib.sha256(f"{challenge_id}:{code}".encode()).hexdigest()


def send_code(
    session: Session, rules: VerificationRules, document_type: str, document_number: str, at: datetime
) -> IdentityChallenge:
    """Create a one-time code for a document and send it by (mock) SMS to the customer's phone. An unknown
    document gets a challenge all the same, whose code is sent nowhere, so the answer never tells them apart."""
    customer = find_customer_by_document(session, document_type, document_number)
    challenge_id = secrets.token_urlsafe(18)
    code = "".join(secrets.choice(string.digits) for _ in range(rules.code_length))
    challenge = IdentityChallenge(
        id=challenge_id,
        document_type=document_type,
        document_number=document_number,
        customer_id=customer.id if customer else None,
        code_hash=_code_hash(challenge_id, code),
        expires_at=at + timedelta(minutes=rules.code_ttl_minutes),
        created_at=at,
    )
    session.add(challenge)
    if customer is not None:
        text = SMS_CODE_TEXT.format(code=code, minutes=rules.code_ttl_minutes)
        session.add(SmsMessage(customer_id=customer.id, to=customer.phone, text=text, sent_at=at))
    session.flush()
    return challenge


def verify_identity(
    session: Session,
    rules: VerificationRules,
    document_type: str,
    document_number: str,
    at: datetime,
    birth_date: Optional[date] = None,
    challenge_id: Optional[str] = None,
    code: Optional[str] = None,
) -> Verification:
    """Check the second factor (date of birth, or a one-time code of this document) and count failures per
    document, customer or not: ``max_failures`` in a row lock it for ``lock_minutes``, during which even the
    right factor fails and nothing is counted. Success resets the count and uses the code up."""
    state = _verification_state(session, document_type, document_number, at)
    if state.locked_until is not None:
        if at < state.locked_until:
            return Verification(False, None, 0, state.locked_until)
        state.failures, state.locked_until = 0, None
    customer = find_customer_by_document(session, document_type, document_number)
    challenge = session.get(IdentityChallenge, challenge_id) if challenge_id else None
    state.updated_at = at
    if customer is not None and _factor_matches(customer, at, birth_date, challenge, code):
        state.failures = 0
        if challenge is not None:
            challenge.used_at = at
        session.flush()
        return Verification(True, customer, rules.max_failures, None)
    state.failures += 1
    if state.failures >= rules.max_failures:
        state.locked_until = at + timedelta(minutes=rules.lock_minutes)
    session.flush()
    return Verification(False, None, max(rules.max_failures - state.failures, 0), state.locked_until)


def _factor_matches(
    customer: Customer,
    at: datetime,
    birth_date: Optional[date],
    challenge: Optional[IdentityChallenge],
    code: Optional[str],
) -> bool:
    if birth_date is not None:
        return customer.date_of_birth == birth_date
    return (
        challenge is not None
        and code is not None
        and challenge.customer_id == customer.id
        and challenge.used_at is None
        and at < challenge.expires_at
        and hmac.compare_digest(challenge.code_hash, _code_hash(challenge.id, code))
    )


def _verification_state(session: Session, document_type: str, document_number: str, at: datetime) -> VerificationState:
    """The document's failure count, locked for this transaction so concurrent attempts are counted one by one.

    The UPDATE comes first: it takes SQLite's write lock (a row lock on PostgreSQL) before anything is read.
    """
    key = (VerificationState.document_type == document_type, VerificationState.document_number == document_number)
    session.execute(
        update(VerificationState).where(*key).values(updated_at=at).execution_options(synchronize_session=False)
    )
    state = session.execute(
        select(VerificationState).where(*key).execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if state is not None:
        return state
    state = VerificationState(
        document_type=document_type, document_number=document_number, failures=0, locked_until=None, updated_at=at
    )
    session.add(state)
    try:
        session.flush()
    except IntegrityError:
        # Another request created it first (PostgreSQL, where an UPDATE of no row locks nothing): use that one.
        session.rollback()
        return _verification_state(session, document_type, document_number, at)
    return state
