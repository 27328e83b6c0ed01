"""HTTP API of the core-banking mock.

It speaks English to integrators (errors carry a ``detail`` sentence) and keeps Spanish for what customers
read (product names and requirements). Figures that depend on the day (days past due, late interest) are
computed for "today in America/Lima" on every request.
"""

from __future__ import annotations

import hashlib
import json
import logging
from contextlib import asynccontextmanager
from datetime import date, datetime
from decimal import Decimal
from typing import Any, AsyncIterator, Dict, Iterator, List, Optional

import phonenumbers
from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from credia.collections.policy import CollectionsPolicy
from credia.collections.policy import load_policy as load_collections_policy
from credia.core_banking import operations as ops
from credia.core_banking.bureau import bureau_report
from credia.core_banking.documents import InvalidDocument, compact, normalise_document
from credia.core_banking.loans import LIMA, installment_status, late_interest_due, today_lima
from credia.core_banking.models import (
    Base,
    Case,
    CaseStatus,
    ConsentChannel,
    CreditApplication,
    CreditProduct,
    Customer,
    DocumentType,
    Loan,
    Payment,
    PaymentPlan,
    PaymentSource,
    PlanOffer,
    SmsMessage,
)
from credia.core_banking.schemas import (
    AcceptOfferIn,
    AllocationOut,
    ApplicationCreate,
    ApplicationOut,
    ApplicationStatusOut,
    BureauOut,
    CaseCloseIn,
    CaseIn,
    CaseOut,
    CodeChallengeOut,
    CodeRequestIn,
    ConsentEventOut,
    ConsentsOut,
    ConsentStateOut,
    ConsentUpdate,
    CustomerCreate,
    CustomerOut,
    DocumentIn,
    DocumentOut,
    DocumentRequirementOut,
    DocumentsOut,
    ErrorOut,
    HealthOut,
    Id,
    InstallmentOut,
    LoanDetailOut,
    LoanOut,
    OfferOut,
    OptedOutCustomerOut,
    OptOutIn,
    OptOutOut,
    PaymentIn,
    PaymentOut,
    PaymentPlanIn,
    PaymentPlanOut,
    PaymentRecordOut,
    PaymentWebhook,
    PlanOfferOut,
    PlanOffersIn,
    PlanOffersOut,
    ProductOut,
    PromiseIn,
    PromiseOut,
    PromiseTermsOut,
    PublicStatusEventOut,
    ReasonOut,
    RequiredDocumentOut,
    ScheduleRowOut,
    SimulationIn,
    SmsOut,
    StatusEventOut,
    TransitionIn,
    VerificationIn,
    VerificationOut,
    WebhookResult,
)
from credia.credit.evaluation import CreditFacts, CreditRequest, OutOfRange, make_offer, pre_evaluate
from credia.credit.policy import CreditPolicy, UnknownProduct, load_policy
from credia.credit.policy import Product as ProductRules
from credia.db import make_engine, make_session_factory
from credia.signing import SIGNATURE_HEADER, SignatureError, verify

logger = logging.getLogger(__name__)

PAYMENT_COMPLETED = "payment.completed"
WEBHOOK_CHANNEL = "payment_link"
RATIO_QUANTUM = Decimal("0.0001")

TAGS = [
    {"name": "service", "description": "Liveness of the service and its database."},
    {"name": "products", "description": "Credit products and the rules an application must meet."},
    {"name": "customers", "description": "Customers, looked up by identity document, and their contact consents."},
    {"name": "applications", "description": "Credit applications and their workflow."},
    {"name": "loans", "description": "Loans with schedules and delinquency computed for today (America/Lima)."},
    {"name": "payments", "description": "Payments applied exactly once, by API or signed webhook."},
    {
        "name": "identity",
        "description": "Identity verification before any debt is disclosed: date of birth or a one-time SMS code, "
        "with a lock after repeated failures; never tells whether a document belongs to a customer.",
    },
    {
        "name": "collections",
        "description": "Negotiation within the collections policy: plan offers and payment plans, promises to pay, "
        "and cases for a person (disputes, hardship, payment claims, approvals, legal).",
    },
    {"name": "bureau", "description": "Mock credit bureau, deterministic per document."},
]
NOT_FOUND = {404: {"model": ErrorOut, "description": "Unknown id."}}
CONFLICT = {409: {"model": ErrorOut, "description": "The resource's state does not allow it."}}
# One answer for every look-up that does not match, so it never tells whether a code or a customer exists.
NO_MATCH = "no application matches the details given"
CODE_SENT = "Si el documento está registrado, enviamos un código al celular registrado."

# Routes without inputs live on ``fixed``, so the OpenAPI description lists 422 only where it can happen.
fixed = APIRouter()
router = APIRouter(
    responses={422: {"model": ErrorOut, "description": "Invalid values: `detail` says which, `errors` per field."}}
)


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


def get_policy(request: Request) -> CreditPolicy:
    return request.app.state.policy


def get_collections_policy(request: Request) -> CollectionsPolicy:
    return request.app.state.collections_policy


def now_lima() -> datetime:
    return datetime.now(LIMA)


def policy_product(policy: CreditPolicy, code: str) -> ProductRules:
    try:
        return policy.product(code)
    except UnknownProduct as exc:
        raise ops.NotFound(str(exc)) from None


# --- response builders ------------------------------------------------------------------------------------


def customer_out(customer: Customer) -> CustomerOut:
    consents = ops.current_consents(customer)
    return CustomerOut(
        id=customer.id,
        document_type=customer.document_type,
        document_number=customer.document_number,
        first_name=customer.first_name,
        last_name=customer.last_name,
        full_name=customer.full_name,
        date_of_birth=customer.date_of_birth,
        phone=customer.phone,
        email=customer.email,
        country=customer.country,
        created_at=customer.created_at,
        consents={channel: bool(event and event.granted) for channel, event in consents.items()},
    )


def product_out(product: CreditProduct, policy: CreditPolicy) -> ProductOut:
    """The product's row with the rules the policy file adds (fees, income bands, documents)."""
    rules = policy_product(policy, product.code)
    return ProductOut(
        code=product.code,
        name=product.name,
        description=product.description,
        currency=product.currency,
        min_amount=product.min_amount,
        max_amount=product.max_amount,
        min_term_months=product.min_term_months,
        max_term_months=product.max_term_months,
        tea=product.tea,
        moratory_tea=product.moratory_tea,
        min_age=product.min_age,
        max_age_at_maturity=product.max_age_at_maturity,
        max_installment_to_income=product.max_installment_to_income,
        requirements=product.requirements,
        origination_fee_rate=rules.fees.origination,
        insurance_monthly_rate=rules.fees.insurance_monthly,
        min_monthly_income=rules.min_monthly_income,
        employment=dict(rules.employment),
        installment_to_income=rules.installment_to_income.dict(),
        required_documents=[
            DocumentRequirementOut(kind=document.code, label=document.label) for document in rules.required_documents
        ],
    )


def required_documents(application: CreditApplication, policy: CreditPolicy) -> List[RequiredDocumentOut]:
    """The product's documents, each marked as received or not; none for a product no longer in the policy."""
    try:
        rules = policy.product(application.product_code)
    except UnknownProduct:
        return []
    received = {document.kind for document in application.documents}
    return [
        RequiredDocumentOut(kind=document.code, label=document.label, received=document.code in received)
        for document in rules.required_documents
    ]


