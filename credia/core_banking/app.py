"""HTTP API of the core-banking mock.

It speaks English to integrators (errors carry a ``detail`` sentence) and keeps Spanish for what customers
read (product names and requirements). Figures that depend on the day (days past due, late interest) are
computed for "today in America/Lima" on every request.
"""

from __future__ import annotations

import json
import logging
from datetime import date, datetime
from decimal import Decimal
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Dict, Iterator, List, Optional

import phonenumbers
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy import select, text
from sqlalchemy.orm import Session, selectinload, sessionmaker

from credia.core_banking import operations as ops
from credia.core_banking.bureau import bureau_report
from credia.core_banking.documents import InvalidDocument, compact, normalise_document
from credia.core_banking.loans import LIMA, installment_status, late_interest_due, today_lima
from credia.core_banking.models import (
    Base,
    ConsentChannel,
    CreditApplication,
    CreditProduct,
    Customer,
    DocumentType,
    Loan,
    Payment,
    PaymentPlan,
    PaymentSource,
)
from credia.core_banking.schemas import (
    AllocationOut,
    ApplicationCreate,
    ApplicationOut,
    BureauOut,
    ConsentEventOut,
    ConsentsOut,
    ConsentStateOut,
    ConsentUpdate,
    CustomerCreate,
    CustomerOut,
    ErrorOut,
    HealthOut,
    Id,
    InstallmentOut,
    LoanDetailOut,
    LoanOut,
    PaymentIn,
    PaymentOut,
    PaymentPlanIn,
    PaymentPlanOut,
    PaymentRecordOut,
    PaymentWebhook,
    ProductOut,
    PromiseIn,
    PromiseOut,
    StatusEventOut,
    TransitionIn,
    WebhookResult,
)
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
    {"name": "collections", "description": "Payment plans and promises to pay."},
    {"name": "bureau", "description": "Mock credit bureau, deterministic per document."},
]
NOT_FOUND = {404: {"model": ErrorOut, "description": "Unknown id."}}
CONFLICT = {409: {"model": ErrorOut, "description": "The resource's state does not allow it."}}

# Routes without inputs live on ``fixed``, so the OpenAPI description lists 422 only where it can happen.
fixed = APIRouter()
router = APIRouter(
    responses={422: {"model": ErrorOut, "description": "Invalid values: `detail` says which, `errors` per field."}}
)


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


def now_lima() -> datetime:
    return datetime.now(LIMA)


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


