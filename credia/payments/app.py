"""HTTP API of the mock payments provider: idempotent payment links, a demo checkout page, webhook outbox.

The API speaks English to integrators; the checkout page speaks Spanish to customers.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import json
import secrets
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, AsyncIterator, Dict, List, Optional, Sequence, Tuple
from zoneinfo import ZoneInfo

from babel.numbers import format_currency
from fastapi import APIRouter, FastAPI, Header, HTTPException, Path, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from sqlalchemy import select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from credia import settings
from credia.db import make_engine, make_session_factory, utcnow
from credia.payments.models import Base, DeliveryStatus, LinkStatus, Notification, PaymentLink
from credia.payments.notifier import PAYMENT_COMPLETED, NotifierSettings, WebhookNotifier, completed_payload
from credia.payments.schemas import (
    CURRENCIES,
    ErrorOut,
    HealthOut,
    LinkCreate,
    LinkOut,
    NotificationOut,
    format_amount,
)

LINK_ID_PREFIX = "lnk_"
PAYMENT_ID_PREFIX = "pay_"
LinkId = Path(..., description="Payment link id.")

# Locale for amounts and time zone for dates on the checkout page, per currency.
CHECKOUT_LOCALE = {
    "PEN": ("es_PE", "America/Lima"),
    "USD": ("es_PE", "America/Lima"),
    "MXN": ("es_MX", "America/Mexico_City"),
    "COP": ("es_CO", "America/Bogota"),
    "CLP": ("es_CL", "America/Santiago"),
}


@dataclass(frozen=True)
class PaymentsConfig:
    database_url: str
    public_url: Optional[str]
    notifier: NotifierSettings

    @classmethod
    def from_env(cls) -> PaymentsConfig:
        public_url = settings.env("PAYMENTS_PUBLIC_URL", "").rstrip("/")
        return cls(
            database_url=settings.payments_database_url(),
            public_url=public_url or None,
            notifier=NotifierSettings.from_env(),
        )


@dataclass(frozen=True)
class ServiceState:
    config: PaymentsConfig
    session_factory: sessionmaker
    notifier: WebhookNotifier


class LinkNotFound(Exception):
    pass


class IdempotencyConflict(Exception):
    """The Idempotency-Key was already used for a different request."""


class LinkNotPayable(Exception):
    def __init__(self, link_id: str, status: LinkStatus) -> None:
        super().__init__(f"link {link_id} is {status.value}")
        self.status = status


# --- operations -------------------------------------------------------------------------------------------


def _request_hash(body: LinkCreate) -> str:
    """Fingerprint of the normalised request, so "150" and "150.00" count as the same retry."""
    canonical = json.dumps(body.dict(), sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _find_by_key(session_factory: sessionmaker, key: str) -> Optional[PaymentLink]:
    with session_factory() as session:
        return session.execute(select(PaymentLink).where(PaymentLink.idempotency_key == key)).scalar_one_or_none()


def _replay(existing: PaymentLink, request_hash: str) -> Tuple[PaymentLink, bool]:
    if existing.request_hash != request_hash:
        raise IdempotencyConflict(existing.idempotency_key)
    return existing, False


def create_link(
    session_factory: sessionmaker, body: LinkCreate, key: str, public_base: str
) -> Tuple[PaymentLink, bool]:
    """Return ``(link, created)``; a retry with the same key and body gets the first link back.

    The unique key decides races: the insert opens its own transaction (no read before it, which SQLite would
    refuse to upgrade under contention) and a loser re-reads the winner's row.
    """
    request_hash = _request_hash(body)
    existing = _find_by_key(session_factory, key)
    if existing is not None:
        return _replay(existing, request_hash)
    now = utcnow()
    link_id = LINK_ID_PREFIX + secrets.token_hex(12)
    link = PaymentLink(
        id=link_id,
        idempotency_key=key,
        request_hash=request_hash,
        url=f"{public_base}/pay/{link_id}",
        amount=body.amount,
        currency=body.currency,
        reference=body.reference,
        customer_id=body.customer_id,
        loan_id=body.loan_id,
        description=body.description,
        link_metadata=body.metadata,
        status=LinkStatus.PENDING.value,
        expires_at=now + timedelta(minutes=body.expires_in_minutes),
        created_at=now,
    )
    try:
        with session_factory() as session, session.begin():
            session.add(link)
    except IntegrityError:
        existing = _find_by_key(session_factory, key)
        if existing is None:
            raise
        return _replay(existing, request_hash)
    return link, True


def get_link(session_factory: sessionmaker, link_id: str) -> PaymentLink:
    with session_factory() as session:
        link = session.get(PaymentLink, link_id)
    if link is None:
        raise LinkNotFound(link_id)
    return link


def complete_link(session_factory: sessionmaker, link_id: str, targets: Sequence[str]) -> PaymentLink:
    """Mark a pending link paid and queue its webhooks in the same transaction (transactional outbox), one per
    target in delivery order.

    The conditional UPDATE makes two simultaneous payments of one link impossible on any database.
    """
    now = utcnow()
    with session_factory() as session, session.begin():
        result = session.execute(
            update(PaymentLink)
            .where(
                PaymentLink.id == link_id,
                PaymentLink.status == LinkStatus.PENDING.value,
                PaymentLink.expires_at > now,
            )
            .values(
                status=LinkStatus.PAID.value,
                paid_at=now,
                payment_id=PAYMENT_ID_PREFIX + secrets.token_hex(12),
            )
            .execution_options(synchronize_session=False)
        )
        link = session.get(PaymentLink, link_id)
        if link is None:
            raise LinkNotFound(link_id)
        if result.rowcount != 1:
            raise LinkNotPayable(link_id, link.status_at(now))
        body = completed_payload(link)
        previous: Optional[Notification] = None
        for target in targets:
            notification = Notification(
                link_id=link.id,
                event=PAYMENT_COMPLETED,
                target=target,
                after_id=previous.id if previous else None,
                payment_id=link.payment_id,
                body=body,
                next_attempt_at=now,
                created_at=now,
            )
            session.add(notification)
            session.flush()
            previous = notification
    return link


def link_out(link: PaymentLink, now: datetime) -> LinkOut:
    return LinkOut(
        id=link.id,
        url=link.url,
        amount=format_amount(link.amount, link.currency),
        currency=link.currency,
        reference=link.reference,
        customer_id=link.customer_id,
        loan_id=link.loan_id,
        description=link.description,
        metadata=link.link_metadata or {},
        status=link.status_at(now),
        payment_id=link.payment_id,
        expires_at=link.expires_at,
        created_at=link.created_at,
        paid_at=link.paid_at,
    )


def notification_out(notification: Notification) -> NotificationOut:
    pending = notification.status == DeliveryStatus.PENDING.value
    return NotificationOut(
        id=notification.id,
        event=notification.event,
        target=notification.target,
        payment_id=notification.payment_id,
        status=notification.status,
        attempts=notification.attempts,
        last_status_code=notification.last_status_code,
        last_error=notification.last_error,
        last_attempt_at=notification.last_attempt_at,
        next_attempt_at=notification.next_attempt_at if pending else None,
        delivered_at=notification.delivered_at,
        created_at=notification.created_at,
    )


# --- JSON API ---------------------------------------------------------------------------------------------

api = APIRouter()
NOT_FOUND = {404: {"model": ErrorOut, "description": "Unknown link id."}}


def _state(request: Request) -> ServiceState:
    return request.app.state.payments


@api.get("/health", response_model=HealthOut, tags=["health"], summary="Liveness and database check")
def health(request: Request) -> HealthOut:
    with _state(request).session_factory() as session:
        session.execute(text("SELECT 1"))
    return HealthOut(status="ok")


@api.post(
    "/links",
    response_model=LinkOut,
    status_code=201,
    tags=["links"],
    summary="Create a payment link (idempotent)",
    description=(
        "Creates a link the customer opens to pay. The `Idempotency-Key` header is required: a retry with the "
        "same key and the same body returns the original link with 200 and never creates a second one; the "
        "same key with a different body is refused with 409. Amounts are decimal strings (numbers accepted) "
        "with at most the currency's minor units and a per-currency maximum."
    ),
    responses={
        200: {"model": LinkOut, "description": "Replay of an earlier request with the same key and body."},
        400: {"model": ErrorOut, "description": "Missing `Idempotency-Key` header or malformed JSON."},
        409: {"model": ErrorOut, "description": "`Idempotency-Key` reused with a different body."},
        422: {"model": ErrorOut, "description": "Invalid field, e.g. amount not positive or too many decimals."},
    },
)
def post_link(
    body: LinkCreate,
    request: Request,
    response: Response,
    idempotency_key: str = Header(
        ..., alias="Idempotency-Key", min_length=1, max_length=255, description="Unique per intended link."
    ),
) -> LinkOut:
    state = _state(request)
    public_base = state.config.public_url or str(request.base_url).rstrip("/")
    try:
        link, created = create_link(state.session_factory, body, idempotency_key, public_base)
    except IdempotencyConflict:
        raise HTTPException(409, "Idempotency-Key was already used with a different request body") from None
    if not created:
        response.status_code = 200
    return link_out(link, utcnow())


@api.get(
    "/links",
    response_model=List[LinkOut],
    tags=["links"],
    summary="Find payment links",
    description="Newest first; lets the assistant reuse a pending link for the same amount instead of a new one.",
)
def list_links(
    request: Request,
    reference: Optional[str] = Query(None, max_length=64),
    customer_id: Optional[str] = Query(None, max_length=64),
    status: Optional[LinkStatus] = Query(None, description="`expired` means pending and past `expires_at`."),
    limit: int = Query(50, ge=1, le=200),
) -> List[LinkOut]:
    now = utcnow()
    query = select(PaymentLink).order_by(PaymentLink.created_at.desc(), PaymentLink.id).limit(limit)
    if reference is not None:
        query = query.where(PaymentLink.reference == reference)
    if customer_id is not None:
        query = query.where(PaymentLink.customer_id == customer_id)
    if status is LinkStatus.PAID:
        query = query.where(PaymentLink.status == LinkStatus.PAID.value)
    elif status is LinkStatus.PENDING:
        query = query.where(PaymentLink.status == LinkStatus.PENDING.value, PaymentLink.expires_at > now)
    elif status is LinkStatus.EXPIRED:
        query = query.where(PaymentLink.status == LinkStatus.PENDING.value, PaymentLink.expires_at <= now)
    with _state(request).session_factory() as session:
        links = session.execute(query).scalars().all()
    return [link_out(link, now) for link in links]


@api.get(
    "/links/{link_id}", response_model=LinkOut, tags=["links"], summary="Get a payment link", responses=NOT_FOUND
)
def read_link(request: Request, link_id: str = LinkId) -> LinkOut:
    try:
        link = get_link(_state(request).session_factory, link_id)
    except LinkNotFound:
        raise HTTPException(404, f"payment link {link_id} not found") from None
    return link_out(link, utcnow())


@api.post(
    "/links/{link_id}/complete",
    response_model=LinkOut,
    tags=["simulation"],
    summary="Simulate the customer paying a link",
    description=(
        "For tests and demos: marks the link paid and queues the signed `payment.completed` webhook to core "
        "banking. A paid or expired link answers 409."
    ),
    responses={**NOT_FOUND, 409: {"model": ErrorOut, "description": "Link already paid or expired."}},
)
def post_complete(request: Request, link_id: str = LinkId) -> LinkOut:
    state = _state(request)
    try:
        link = complete_link(state.session_factory, link_id, state.config.notifier.target_names)
    except LinkNotFound:
        raise HTTPException(404, f"payment link {link_id} not found") from None
    except LinkNotPayable as exc:
        reason = "is already paid" if exc.status is LinkStatus.PAID else "has expired"
        raise HTTPException(409, f"payment link {link_id} {reason}") from None
    state.notifier.wake()
    return link_out(link, utcnow())


@api.get(
    "/links/{link_id}/notifications",
    response_model=List[NotificationOut],
    tags=["notifications"],
    summary="Webhook deliveries of a link",
    description="Attempts, last error and delivery time of each webhook the link produced, oldest first.",
    responses=NOT_FOUND,
)
def list_notifications(request: Request, link_id: str = LinkId) -> List[NotificationOut]:
    with _state(request).session_factory() as session:
        if session.get(PaymentLink, link_id) is None:
            raise HTTPException(404, f"payment link {link_id} not found")
        rows = session.execute(
            select(Notification).where(Notification.link_id == link_id).order_by(Notification.id)
        ).scalars()
        return [notification_out(row) for row in rows]


# --- checkout page (Spanish, for customers) ---------------------------------------------------------------

PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}

PAGE = """<!doctype html>
<html lang="es">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; background: #f3f5f8; margin: 0; color: #1d2733; }}
main {{ max-width: 26rem; margin: 3rem auto; background: #fff; border-radius: 12px; padding: 2rem;
        box-shadow: 0 2px 12px rgba(0,0,0,.08); }}