def evaluation_fields(application: CreditApplication, policy: CreditPolicy) -> Dict[str, Any]:
    """Outcome, offer, reasons and documents: what both the full and the customer's view show."""
    return dict(
        outcome=application.outcome,
        offer=OfferOut(**application.offer) if application.offer else None,
        reasons=[ReasonOut(**reason) for reason in application.reasons or []],
        required_documents=required_documents(application, policy),
    )


def application_out(application: CreditApplication, policy: CreditPolicy) -> ApplicationOut:
    installment = ops.application_installment(application)
    return ApplicationOut(
        id=application.id,
        code=application.code,
        customer_id=application.customer_id,
        product_code=application.product_code,
        product_name=application.product.name,
        amount=application.amount,
        term_months=application.term_months,
        monthly_income=application.monthly_income,
        employment_type=application.employment_type,
        employment_tenure_months=application.employment_tenure_months,
        channel=application.channel,
        phone=application.phone,
        email=application.email,
        status=application.status,
        **evaluation_fields(application, policy),
        installment_amount=installment,
        installment_to_income=(installment / application.monthly_income).quantize(RATIO_QUANTUM),
        loan_id=application.loan.id if application.loan else None,
        created_at=application.created_at,
        updated_at=application.updated_at,
        history=[
            StatusEventOut(
                from_status=event.from_status, status=event.to_status, note=event.note, created_at=event.created_at
            )
            for event in application.history
        ],
    )


def application_status_out(application: CreditApplication, policy: CreditPolicy) -> ApplicationStatusOut:
    return ApplicationStatusOut(
        id=application.id,
        code=application.code,
        status=application.status,
        product_code=application.product_code,
        product_name=application.product.name,
        currency=application.product.currency,
        amount=application.amount,
        term_months=application.term_months,
        created_at=application.created_at,
        updated_at=application.updated_at,
        history=[
            PublicStatusEventOut(from_status=event.from_status, status=event.to_status, created_at=event.created_at)
            for event in application.history
        ],
        **evaluation_fields(application, policy),
    )


def documents_out(application: CreditApplication, policy: CreditPolicy) -> DocumentsOut:
    required = required_documents(application, policy)
    labels = {document.kind: document.label for document in required}
    return DocumentsOut(
        application_id=application.id,
        code=application.code,
        product_code=application.product_code,
        complete=all(document.received for document in required),
        required=required,
        received=[
            DocumentOut(
                id=document.id,
                kind=document.kind,
                label=labels.get(document.kind, document.kind),
                filename=document.filename,
                content_type=document.content_type,
                media_url=document.media_url,
                media_id=document.media_id,
                received_at=document.received_at,
            )
            for document in application.documents
        ],
        missing=[
            DocumentRequirementOut(kind=document.kind, label=document.label)
            for document in required
            if not document.received
        ],
    )


def loan_out(session: Session, loan: Loan, as_of: date, with_installments: bool = False) -> LoanOut:
    state = ops.position(loan, as_of)
    plan = ops.open_plan(session, loan.id)
    fields = dict(
        id=loan.id,
        customer_id=loan.customer_id,
        product_code=loan.product_code,
        product_name=loan.product.name,
        currency=loan.currency,
        principal=loan.principal,
        term_months=loan.term_months,
        tea=loan.tea,
        moratory_tea=loan.moratory_tea,
        disbursed_on=loan.disbursed_on,
        installment_amount=loan.installments[0].amount,
        status=state.status,
        as_of=as_of,
        days_past_due=state.days_past_due,
        bucket=state.bucket,
        installments_paid=state.installments_paid,
        installments_overdue=state.installments_overdue,
        amount_overdue=state.amount_overdue,
        late_interest=state.late_interest,
        total_overdue=state.total_overdue,
        next_due_date=state.next_due_date,
        next_due_amount=state.next_due_amount,
        outstanding_principal=state.outstanding_principal,
        outstanding_balance=state.outstanding_balance,
        collections_hold=ops.has_collections_hold(session, loan.id),
        active_plan_id=plan.id if plan else None,
    )
    if not with_installments:
        return LoanOut(**fields)
    installments = [
        InstallmentOut(
            number=item.number,
            due_date=item.due_date,
            principal=item.principal,
            interest=item.interest,
            amount=item.amount,
            paid_amount=item.paid_amount,
            late_interest=late_interest_due(item, loan.moratory_tea, as_of),
            status=installment_status(item, as_of),
            paid_on=item.paid_on,
        )
        for item in loan.installments
    ]
    return LoanDetailOut(**fields, installments=installments)


def payment_fields(payment: Payment) -> dict:
    return dict(
        id=payment.id,
        loan_id=payment.loan_id,
        external_id=payment.external_id,
        amount=payment.amount,
        currency=payment.currency,
        channel=payment.channel,
        source=payment.source,
        reference=payment.reference,
        paid_at=payment.paid_at,
        allocation=[AllocationOut(**part) for part in payment.allocation],
    )


def plan_offer_out(offer: PlanOffer, today: date) -> PlanOfferOut:
    return PlanOfferOut(
        id=offer.id,
        loan_id=offer.loan_id,
        kind=offer.kind,
        debt=offer.debt,
        discount=offer.discount,
        down_payment=offer.down_payment,
        installments_count=offer.installments_count,
        installment_amount=offer.installment_amount,
        total_to_pay=offer.total_to_pay,
        first_due_date=offer.first_due_date,
        valid_until=offer.valid_until,
        needs_approval=offer.needs_approval,
        status=ops.offer_status(offer, today),
        schedule=[ScheduleRowOut(**row) for row in offer.schedule],
    )


# --- service -----------------------------------------------------------------------------------------------


@fixed.get(
    "/health",
    response_model=HealthOut,
    tags=["service"],
    summary="Check the service and its database",
    responses={503: {"model": ErrorOut, "description": "The database does not answer."}},
)
def health(session: Session = Depends(get_session)) -> HealthOut:
    try:
        session.execute(text("SELECT 1"))
    except Exception as exc:  # any driver error means "not healthy", never a crash
        logger.warning("health check failed: %s", exc)
        raise HTTPException(status_code=503, detail="database unavailable") from None
    return HealthOut(status="ok")


# --- products ----------------------------------------------------------------------------------------------


@fixed.get("/products", response_model=List[ProductOut], tags=["products"], summary="List the products on offer")
def list_products(
    session: Session = Depends(get_session), policy: CreditPolicy = Depends(get_policy)
) -> List[ProductOut]:
    products = session.execute(
        select(CreditProduct).where(CreditProduct.active.is_(True)).order_by(CreditProduct.min_amount)
    ).scalars()
    return [product_out(product, policy) for product in products]


@router.get(
    "/products/{code}", response_model=ProductOut, tags=["products"], summary="Get a product", responses=NOT_FOUND
)
def get_product(
    code: str = Path(..., max_length=20),
    session: Session = Depends(get_session),
    policy: CreditPolicy = Depends(get_policy),
) -> ProductOut:
    return product_out(ops.get_product(session, code), policy)


