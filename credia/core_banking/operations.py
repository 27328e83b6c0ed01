"""What the service does to its data, shared by the HTTP API and the seed so both follow the same rules.

Functions raise ``NotFound``, ``Conflict`` (the resource's state forbids it) or ``Invalid`` (the values are
wrong); the API maps them to 404, 409 and 422 with the message as ``detail``. Only ``record_payment``
commits by itself, because its idempotency depends on how the transaction ends.
"""

from __future__ import annotations

import random
import re
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Dict, List, Optional, Sequence, Tuple

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from credia.core_banking.loans import LIMA, LoanPosition, allocate_payment, loan_position
from credia.core_banking.models import (
    ApplicationDocument,
    ApplicationStatus,
    ApplicationStatusEvent,
    ConsentChannel,
    ConsentEvent,
    CreditApplication,
    CreditProduct,
    Customer,
    Installment,
    Loan,
    Payment,
    PaymentPlan,
    PaymentSource,
    PlanStatus,
    ProcessingConsent,
    PromiseStatus,
    PromiseToPay,
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
# Sanity bounds of the system of record; the assistant's negotiation policy is stricter and applies first.
MAX_PROMISE_DAYS = 30
MAX_PLAN_FIRST_DUE_DAYS = 60
# Application codes: customers read them aloud and type them, so no 0/O, 1/I/L look-alikes.
CODE_PREFIX = "SOL-"
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


def new_application_code(session: Session, rng: random.Random = _SYSTEM_RANDOM) -> str:
    """An unused ``SOL-XXXXXX`` code; the seed passes its own generator so demo codes are repeatable."""
    while True:
        code = CODE_PREFIX + "".join(rng.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        if session.execute(select(CreditApplication.id).where(CreditApplication.code == code)).scalar() is None:
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


def create_promise(
    session: Session, loan: Loan, amount: Decimal, promised_date: date, today: date, at: datetime
) -> PromiseToPay:
    """Record a promise to pay within ``MAX_PROMISE_DAYS``; a loan holds one pending promise at a time."""
    balance = position(loan, today).outstanding_balance
    if balance <= 0:
        raise Conflict(f"loan {loan.id} is paid off")
    if amount > balance:
        raise Invalid(f"amount {soles(amount)} exceeds the outstanding balance of {soles(balance)}")
    if promised_date < today:
        raise Invalid(f"promised_date {promised_date.isoformat()} is in the past")
    if promised_date > today + timedelta(days=MAX_PROMISE_DAYS):
        raise Invalid(f"promised_date must be within {MAX_PROMISE_DAYS} days")
    if any(p.status == PromiseStatus.PENDING.value for p in refresh_promises(session, loan, today, at)):
        raise Conflict(f"loan {loan.id} already has a pending promise to pay")
    promise = PromiseToPay(
        loan_id=loan.id, amount=amount, promised_date=promised_date, status=PromiseStatus.PENDING.value, created_at=at
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
    """Spread the overdue debt (installments plus late interest, less the discount and the down payment)
    over equal monthly installments, rounded up to the cent; one active plan per loan."""
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
    active = session.execute(
        select(PaymentPlan.id).where(PaymentPlan.loan_id == loan.id, PaymentPlan.status == PlanStatus.ACTIVE.value)
    ).scalar()
    if active is not None:
        raise Conflict(f"loan {loan.id} already has active payment plan {active}")
    plan = PaymentPlan(
        loan_id=loan.id,
        total_amount=total,
        discount=discount,
        down_payment=down_payment,
        installments_count=installments_count,
        installment_amount=ceil_money((total - discount - down_payment) / installments_count),
        first_due_date=first_due,
        status=PlanStatus.ACTIVE.value,
        created_at=at,
    )
    _insert_one_open(session, plan, f"loan {loan.id} already has an active payment plan")
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