h1 {{ font-size: 1.25rem; margin-top: 0; }}
.amount {{ font-size: 2rem; font-weight: 700; margin: .5rem 0 1.5rem; }}
dl {{ display: grid; grid-template-columns: auto 1fr; gap: .4rem 1rem; }}
dt {{ color: #5b6775; }}
dd {{ margin: 0; }}
button {{ width: 100%; padding: .9rem; font-size: 1.1rem; border: 0; border-radius: 8px;
          background: #0b6bcb; color: #fff; cursor: pointer; }}
.notice {{ padding: .8rem 1rem; border-radius: 8px; }}
.paid {{ background: #e4f5e9; }}
.expired, .missing {{ background: #fdecea; }}
footer {{ margin-top: 1.5rem; font-size: .8rem; color: #5b6775; }}
</style>
</head>
<body>
<main>
{content}
<footer>Entorno de demostración: no se realiza ningún cargo real.</footer>
</main>
</body>
</html>
"""


def _money(link: PaymentLink) -> str:
    locale, _ = CHECKOUT_LOCALE[link.currency]
    pattern = "¤ #,##0" if CURRENCIES[link.currency].minor_units == 0 else "¤ #,##0.00"
    return format_currency(link.amount, link.currency, format=pattern, locale=locale, currency_digits=False)


def _local_time(link: PaymentLink, moment: datetime) -> str:
    _, zone = CHECKOUT_LOCALE[link.currency]
    return moment.astimezone(ZoneInfo(zone)).strftime("%d/%m/%Y %H:%M")


def render_checkout(link: PaymentLink, now: datetime) -> str:
    status = link.status_at(now)
    rows = [("Referencia", link.reference)]
    if link.description:
        rows.append(("Concepto", link.description))
    if status is LinkStatus.PENDING:
        rows.append(("Vence", _local_time(link, link.expires_at)))
    if status is LinkStatus.PAID:
        rows.append(("Pagado", _local_time(link, link.paid_at)))
        rows.append(("Operación", link.payment_id))
    details = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in rows)
    if status is LinkStatus.PENDING:
        action = (
            # An empty action posts back to this very page, wherever it is mounted.
            '<form method="post" action=""><button type="submit">Pagar</button></form>'
        )
    elif status is LinkStatus.PAID:
        action = '<p class="notice paid">Pago recibido. Gracias, su pago quedó registrado.</p>'
    else:
        action = (
            '<p class="notice expired">Este enlace de pago venció. '
            "Solicite uno nuevo en el chat o con su asesor.</p>"
        )
    amount = html.escape(_money(link))
    content = f'<h1>Pago de su crédito</h1>\n<div class="amount">{amount}</div>\n<dl>{details}</dl>\n{action}'
    return PAGE.format(title=f"Pagar {amount}", content=content)


def render_missing() -> str:
    content = (
        "<h1>Enlace no encontrado</h1>\n"
        '<p class="notice missing">No encontramos este enlace de pago. Verifique la dirección que recibió.</p>'
    )
    return PAGE.format(title="Enlace no encontrado", content=content)


pages = APIRouter(tags=["checkout page"])


@pages.get("/pay/{link_id}", response_class=HTMLResponse, summary="Checkout page shown to the customer (demo)")
def checkout_page(request: Request, link_id: str = LinkId) -> HTMLResponse:
    try:
        link = get_link(_state(request).session_factory, link_id)
    except LinkNotFound:
        return HTMLResponse(render_missing(), status_code=404, headers=PAGE_HEADERS)
    return HTMLResponse(render_checkout(link, utcnow()), headers=PAGE_HEADERS)


@pages.post("/pay/{link_id}", summary="Pay from the checkout page (demo); redirects back to the page")
def checkout_pay(request: Request, link_id: str = LinkId) -> Response:
    state = _state(request)
    try:
        link = complete_link(state.session_factory, link_id, state.config.notifier.target_names)
    except LinkNotFound:
        return HTMLResponse(render_missing(), status_code=404, headers=PAGE_HEADERS)
    except LinkNotPayable:
        link = get_link(state.session_factory, link_id)  # the page shows why: already paid or expired
    else:
        state.notifier.wake()
    return RedirectResponse(link.url, status_code=303)


# --- errors -----------------------------------------------------------------------------------------------


def _describe(error: Dict[str, Any]) -> str:
    loc = error.get("loc", ())
    if error.get("type") == "json_invalid":
        reason = (error.get("ctx") or {}).get("error", "invalid JSON")
        return f"malformed JSON body: {reason} at position {loc[-1] if loc else '?'}"
    if loc and loc[0] == "header":
        return f"{loc[-1]} header: {error.get('msg')}"
    field = ".".join(str(part) for part in loc if part != "body") or "body"
    return f"{field}: {error.get('msg')}"


async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    """One readable ``detail`` plus the per-field list; header and JSON syntax problems are 400."""
    errors = exc.errors()
    bad_request = any(e.get("type") == "json_invalid" or e.get("loc", ("",))[0] == "header" for e in errors)
    return JSONResponse(
        status_code=400 if bad_request else 422,
        content={"detail": "; ".join(_describe(e) for e in errors), "errors": jsonable_encoder(errors)},
    )


async def _unexpected_error(_request: Request, _exc: Exception) -> JSONResponse:
    """JSON instead of a text 500; Starlette re-raises afterwards, so uvicorn still logs the traceback."""
    return JSONResponse(status_code=500, content={"detail": "internal error; the request was not completed"})


# --- application ------------------------------------------------------------------------------------------

TAGS = [
    {"name": "links", "description": "Create and look up payment links."},
    {"name": "simulation", "description": "Stand-ins for what the customer does, for tests and demos."},
    {"name": "notifications", "description": "Signed `payment.completed` webhooks sent to core banking."},
    {"name": "checkout page", "description": "HTML page the link points to."},
    {"name": "health", "description": "Probes."},
]


def create_app(config: Optional[PaymentsConfig] = None) -> FastAPI:
    """Build the service; tables are created and the webhook notifier started when the app starts."""
    config = config or PaymentsConfig.from_env()
    engine = make_engine(config.database_url)
    session_factory = make_session_factory(engine)
    notifier = WebhookNotifier(session_factory, config.notifier)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        Base.metadata.create_all(engine)
        notifier.start()
        try:
            yield
        finally:
            await asyncio.to_thread(notifier.stop)
            engine.dispose()

    app = FastAPI(
        title="Credia payments (mock)",
        version="1.0.0",
        # Swagger UI and ReDoc load their assets from a CDN; the description is served as /openapi.json.
        docs_url=None,
        redoc_url=None,
        description=(
            "Mock payment provider for the Credia assistant: payment links with idempotent creation, a demo "
            "checkout page, and `payment.completed` webhooks to core banking, signed in the `X-Signature` "
            "header (`t=<unix>,v1=<hex HMAC-SHA256 of \"<t>.<raw body>\">`) and retried with exponential "
            "backoff. Money is a decimal string."
        ),
        openapi_tags=TAGS,
        lifespan=lifespan,
    )
    app.state.payments = ServiceState(config=config, session_factory=session_factory, notifier=notifier)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
    app.include_router(api)
    app.include_router(pages)
    return app