@router.post(
    "/simulations",
    response_model=OfferOut,
    tags=["products"],
    summary="Simulate a loan: installment, TEA, TCEA, total to pay",
    description=(
        "Nothing is stored. The installment is fixed and includes the desgravamen insurance; the TCEA is the "
        "yearly IRR of what is disbursed (after the origination fee) against the installments. 422 when the "
        "amount or term is outside the product's limits (the detail says them)."
    ),
    responses=NOT_FOUND,
)
def simulate(body: SimulationIn, policy: CreditPolicy = Depends(get_policy)) -> OfferOut:
    rules = policy_product(policy, body.product_code)
    try:
        offer = make_offer(rules, body.amount, body.term_months, today_lima())
    except OutOfRange as exc:
        raise ops.Invalid(str(exc)) from None
    return OfferOut(**offer.as_json())


# --- customers ---------------------------------------------------------------------------------------------


@router.get(
    "/customers",
    response_model=List[CustomerOut],
    tags=["customers"],
    summary="Find customers by identity document or phone",
    description=(
        "With `document_type` the number is validated and normalised (spaces, dots and dashes removed; a DNI "
        "may carry its check character); without it, the compact number is matched across types. "
        "`phone` accepts E.164 or a Peruvian national number. Without filters, lists customers by id."
    ),
    responses={422: {"model": ErrorOut, "description": "Invalid document or phone."}},
)
def find_customers(
    document_type: Optional[DocumentType] = None,
    document_number: Optional[str] = Query(None, max_length=30),
    phone: Optional[str] = Query(None, max_length=30),
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0, le=1_000_000),
    session: Session = Depends(get_session),
) -> List[CustomerOut]:
    query = select(Customer)
    if document_number is not None:
        if document_type is not None:
            try:
                number = normalise_document(document_type, document_number)
            except InvalidDocument as exc:
                raise ops.Invalid(str(exc)) from None
            query = query.where(Customer.document_type == document_type.value)
        else:
            number = compact(document_number)
        query = query.where(Customer.document_number == number)
    elif document_type is not None:
        query = query.where(Customer.document_type == document_type.value)
    if phone is not None:
        try:
            parsed = phonenumbers.parse(phone, "PE")
        except phonenumbers.NumberParseException:
            raise ops.Invalid("phone is not a phone number") from None
        query = query.where(
            Customer.phone == phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
        )
    query = query.options(selectinload(Customer.consent_events)).order_by(Customer.id).limit(limit).offset(offset)
    customers = session.execute(query).scalars()
    return [customer_out(customer) for customer in customers]


@router.post(
    "/customers",
    response_model=CustomerOut,
    status_code=201,
    tags=["customers"],
    summary="Register a customer",
    responses={409: {"model": ErrorOut, "description": "A customer with this document exists."}},
)
def create_customer(body: CustomerCreate, session: Session = Depends(get_session)) -> CustomerOut:
    customer = ops.add_customer(
        session,
        Customer(
            document_type=body.document_type.value,
            document_number=body.document_number,
            first_name=body.first_name,
            last_name=body.last_name,
            date_of_birth=body.date_of_birth,
            phone=body.phone,
            email=body.email,
            country=body.country.value,
            created_at=now_lima(),
        ),
    )
    session.commit()
    return customer_out(customer)


@router.get(
    "/customers/{customer_id}",
    response_model=CustomerOut,
    tags=["customers"],
    summary="Get a customer",
    responses=NOT_FOUND,
)
def get_customer(customer_id: Id, session: Session = Depends(get_session)) -> CustomerOut:
    return customer_out(ops.get_customer(session, customer_id))


@router.put(
    "/customers/{customer_id}/consents/{channel}",
    response_model=ConsentStateOut,
    tags=["customers"],
    summary="Grant or withdraw contact consent on a channel",
    description="Every call is kept in the consent history with its time and source.",
    responses=NOT_FOUND,
)
def set_consent(
    customer_id: Id, channel: ConsentChannel, body: ConsentUpdate, session: Session = Depends(get_session)
) -> ConsentStateOut:
    customer = ops.get_customer(session, customer_id)
    event = ops.record_consent(session, customer, channel, body.granted, body.source, now_lima())
    session.commit()
    return ConsentStateOut(channel=channel, granted=event.granted, source=event.source, updated_at=event.recorded_at)


@router.get(
    "/customers/{customer_id}/consents",
    response_model=ConsentsOut,
    tags=["customers"],
    summary="Current consent per channel and its history",
    responses=NOT_FOUND,
)
def get_consents(customer_id: Id, session: Session = Depends(get_session)) -> ConsentsOut:
    customer = ops.get_customer(session, customer_id)
    current = [
        ConsentStateOut(
            channel=channel,
            granted=bool(event and event.granted),
            source=event.source if event else None,
            updated_at=event.recorded_at if event else None,
        )
        for channel, event in ops.current_consents(customer).items()
    ]
    history = [ConsentEventOut.from_orm(event) for event in customer.consent_events]
    return ConsentsOut(customer_id=customer.id, current=current, history=history)


@router.post(
    "/consents/opt-out",
    response_model=OptOutOut,
    tags=["customers"],
    summary="A customer opts out of a channel from the address they wrote from",
    description=(
        "Withdraws contact consent on `channel` for every customer with that phone (E.164, a WhatsApp wa_id or "
        "`whatsapp:+…`) or e-mail, recorded with its time and `source` in the consent history. Idempotent: a "
        "customer already opted out there is not changed again. Always 200 with what changed, also for an "
        "address that is nobody's (`changed: 0`); 422 for an address that is neither a phone nor an e-mail."
    ),
)
def opt_out(body: OptOutIn, session: Session = Depends(get_session)) -> OptOutOut:
    events = ops.opt_out(session, body.channel, body.address, body.source, now_lima())
    session.commit()
    return OptOutOut(
        channel=body.channel,
        address=body.address,
        changed=len(events),
        customers=[
            OptedOutCustomerOut(customer_id=event.customer_id, revoked_at=event.recorded_at) for event in events
        ],
    )


# --- applications ------------------------------------------------------------------------------------------


@router.get(
    "/customers/{customer_id}/applications",
    response_model=List[ApplicationOut],
    tags=["applications"],
    summary="A customer's credit applications",
    responses=NOT_FOUND,
)
def customer_applications(
    customer_id: Id, session: Session = Depends(get_session), policy: CreditPolicy = Depends(get_policy)
) -> List[ApplicationOut]:
    ops.get_customer(session, customer_id)
    applications = session.execute(
        select(CreditApplication).where(CreditApplication.customer_id == customer_id).order_by(CreditApplication.id)
    ).scalars()
    return [application_out(application, policy) for application in applications]