def application_out(application: CreditApplication) -> ApplicationOut:
    installment = ops.application_installment(application)
    return ApplicationOut(
        id=application.id,
        customer_id=application.customer_id,
        product_code=application.product_code,
        product_name=application.product.name,
        amount=application.amount,
        term_months=application.term_months,
        monthly_income=application.monthly_income,
        employment_type=application.employment_type,
        status=application.status,
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


def loan_out(loan: Loan, as_of: date, with_installments: bool = False) -> LoanOut:
    state = ops.position(loan, as_of)
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
def list_products(session: Session = Depends(get_session)) -> List[ProductOut]:
    products = session.execute(
        select(CreditProduct).where(CreditProduct.active.is_(True)).order_by(CreditProduct.min_amount)
    ).scalars()
    return [ProductOut.from_orm(product) for product in products]


@router.get(
    "/products/{code}", response_model=ProductOut, tags=["products"], summary="Get a product", responses=NOT_FOUND
)
def get_product(code: str = Path(..., max_length=20), session: Session = Depends(get_session)) -> ProductOut:
    return ProductOut.from_orm(ops.get_product(session, code))


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


# --- applications ------------------------------------------------------------------------------------------


@router.get(
    "/customers/{customer_id}/applications",
    response_model=List[ApplicationOut],
    tags=["applications"],
    summary="A customer's credit applications",
    responses=NOT_FOUND,
)
def customer_applications(customer_id: Id, session: Session = Depends(get_session)) -> List[ApplicationOut]:
    ops.get_customer(session, customer_id)
    applications = session.execute(
        select(CreditApplication).where(CreditApplication.customer_id == customer_id).order_by(CreditApplication.id)
    ).scalars()
    return [application_out(application) for application in applications]


@router.post(
    "/applications",
    response_model=ApplicationOut,
    status_code=201,
    tags=["applications"],
    summary="Submit a credit application",
    description=(
        "Amount and term must be within the product's limits (422 otherwise). A customer may have one open "
        "application per product (409). The answer includes the monthly installment at the product's TEA."
    ),
    responses={**NOT_FOUND, **CONFLICT},
)
def create_application(body: ApplicationCreate, session: Session = Depends(get_session)) -> ApplicationOut:
    application = ops.create_application(
        session,
        customer=ops.get_customer(session, body.customer_id),
        product=ops.get_product(session, body.product_code),
        amount=body.amount,
        term_months=body.term_months,
        monthly_income=body.monthly_income,
        employment_type=body.employment_type.value,
        at=now_lima(),
    )
    session.commit()
    return application_out(application)


@router.get(
    "/applications/{application_id}",
    response_model=ApplicationOut,
    tags=["applications"],
    summary="Get an application with its status history",
    responses=NOT_FOUND,
)
def get_application(application_id: Id, session: Session = Depends(get_session)) -> ApplicationOut:
    return application_out(ops.get_application(session, application_id))


@router.post(
    "/applications/{application_id}/transitions",
    response_model=ApplicationOut,
    tags=["applications"],
    summary="Move an application to another status",
    description=(
        "Allowed: received → in_review | cancelled; in_review → referred | approved | rejected | cancelled; "
        "referred → approved | rejected | cancelled; approved → disbursed | cancelled. Rejected, disbursed and "
        "cancelled are final. Disbursing books the loan (first installment a month later)."
    ),
    responses={**NOT_FOUND, 409: {"model": ErrorOut, "description": "Transition not allowed; says why."}},
)
def transition_application(
    application_id: Id, body: TransitionIn, session: Session = Depends(get_session)
) -> ApplicationOut:
    application = ops.get_application(session, application_id)
    ops.transition_application(session, application, body.status, body.note, now_lima())
    session.commit()
    return application_out(application)


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
    return [loan_out(loan, today) for loan in ops.loans_of(session, customer)]


@router.get(
    "/loans/{loan_id}",
    response_model=LoanDetailOut,
    tags=["loans"],
    summary="Get a loan with its installments",
    responses=NOT_FOUND,
)
def get_loan(loan_id: Id, session: Session = Depends(get_session)) -> LoanDetailOut:
    return loan_out(ops.get_loan(session, loan_id), today_lima(), with_installments=True)


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
    return PaymentOut(**payment_fields(result.payment), duplicate=result.duplicate, loan=loan_out(loan, today))


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


# --- collections -------------------------------------------------------------------------------------------


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
    summary="Agree a payment plan for the overdue debt",
    description=(
        "Spreads the overdue debt (installments + late interest), less discount and down payment, over 1–36 "
        "equal monthly installments (rounded up to the cent). 409 when nothing is overdue or a plan is active; "
        "422 when discount plus down payment reach the debt or the first due date is past or beyond 60 days. "
        "The lender's negotiation policy is checked by the assistant before calling."
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


@router.post(
    "/loans/{loan_id}/promises",
    response_model=PromiseOut,
    status_code=201,
    tags=["collections"],
    summary="Record a promise to pay",
    description=(
        "Amount positive and at most the outstanding balance; date from today to 30 days ahead (America/Lima). "
        "Kept when payments from the day it was made to its date cover the amount. One pending promise per loan."
    ),
    responses={**NOT_FOUND, **CONFLICT},
)
def create_promise(loan_id: Id, body: PromiseIn, session: Session = Depends(get_session)) -> PromiseOut:
    promise = ops.create_promise(
        session, ops.get_loan(session, loan_id), body.amount, body.promised_date, today_lima(), now_lima()
    )
    session.commit()
    return PromiseOut.from_orm(promise)


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


def create_app(database_url: str, webhook_secret: str) -> FastAPI:
    """Build the app on a database (tables are created if missing; seeding is ``__main__``'s job)."""
    engine = make_engine(database_url)
    Base.metadata.create_all(engine)

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
    app.include_router(fixed)
    app.include_router(router)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ops.OperationError, _operation_error)
    app.add_exception_handler(Exception, _unexpected_error)
    return app