@router.post(
    "/applications",
    response_model=ApplicationOut,
    status_code=201,
    tags=["applications"],
    summary="Submit a credit application",
    description=(
        "Self-service (`document_number`, `date_of_birth`, `employment_tenure_months` and `consent` with "
        "`granted: true`, Ley 29733): the customer is found by document, or registered (then `phone` is "
        "required); an existing customer must give their own date of birth (409 otherwise, saying nothing "
        "more). The application is pre-evaluated at once against the credit policy, the mock bureau and the "
        "customer's arrears: `outcome` pre_approved (status approved, with `offer`), counter_offer (status "
        "received until `POST /applications/{id}/accept-offer`, with `offer`), referred (status referred) or "
        "declined (status rejected), with `reasons` in Spanish.\n\n"
        "With `customer_id` instead, an advisor registers an application for manual review (status received, "
        "no pre-evaluation).\n\n"
        "Amount and term must be within the product's limits (422). A customer may have one open application "
        "per product (409). With an `Idempotency-Key` header, a retry with the same key and body returns the "
        "first application with 200; the same key with another body is 409."
    ),
    responses={
        200: {"model": ApplicationOut, "description": "Replay of the application created with this key."},
        **NOT_FOUND,
        **CONFLICT,
    },
)
def create_application(
    body: ApplicationCreate,
    response: Response,
    idempotency_key: Optional[str] = Header(
        None, alias="Idempotency-Key", min_length=1, max_length=255, description="Unique per intended application."
    ),
    session: Session = Depends(get_session),
    policy: CreditPolicy = Depends(get_policy),
) -> ApplicationOut:
    request_hash = hashlib.sha256(json.dumps(body.dict(), sort_keys=True, default=str).encode()).hexdigest()
    if idempotency_key is not None:
        existing = ops.find_application_by_key(session, idempotency_key)
        if existing is not None:
            return _replay(existing, request_hash, response, policy)
    try:
        application = _submit(session, body, policy, idempotency_key, request_hash)
        session.commit()
    except (IntegrityError, ops.Conflict):
        # A concurrent retry with the same key may have won the race: answer with its application.
        session.rollback()
        existing = ops.find_application_by_key(session, idempotency_key) if idempotency_key is not None else None
        if existing is None:
            raise
        return _replay(existing, request_hash, response, policy)
    return application_out(application, policy)


def _replay(
    existing: CreditApplication, request_hash: str, response: Response, policy: CreditPolicy
) -> ApplicationOut:
    if existing.request_hash != request_hash:
        raise ops.Conflict("Idempotency-Key was already used with a different request body")
    response.status_code = 200
    return application_out(existing, policy)


def _submit(
    session: Session,
    body: ApplicationCreate,
    policy: CreditPolicy,
    idempotency_key: Optional[str],
    request_hash: str,
) -> CreditApplication:
    """Store the application and, when the customer applied themselves, pre-evaluate it."""
    at, today = now_lima(), today_lima()
    product = ops.get_product(session, body.product_code)
    if body.customer_id is not None:
        customer = ops.get_customer(session, body.customer_id)
    else:
        customer = _applicant(session, body, at)
    application = ops.create_application(
        session,
        customer=customer,
        product=product,
        amount=body.amount,
        term_months=body.term_months,
        monthly_income=body.monthly_income,
        employment_type=body.employment_type.value,
        at=at,
        code=ops.new_application_code(session),
        employment_tenure_months=body.employment_tenure_months,
        channel=body.channel,
        phone=body.phone,
        email=body.email,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
    )
    if body.consent is not None:
        ops.record_processing_consent(session, customer, application, body.consent.source, at)
    if body.self_service:
        report = bureau_report(DocumentType(customer.document_type), customer.document_number)
        facts = CreditFacts(
            today=today,
            bureau_rating=report.rating,
            bureau_score=report.score,
            days_past_due=ops.worst_days_past_due(session, customer, today),
        )
        request = CreditRequest(
            product_code=product.code,
            amount=body.amount,
            term_months=body.term_months,
            monthly_income=body.monthly_income,
            employment_type=body.employment_type,
            employment_tenure_months=body.employment_tenure_months or 0,
            date_of_birth=customer.date_of_birth,
        )
        ops.record_evaluation(session, application, pre_evaluate(request, facts, policy), at)
    return application


def _applicant(session: Session, body: ApplicationCreate, at: datetime) -> Customer:
    """The customer with this document, or a new one; a known customer must give their own date of birth."""
    assert body.document_number is not None and body.date_of_birth is not None  # checked by the schema
    customer = ops.find_customer_by_document(session, body.document_type.value, body.document_number)
    if customer is not None:
        if customer.date_of_birth != body.date_of_birth:
            raise ops.Conflict("the details given do not match our records for this document")
        return customer
    if body.phone is None:
        raise ops.Invalid("phone: required to register a new customer")
    return ops.add_customer(
        session,
        Customer(
            document_type=body.document_type.value,
            document_number=body.document_number,
            first_name=body.first_name,
            last_name=body.last_name,
            date_of_birth=body.date_of_birth,
            phone=body.phone,
            email=body.email,
            country=body.country.value,
            created_at=at,
        ),
    )


@router.get(
    "/applications/lookup",
    response_model=List[ApplicationStatusOut],
    tags=["applications"],
    summary="Status look-up for the applicant",
    description=(
        "Give `code` and the owner's `document_number` (that application), or `document_number` and "
        "`date_of_birth` (all of that customer's applications, newest first). `document_type` defaults to DNI. "
        f"Anything that does not match (unknown code, someone else's code, wrong date of birth) is 404 with "
        f"the same body, `{NO_MATCH}`, so the answer never tells whether a code or a customer exists. Income "
        "and internal notes are left out."
    ),
    responses={404: {"model": ErrorOut, "description": "Nothing matches; always the same body."}},
)
def lookup_applications(
    code: Optional[str] = Query(None, max_length=20, description="SOL-XXXXXX; case, spaces and dashes ignored."),
    document_type: DocumentType = DocumentType.DNI,
    document_number: Optional[str] = Query(None, max_length=30),
    date_of_birth: Optional[date] = None,
    session: Session = Depends(get_session),
    policy: CreditPolicy = Depends(get_policy),
) -> List[ApplicationStatusOut]:
    if document_number is None or (code is None and date_of_birth is None):
        raise ops.Invalid("give code and document_number, or document_number and date_of_birth")
    try:
        number = normalise_document(document_type, document_number)
    except InvalidDocument as exc:
        raise ops.Invalid(f"document_number: {exc}") from None
    wanted = None
    if code is not None:
        wanted = ops.normalise_application_code(code)
        if wanted is None:
            raise ops.Invalid("code: an application code looks like SOL-7K3M9Q")
    customer = ops.find_customer_by_document(session, document_type.value, number)
    matches: List[CreditApplication] = []
    if customer is not None and (date_of_birth is None or date_of_birth == customer.date_of_birth):
        applications = session.execute(
            select(CreditApplication)
            .where(CreditApplication.customer_id == customer.id)
            .order_by(CreditApplication.id.desc())
        ).scalars()
        matches = [application for application in applications if wanted is None or application.code == wanted]
    if not matches:
        raise ops.NotFound(NO_MATCH)
    return [application_status_out(application, policy) for application in matches]


@router.get(
    "/applications/{application_id}",
    response_model=ApplicationOut,
    tags=["applications"],
    summary="Get an application with its status history",
    responses=NOT_FOUND,
)
def get_application(
    application_id: Id, session: Session = Depends(get_session), policy: CreditPolicy = Depends(get_policy)
) -> ApplicationOut:
    return application_out(ops.get_application(session, application_id), policy)


@router.post(
    "/applications/{application_id}/transitions",
    response_model=ApplicationOut,
    tags=["applications"],
    summary="Move an application to another status",
    description=(
        "Allowed: received → in_review | referred | approved | rejected | cancelled; in_review → referred | "
        "approved | rejected | cancelled; referred → approved | rejected | cancelled; approved → disbursed | "
        "cancelled. Rejected, disbursed and cancelled are final. Disbursing books the loan (first installment "
        "a month later)."
    ),
    responses={**NOT_FOUND, 409: {"model": ErrorOut, "description": "Transition not allowed; says why."}},
)
def transition_application(
    application_id: Id,
    body: TransitionIn,
    session: Session = Depends(get_session),
    policy: CreditPolicy = Depends(get_policy),
) -> ApplicationOut:
    application = ops.get_application(session, application_id)
    ops.transition_application(session, application, body.status, body.note, now_lima())
    session.commit()
    return application_out(application, policy)


@router.post(
    "/applications/{application_id}/accept-offer",
    response_model=ApplicationOut,
    tags=["applications"],
    summary="Accept the counter-offer",
    description=(
        "The application takes the offer's amount and term and is approved. Accepting again returns the "
        "same answer; 409 when there is no counter-offer or the application has moved on."
    ),
    responses={**NOT_FOUND, **CONFLICT},
)
def accept_offer(
    application_id: Id, session: Session = Depends(get_session), policy: CreditPolicy = Depends(get_policy)
) -> ApplicationOut:
    application = ops.get_application(session, application_id)
    ops.accept_offer(session, application, now_lima())
    session.commit()
    return application_out(application, policy)


@router.post(
    "/applications/{application_id}/documents",
    response_model=DocumentsOut,
    status_code=201,
    tags=["applications"],
    summary="Record a document the customer sent",
    description=(
        "`kind` is one of the product's required documents; the file is where `media_url` or the channel's "
        "`media_id` says (give one). A kind may be sent more than once (both sides of an ID). The answer is "
        "what has been received and what is still missing. 409 once the application is rejected, cancelled "
        "or disbursed."
    ),
    responses={**NOT_FOUND, **CONFLICT},
)
def add_document(
    application_id: Id,
    body: DocumentIn,
    session: Session = Depends(get_session),
    policy: CreditPolicy = Depends(get_policy),
) -> DocumentsOut:
    application = ops.get_application(session, application_id)
    try:
        rules = policy.product(application.product_code)
    except UnknownProduct:
        raise ops.Conflict(f"product {application.product_code} is not offered any more") from None
    media_url = str(body.media_url) if body.media_url is not None else None
    ops.add_document(
        session, application, rules, body.kind, body.filename, body.content_type, media_url, body.media_id,
        now_lima(),
    )
    session.commit()
    return documents_out(application, policy)


@router.get(
    "/applications/{application_id}/documents",
    response_model=DocumentsOut,
    tags=["applications"],
    summary="Documents received and missing",
    responses=NOT_FOUND,
)
def list_documents(
    application_id: Id, session: Session = Depends(get_session), policy: CreditPolicy = Depends(get_policy)
) -> DocumentsOut:
    return documents_out(ops.get_application(session, application_id), policy)


# --- loans -------------------------------------------------------------------------------------------------


@router.get(
    "/customers/{customer_id}/loans",
    response_model=List[LoanOut],
    tags=["loans"],
    summary="A customer's loans with their delinquency today",
    responses=NOT_FOUND,
)
def customer_loans(customer_id: Id, session: Session = Depends(get_session)) -> List[LoanOut]:
    customer = ops.get_customer(session, customer_id)
    today = today_lima()
    return [loan_out(session, loan, today) for loan in ops.loans_of(session, customer)]


@router.get(
    "/loans/{loan_id}",
    response_model=LoanDetailOut,
    tags=["loans"],
    summary="Get a loan with its installments",
    responses=NOT_FOUND,
)
def get_loan(loan_id: Id, session: Session = Depends(get_session)) -> LoanDetailOut:
    return loan_out(session, ops.get_loan(session, loan_id), today_lima(), with_installments=True)


# --- payments ----------------------------------------------------------------------------------------------


@router.get(
    "/loans/{loan_id}/payments",
    response_model=List[PaymentRecordOut],
    tags=["payments"],
    summary="Payments applied to a loan",
    responses=NOT_FOUND,
)
def list_payments(loan_id: Id, session: Session = Depends(get_session)) -> List[PaymentRecordOut]:
    loan = ops.get_loan(session, loan_id)
    return [PaymentRecordOut(**payment_fields(payment)) for payment in ops.loan_payments(session, loan)]


@router.post(
    "/loans/{loan_id}/payments",
    response_model=PaymentOut,
    status_code=201,
    tags=["payments"],
    summary="Apply a payment to a loan, exactly once per external_id",
    description=(
        "Applied to the oldest installments first; within one, late interest, then interest, then principal. "
        "201 when applied; 200 with `duplicate: true` when this `external_id` was already applied (the same "
        "loan and amount); 409 when it was used for another payment or the loan is paid off; 422 for an "
        "amount that is not positive, has more than 2 decimals or exceeds the outstanding balance."
    ),
    responses={200: {"model": PaymentOut, "description": "Duplicate: already applied."}, **NOT_FOUND, **CONFLICT},
)
def pay_loan(
    loan_id: Id, body: PaymentIn, response: Response, session: Session = Depends(get_session)
) -> PaymentOut:
    loan = ops.get_loan(session, loan_id)
    today = today_lima()
    result = ops.record_payment(
        session, loan, body.amount, body.external_id, body.channel, PaymentSource.API, now_lima(), today
    )
    if result.duplicate:
        response.status_code = 200
    return PaymentOut(
        **payment_fields(result.payment), duplicate=result.duplicate, loan=loan_out(session, loan, today)
    )


@router.post(
    "/webhooks/payments",
    response_model=WebhookResult,
    tags=["payments"],
    summary="Receive payment.completed from the payments service",
    description=(
        f"The raw body must be signed in the `{SIGNATURE_HEADER}` header (`t=<unix>,v1=<hex HMAC-SHA256 of "
        "\"<t>.<body>\">`, 5-minute tolerance) with the shared webhook secret. Applied exactly once per "
        "`payment_id`: `applied` the first time, `duplicate` afterwards. Without `loan_id` the payment goes to "
        "the customer's most overdue active loan. Other events are acknowledged as `ignored`."
    ),
    responses={
        400: {"model": ErrorOut, "description": "Body is not JSON."},
        401: {"model": ErrorOut, "description": "Signature missing, malformed, stale or wrong."},
        **NOT_FOUND,
        **CONFLICT,
    },
)
async def payment_webhook(request: Request) -> WebhookResult:
    body = await request.body()
    try:
        verify(request.app.state.webhook_secret, request.headers.get(SIGNATURE_HEADER), body)
    except SignatureError as exc:
        raise HTTPException(status_code=401, detail=f"invalid signature: {exc}") from None
    try:
        payload = json.loads(body)
    except ValueError:
        raise HTTPException(status_code=400, detail="body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise HTTPException(status_code=400, detail="body must be a JSON object")
    if payload.get("event") != PAYMENT_COMPLETED and isinstance(payload.get("event"), str):
        return WebhookResult(status="ignored", payment_id=None, loan_id=None)
    try:
        event = PaymentWebhook.parse_obj(payload)
    except ValidationError as exc:
        return _invalid(422, exc.errors())
    return await run_in_threadpool(_apply_webhook, request.app.state.sessions, event)


def _apply_webhook(sessions: sessionmaker, event: PaymentWebhook) -> WebhookResult:
    with sessions() as session:
        existing = ops.find_payment(session, event.payment_id)
        if existing is not None:
            return WebhookResult(status="duplicate", payment_id=event.payment_id, loan_id=existing.loan_id)
        customer = ops.get_customer(session, event.customer_id)
        today = today_lima()
        if event.loan_id is None:
            loan = ops.loan_for_unassigned_payment(session, customer, today)
        else:
            loan = ops.get_loan(session, event.loan_id)
            if loan.customer_id != customer.id:
                raise ops.Conflict(f"loan {loan.id} does not belong to customer {customer.id}")
        if event.currency != loan.currency:
            raise ops.Invalid(f"currency {event.currency} does not match the loan's {loan.currency}")
        result = ops.record_payment(
            session,
            loan,
            event.amount,
            event.payment_id,
            WEBHOOK_CHANNEL,
            PaymentSource.WEBHOOK,
            event.paid_at,
            today,
            reference=event.reference,
        )
        return WebhookResult(
            status="duplicate" if result.duplicate else "applied", payment_id=event.payment_id, loan_id=loan.id
        )


# --- identity ----------------------------------------------------------------------------------------------


@router.post(
    "/identity/codes",
    response_model=CodeChallengeOut,
    status_code=202,
    tags=["identity"],
    summary="Send a one-time code to the phone on file",
    description=(
        "A code of the policy's length, valid for the policy's minutes and once, goes by SMS to the phone of the "
        "customer with this document (mock: `GET /mock/sms`). The answer is the same whether or not the document "
        "belongs to a customer, so it never tells who is one. 422 for a malformed document."
    ),
)
def send_code(
    body: CodeRequestIn,
    session: Session = Depends(get_session),
    collections: CollectionsPolicy = Depends(get_collections_policy),
) -> CodeChallengeOut:
    challenge = ops.send_code(
        session, collections.verification, body.document_type.value, body.document_number, now_lima()
    )
    session.commit()
    return CodeChallengeOut(challenge_id=challenge.id, expires_at=challenge.expires_at, message=CODE_SENT)


@router.post(
    "/identity/verifications",
    response_model=VerificationOut,
    tags=["identity"],
    summary="Verify a customer by date of birth or one-time code",
    description=(
        "Give the document and one factor: `birth_date`, or `challenge_id` with `code` (422 otherwise). "
        "Failures are counted per document, registered or not, and an unknown document gets exactly the answer "
        "of a wrong factor. After the policy's `max_failures` failures in a row the document is locked for "
        "`lock_minutes`: `verified` is false even with the right factor and `locked_until` says until when. "
        "Success resets the count and uses the code up; an expired or used code is a failure."
    ),
)
def verify_identity(
    body: VerificationIn,
    session: Session = Depends(get_session),
    collections: CollectionsPolicy = Depends(get_collections_policy),
) -> VerificationOut:
    result = ops.verify_identity(
        session,
        collections.verification,
        body.document_type.value,
        body.document_number,
        now_lima(),
        birth_date=body.birth_date,
        challenge_id=body.challenge_id,
        code=body.code,
    )
    session.commit()
    customer = result.customer
    return VerificationOut(
        verified=result.verified,
        customer_id=customer.id if customer else None,
        first_name=customer.first_name if customer else None,
        attempts_left=result.attempts_left,
        locked_until=result.locked_until,
    )


@router.get(
    "/mock/sms",
    response_model=List[SmsOut],
    tags=["identity"],
    summary="Mock only: SMS sent to a phone or a customer's document",
    description=(
        "The mock's stand-in for an SMS gateway, so tests and demos can read one-time codes; a real core banking "
        "has no such endpoint. Give `phone` (E.164 or Peruvian national) or `document_number` (with "
        "`document_type` it is validated; without, matched across types). Newest first."
    ),
    responses={422: {"model": ErrorOut, "description": "No filter, or an invalid document or phone."}},
)
def sms_outbox(
    phone: Optional[str] = Query(None, max_length=30),
    document_type: Optional[DocumentType] = None,
    document_number: Optional[str] = Query(None, max_length=30),
    session: Session = Depends(get_session),
) -> List[SmsOut]:
    if phone is None and document_number is None:
        raise ops.Invalid("give phone or document_number")
    query = select(SmsMessage)
    if phone is not None:
        query = query.where(SmsMessage.to == _e164(phone))
    if document_number is not None:
        query = query.where(SmsMessage.customer_id.in_(_customers_with_document(document_type, document_number)))
    messages = session.execute(query.order_by(SmsMessage.sent_at.desc(), SmsMessage.id.desc())).scalars()
    return [SmsOut.from_orm(message) for message in messages]


def _e164(phone: str) -> str:
    try:
        parsed = phonenumbers.parse(phone, "PE")
    except phonenumbers.NumberParseException:
        raise ops.Invalid("phone is not a phone number") from None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _customers_with_document(document_type: Optional[DocumentType], document_number: str) -> Any:
    """Ids of the customers with this document: validated with a type, the compact number across types without."""
    if document_type is None:
        return select(Customer.id).where(Customer.document_number == compact(document_number))
    try:
        number = normalise_document(document_type, document_number)
    except InvalidDocument as exc:
        raise ops.Invalid(f"document_number: {exc}") from None
    return select(Customer.id).where(
        Customer.document_type == document_type.value, Customer.document_number == number
    )


# --- collections -------------------------------------------------------------------------------------------


@router.post(
    "/loans/{loan_id}/plan-offers",
    response_model=PlanOffersOut,
    status_code=201,
    tags=["collections"],
    summary="Offer payment plans within the collections policy",
    description=(
        "On the loan's total overdue today (installments + late interest), by its days-past-due bucket: at most 3 "
        "offers, a settlement (one payment today with the bucket's discount, when it has one) and the bucket's "
        "offered plans (minimum down payment today, equal monthly installments rounded up, the last adjusted). "
        "With `monthly_amount`, the one plan with the fewest installments that fits it, or `feasible: false` with "
        "`reason` below_minimum_installment or exceeds_max_installments (and `required_installments`). Also "
        "`feasible: false` without offers for nothing_overdue, collections_hold (an open dispute) and "
        "plan_active. Offers are stored with an id to accept them by; `needs_approval` says that accepting books "
        "a plan waiting for a person's approval."
    ),
    responses=NOT_FOUND,
)
def create_plan_offers(
    loan_id: Id,
    body: PlanOffersIn,
    session: Session = Depends(get_session),
    collections: CollectionsPolicy = Depends(get_collections_policy),
) -> PlanOffersOut:
    loan = ops.get_loan(session, loan_id)
    today = today_lima()
    result = ops.offer_plans(session, loan, collections, body.monthly_amount, body.channel, today, now_lima())
    session.commit()
    return PlanOffersOut(
        loan_id=loan.id,
        bucket=result.bucket,
        debt=result.debt,
        currency=loan.currency,
        feasible=result.feasible,
        reason=result.reason,
        required_installments=result.required_installments,
        max_installments=result.max_installments,
        needs_approval=result.needs_approval,
        offers=[plan_offer_out(offer, today) for offer in result.offers],
    )


@router.get(
    "/plan-offers/{offer_id}",
    response_model=PlanOfferOut,
    tags=["collections"],
    summary="Get a plan offer as it was shown",
    description="`status` is offered, accepted, or expired once `valid_until` has passed.",
    responses=NOT_FOUND,
)
def get_plan_offer(offer_id: str = Path(..., max_length=20), session: Session = Depends(get_session)) -> PlanOfferOut:
    return plan_offer_out(ops.get_plan_offer(session, offer_id), today_lima())


@router.post(
    "/plan-offers/{offer_id}/accept",
    response_model=PaymentPlanOut,
    status_code=201,
    tags=["collections"],
    summary="Accept a plan offer: book exactly that plan",
    description=(
        "Books the offer's figures and schedule as a payment plan: `active`, or `pending_approval` when the offer "
        "needs a person's approval. 201 the first time; 200 with the same plan when accepted again. 409 when the "
        "offer has expired, the loan has nothing overdue any more, another offer of the loan was accepted, or "
        "the loan has another plan in force."
    ),
    responses={
        200: {"model": PaymentPlanOut, "description": "Already accepted: the same plan."},
        **NOT_FOUND,
        **CONFLICT,
    },
)
def accept_plan_offer(
    body: AcceptOfferIn,
    response: Response,
    offer_id: str = Path(..., max_length=20),
    session: Session = Depends(get_session),
) -> PaymentPlanOut:
    offer = ops.get_plan_offer(session, offer_id)
    plan, created = ops.accept_plan_offer(session, offer, body.channel, today_lima(), now_lima())
    session.commit()
    if not created:
        response.status_code = 200
    return PaymentPlanOut.from_orm(plan)


@router.get(
    "/loans/{loan_id}/payment-plans",
    response_model=List[PaymentPlanOut],
    tags=["collections"],
    summary="Payment plans agreed on a loan",
    responses=NOT_FOUND,
)
def list_payment_plans(loan_id: Id, session: Session = Depends(get_session)) -> List[PaymentPlanOut]:
    ops.get_loan(session, loan_id)
    plans = session.execute(select(PaymentPlan).where(PaymentPlan.loan_id == loan_id).order_by(PaymentPlan.id))
    return [PaymentPlanOut.from_orm(plan) for plan in plans.scalars()]


@router.post(
    "/loans/{loan_id}/payment-plans",
    response_model=PaymentPlanOut,
    status_code=201,
    tags=["collections"],
    summary="Record a plan an agent agreed and approved",
    description=(
        "For agents recording an approved plan, outside the offers the assistant makes (those are booked with "
        "`POST /plan-offers/{offer_id}/accept`). Spreads the overdue debt (installments + late interest), less "
        "discount and down payment (due today), over 1–36 equal monthly installments rounded up to the cent, the "
        "last adjusted. 409 when nothing is overdue or the loan has a plan in force or waiting for approval; 422 "
        "when discount plus down payment reach the debt or the first due date is past or beyond 60 days."
    ),
    responses={**NOT_FOUND, **CONFLICT},
)
def create_payment_plan(
    loan_id: Id, body: PaymentPlanIn, session: Session = Depends(get_session)
) -> PaymentPlanOut:
    plan = ops.create_payment_plan(
        session,
        ops.get_loan(session, loan_id),
        body.installments_count,
        body.down_payment,
        body.discount,
        body.first_due_date,
        today_lima(),
        now_lima(),
    )
    session.commit()
    return PaymentPlanOut.from_orm(plan)


@router.get(
    "/loans/{loan_id}/promises",
    response_model=List[PromiseOut],
    tags=["collections"],
    summary="Promises to pay on a loan, with pending ones settled as kept or broken",
    responses=NOT_FOUND,
)
def list_promises(loan_id: Id, session: Session = Depends(get_session)) -> List[PromiseOut]:
    loan = ops.get_loan(session, loan_id)
    promises = ops.refresh_promises(session, loan, today_lima(), now_lima())
    session.commit()
    return [PromiseOut.from_orm(promise) for promise in promises]


@router.get(
    "/promises",
    response_model=List[PromiseOut],
    tags=["collections"],
    summary="Promises to pay made in a period, with pending ones settled as kept or broken",
    description=(
        "For promise-kept rates: the promises made from `from` to `to` (days in America/Lima, inclusive), on "
        "`channel` when given, oldest first. Every pending promise is settled before the list is read: kept once "
        "payments from the day it was made to its date cover the amount, broken after its date."
    ),
)
def list_all_promises(
    since: Optional[date] = Query(None, alias="from"),
    until: Optional[date] = Query(None, alias="to"),
    channel: Optional[str] = Query(None, max_length=40),
    session: Session = Depends(get_session),
) -> List[PromiseOut]:
    if since is not None and until is not None and since > until:
        raise ops.Invalid("from is after to")
    promises = ops.promises_made(session, today_lima(), now_lima(), since, until, channel)
    session.commit()
    return [PromiseOut.from_orm(promise) for promise in promises]


@router.get(
    "/loans/{loan_id}/promise-terms",
    response_model=PromiseTermsOut,
    tags=["collections"],
    summary="What a promise to pay on the loan may be today",
    description=(
        "From the collections policy for the loan's bucket: the amount from the bucket's share of the overdue "
        "debt (rounded up) to the outstanding balance, the date from today to the bucket's limit, and the pending "
        "promise if there is one (only one at a time). 409 when nothing is overdue."
    ),
    responses={**NOT_FOUND, **CONFLICT},
)
def get_promise_terms(
    loan_id: Id,
    session: Session = Depends(get_session),
    collections: CollectionsPolicy = Depends(get_collections_policy),
) -> PromiseTermsOut:
    loan = ops.get_loan(session, loan_id)
    today = today_lima()
    terms = ops.promise_terms(loan, collections, today)
    pending = ops.pending_promise(session, loan, today, now_lima())
    session.commit()
    return PromiseTermsOut(
        bucket=terms.bucket,
        min_amount=terms.min_amount,
        max_amount=terms.max_amount,
        suggested_amount=terms.suggested_amount,
        earliest_date=terms.earliest_date,
        latest_date=terms.latest_date,
        pending_promise=PromiseOut.from_orm(pending) if pending else None,
    )


@router.post(
    "/loans/{loan_id}/promises",
    response_model=PromiseOut,
    status_code=201,
    tags=["collections"],
    summary="Record a promise to pay",
    description=(
        "Within `GET /loans/{loan_id}/promise-terms` (the collections policy for the loan's bucket); 422 says "
        "the allowed amounts and dates. 409 when nothing is overdue or a promise is pending (one at a time). "
        "Kept when payments from the day it was made to its date cover the amount, broken after its date."
    ),
    responses={**NOT_FOUND, **CONFLICT},
)
def create_promise(
    loan_id: Id,
    body: PromiseIn,
    session: Session = Depends(get_session),
    collections: CollectionsPolicy = Depends(get_collections_policy),
) -> PromiseOut:
    loan = ops.get_loan(session, loan_id)
    today = today_lima()
    terms = ops.promise_terms(loan, collections, today)
    promise = ops.create_promise(
        session, loan, body.amount, body.promised_date, today, now_lima(), channel=body.channel, terms=terms
    )
    session.commit()
    return PromiseOut.from_orm(promise)


@router.post(
    "/cases",
    response_model=CaseOut,
    status_code=201,
    tags=["collections"],
    summary="Open a case for a person",
    description=(
        "Kinds: dispute, hardship, payment_claim, plan_approval, legal, negotiation, verification. A `loan_id` "
        "must be a loan of `customer_id` (409 otherwise) and fills it when absent. An open dispute on a loan "
        "sets its `collections_hold` until the case is closed. `details` is at most 8 KB of JSON and there are "
        "at most 5 attachments. With an `Idempotency-Key` header, a retry with the same key returns the same "
        "case with 200."
    ),
    responses={
        200: {"model": CaseOut, "description": "Replay of the case opened with this key."},
        **NOT_FOUND,
        **CONFLICT,
    },
)
def open_case(
    body: CaseIn,
    response: Response,
    idempotency_key: Optional[str] = Header(
        None, alias="Idempotency-Key", min_length=1, max_length=255, description="Unique per intended case."
    ),
    session: Session = Depends(get_session),
) -> CaseOut:
    if idempotency_key is not None:
        existing = ops.find_case_by_key(session, idempotency_key)
        if existing is not None:
            response.status_code = 200
            return CaseOut.from_orm(existing)
    try:
        case = ops.open_case(
            session,
            kind=body.kind,
            customer_id=body.customer_id,
            loan_id=body.loan_id,
            channel=body.channel,
            conversation_id=body.conversation_id,
            priority=body.priority.value,
            summary=body.summary,
            details=body.details,
            attachments=[attachment.dict() for attachment in body.attachments],
            idempotency_key=idempotency_key,
            at=now_lima(),
        )
        session.commit()
    except IntegrityError:
        # A concurrent retry with the same key won the race: answer with its case.
        session.rollback()
        existing = ops.find_case_by_key(session, idempotency_key) if idempotency_key is not None else None
        if existing is None:
            raise
        response.status_code = 200
        return CaseOut.from_orm(existing)
    return CaseOut.from_orm(case)


@router.get(
    "/cases",
    response_model=List[CaseOut],
    tags=["collections"],
    summary="Cases, newest first, by customer and status",
)
def list_cases(
    customer_id: Optional[Id] = None,
    status: Optional[CaseStatus] = None,
    session: Session = Depends(get_session),
) -> List[CaseOut]:
    query = select(Case)
    if customer_id is not None:
        query = query.where(Case.customer_id == customer_id)
    if status is not None:
        query = query.where(Case.status == status.value)
    return [CaseOut.from_orm(case) for case in session.execute(query.order_by(Case.id.desc())).scalars()]


@router.get("/cases/{case_id}", response_model=CaseOut, tags=["collections"], summary="Get a case", responses=NOT_FOUND)
def get_case(case_id: Id, session: Session = Depends(get_session)) -> CaseOut:
    return CaseOut.from_orm(ops.get_case(session, case_id))


@router.post(
    "/cases/{case_id}/close",
    response_model=CaseOut,
    tags=["collections"],
    summary="Close a case with its outcome",
    description=(
        "Releases a dispute's collections hold. Closing again with the same outcome returns the case; with "
        "another outcome it is 409."
    ),
    responses={**NOT_FOUND, **CONFLICT},
)
def close_case(case_id: Id, body: CaseCloseIn, session: Session = Depends(get_session)) -> CaseOut:
    case = ops.close_case(session, ops.get_case(session, case_id), body.outcome, now_lima())
    session.commit()
    return CaseOut.from_orm(case)


# --- bureau ------------------------------------------------------------------------------------------------


@router.get(
    "/bureau/{document_type}/{document_number}",
    response_model=BureauOut,
    tags=["bureau"],
    summary="Credit bureau report for a document (mock, deterministic)",
    responses={422: {"model": ErrorOut, "description": "Invalid document."}},
)
def get_bureau_report(
    document_type: DocumentType, document_number: str = Path(..., max_length=30)
) -> BureauOut:
    try:
        number = normalise_document(document_type, document_number)
    except InvalidDocument as exc:
        raise ops.Invalid(str(exc)) from None
    report = bureau_report(document_type, number)
    return BureauOut(
        document_type=report.document_type,
        document_number=report.document_number,
        rating=report.rating,
        score=report.score,
        total_debt=report.total_debt,
        lenders_count=report.lenders_count,
        max_days_past_due=report.max_days_past_due,
    )


# --- application -------------------------------------------------------------------------------------------


def _describe(error: Dict[str, Any]) -> str:
    if error.get("type") == "json_invalid":
        return f"body is not valid JSON ({error.get('ctx', {}).get('error', 'syntax error')})"
    where = ".".join(str(part) for part in error.get("loc", ()) if part not in ("body", "__root__"))
    return f"{where}: {error['msg']}" if where else str(error["msg"])


def _invalid(status_code: int, errors: List[Dict[str, Any]]) -> JSONResponse:
    """One readable ``detail`` plus the per-field list, the same shape as the payments service."""
    return JSONResponse(
        status_code=status_code,
        content={"detail": "; ".join(_describe(e) for e in errors), "errors": jsonable_encoder(errors)},
    )


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    """422 for invalid values; 400 when the body is not JSON at all."""
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    return _invalid(400 if any(e.get("type") == "json_invalid" for e in errors) else 422, errors)


async def _operation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ops.OperationError)
    return JSONResponse(status_code=exc.status_code, content={"detail": exc.message})


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(status_code=500, content={"detail": "internal error; the request was not completed"})


def create_app(
    database_url: str,
    webhook_secret: str,
    policy: Optional[CreditPolicy] = None,
    collections_policy: Optional[CollectionsPolicy] = None,
) -> FastAPI:
    """Build the app on a database, a credit policy and a collections policy (default: the policy files).

    Tables are created if missing and the products made to match the policy; seeding is ``__main__``'s job.
    """
    policy = policy or load_policy()
    collections_policy = collections_policy or load_collections_policy()
    engine = make_engine(database_url)
    Base.metadata.create_all(engine)
    with make_session_factory(engine)() as session:
        ops.sync_products(session, policy)
        session.commit()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            engine.dispose()  # closes SQLite connections so the WAL is checkpointed on shutdown

    app = FastAPI(
        title="Credia core banking (mock)",
        version="1.0.0",
        # Swagger UI and ReDoc load their assets from a CDN; the description is served as /openapi.json.
        docs_url=None,
        redoc_url=None,
        description=(
            "Stand-in for a lender's core banking system. Money and rates are decimal strings; dates are "
            "ISO 8601; days past due and late interest are computed for today in America/Lima. Errors carry "
            "a `detail` sentence: 400 body not JSON, 404 unknown id, 409 state conflict, 422 invalid values "
            "(with the per-field `errors`)."
        ),
        openapi_tags=TAGS,
        lifespan=lifespan,
    )
    app.state.sessions = make_session_factory(engine)
    app.state.webhook_secret = webhook_secret
    app.state.policy = policy
    app.state.collections_policy = collections_policy
    app.include_router(fixed)
    app.include_router(router)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ops.OperationError, _operation_error)
    app.add_exception_handler(Exception, _unexpected_error)
    return app
