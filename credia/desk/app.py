"""HTTP side of the agent desk: the service API for the assistant, and the agents' console.

Three kinds of routes, and nothing else:

- public: ``/health``, the login page and its stylesheet;
- the service API under ``/api/``: ``Authorization: Bearer <DESK_API_TOKEN>``, JSON, English ``detail`` on errors;
- the console (pages, actions, live events, its script): a logged-in agent's session cookie; every action also
  carries the session's CSRF token and, when the browser sends one, an ``Origin`` of this very desk.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from contextlib import asynccontextmanager
from datetime import datetime
from importlib import resources
from typing import Any, AsyncIterator, Dict, Optional
from urllib.parse import parse_qs, quote, urlsplit

from fastapi import APIRouter, Depends, FastAPI, Header, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from credia.db import make_engine, make_session_factory
from credia.desk import dashboard
from credia.desk.auth import same_secret
from credia.desk.config import DeskConfig
from credia.desk.events import Broker, DeskEvent
from credia.desk.hours import UnknownCountry
from credia.desk.models import Base
from credia.desk.pages import METRICS_PATH, Page
from credia.desk.schemas import (
    CustomerMessageIn,
    ErrorOut,
    HandoffIn,
    HandoffOpenedOut,
    HandoffStatusOut,
    MessageAcceptedOut,
    SurveyIn,
    SurveyOut,
    TicketIn,
    TicketOut,
)
from credia.desk.service import Desk, DeskError, Viewer

logger = logging.getLogger(__name__)

SESSION_COOKIE = "desk_session"
MAX_BODY_BYTES = 2 * 1024 * 1024
MAX_FORM_BYTES = 64 * 1024
HEARTBEAT_SECONDS = 20.0
# A stream ends after this long and the browser reconnects at once: a dead session never streams for long.
STREAM_SECONDS = 600.0
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
_NEXT = re.compile(r"^/console(/[A-Za-z0-9/_-]*)?$")
TAGS = [
    {"name": "handoffs", "description": "Conversations handed to a person, their live messages and the survey."},
    {"name": "tickets", "description": "Callbacks and written messages when nobody can take the conversation now."},
    {"name": "service", "description": "Liveness of the desk and its database."},
]
API_ERRORS = {
    401: {"model": ErrorOut, "description": "Missing or wrong bearer token."},
    422: {"model": ErrorOut, "description": "Invalid values: `detail` says which."},
}


class NotLoggedIn(Exception):
    """No valid console session: pages go to the login page, everything else gets 401."""


def desk_of(request: Request) -> Desk:
    return request.app.state.desk


def page_of(request: Request) -> Page:
    return request.app.state.page


# --- authentication ----------------------------------------------------------------------------------------


def require_token(request: Request, authorization: str = Header("", include_in_schema=False)) -> None:
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token or not same_secret(token.strip(), request.app.state.api_token):
        raise DeskError(401, "missing or wrong bearer token (Authorization: Bearer <DESK_API_TOKEN>)")


def current_viewer(request: Request) -> Viewer:
    token = request.cookies.get(SESSION_COOKIE)
    viewer = desk_of(request).viewer_for(token) if token else None
    if viewer is None:
        raise NotLoggedIn()
    return viewer


async def read_form(request: Request) -> Dict[str, str]:
    """``application/x-www-form-urlencoded`` fields, first value each (the console posts nothing else)."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise DeskError(413, "El formulario es demasiado grande.")
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=50)
    except (UnicodeDecodeError, ValueError):
        raise DeskError(400, "Formulario ilegible.") from None
    return {name: values[0] for name, values in fields.items()}


def same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    return origin is None or urlsplit(origin).netloc == request.headers.get("host", "")


async def console_form(request: Request, viewer: Viewer = Depends(current_viewer)) -> Dict[str, str]:
    """The posted fields, once the request proved it comes from the console (CSRF token and origin)."""
    form = await read_form(request)
    if not same_origin(request) or not same_secret(form.get("csrf", ""), viewer.csrf_token):
        raise DeskError(403, "La página caducó. Recárguela e intente de nuevo.")
    return form


def wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def done(request: Request, location: str) -> Response:
    """After an action: JSON for the console's script, a redirect for a plain form post."""
    if wants_json(request):
        return JSONResponse({"redirect": location})
    return RedirectResponse(location, status_code=303)


def html(content: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(content, status_code=status_code, headers=PAGE_HEADERS)


def int_field(form: Dict[str, str], name: str) -> int:
    try:
        return int(form.get(name, ""))
    except ValueError:
        raise DeskError(422, "Elija una opción de la lista.") from None


# --- public ------------------------------------------------------------------------------------------------

public = APIRouter()


@public.get("/health", tags=["service"], summary="Liveness of the desk and its database")
def health(request: Request) -> Dict[str, str]:
    desk_of(request).check_database()
    return {"status": "ok"}


@public.get("/login", include_in_schema=False)
def login_page(request: Request, next_path: str = Query("", alias="next", max_length=200)) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    if token and desk_of(request).viewer_for(token):
        return RedirectResponse(_safe_next(next_path), status_code=303)
    return html(page_of(request).login(next_path=_safe_next(next_path)))


@public.post("/login", include_in_schema=False)
async def login(request: Request) -> Response:
    form = await read_form(request)
    page = page_of(request)
    username, next_path = form.get("username", ""), form.get("next", "")
    if not same_origin(request):
        return html(page.login("La solicitud no vino de esta página.", next_path, username), 403)
    result = await run_in_threadpool(desk_of(request).login, username, form.get("password", ""))
    if result.locked_minutes is not None:
        message = (f"Demasiados intentos fallidos. Por seguridad, espere {result.locked_minutes} minutos antes de "
                   "volver a intentarlo.")
        return html(page.login(message, next_path, username), 429)
    if result.token is None:
        await asyncio.sleep(min(0.25 * result.failures, 2.0))  # each failure in a row answers a little slower
        return html(page.login("Usuario o contraseña incorrectos.", next_path, username), 401)
    response = RedirectResponse(_safe_next(next_path), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        result.token,
        max_age=request.app.state.session_seconds,
        httponly=True,
        samesite="strict",
        secure=request.app.state.cookie_secure,
        path="/",
    )
    return response


def _safe_next(next_path: str) -> str:
    """Only a console page of this desk, never another site."""
    return next_path if _NEXT.match(next_path or "") else "/console"


@public.get("/assets/desk.css", include_in_schema=False)
def stylesheet() -> Response:
    return _asset("desk.css", "text/css; charset=utf-8")


def _asset(name: str, media_type: str) -> Response:
    content = resources.files("credia.desk").joinpath("static", name).read_bytes()
    return Response(content, media_type=media_type, headers={"Cache-Control": "no-cache"})


# --- service API -------------------------------------------------------------------------------------------

api = APIRouter(prefix="/api", dependencies=[Depends(require_token)], responses=API_ERRORS)


@api.post(
    "/handoffs",
    tags=["handoffs"],
    summary="Hand a conversation to a person",
    response_model=HandoffOpenedOut,
    status_code=201,
    responses={
        200: {"model": HandoffOpenedOut, "description": "Already in handoff (the open one), or nobody can take it: "
              "`status` closed or no_agents, `handoff_id` null, with `next_open_at` and `callback_slots`."},
        409: {"model": ErrorOut, "description": "Idempotency-Key reused with a different body."},
    },
)
def open_handoff(
    request: Request, body: HandoffIn, idempotency_key: Optional[str] = Header(None, max_length=255)
) -> JSONResponse:
    desk = desk_of(request)
    status_code, payload = desk.idempotent(
        "handoffs", idempotency_key, body.dict(), lambda: desk.open_handoff(body)
    )
    return JSONResponse(jsonable_encoder(payload), status_code=status_code)


@api.get(
    "/handoffs/{conversation_id}",
    tags=["handoffs"],
    summary="Status of the conversation's latest handoff",
    response_model=HandoffStatusOut,
    responses={404: {"model": ErrorOut, "description": "The conversation was never handed off."}},
)
def handoff_status(request: Request, conversation_id: str = Path(..., max_length=255)) -> Dict[str, Any]:
    return desk_of(request).handoff_status(conversation_id)


@api.post(
    "/handoffs/{conversation_id}/messages",
    tags=["handoffs"],
    summary="A customer message while a person has the conversation (idempotent by event_id)",
    response_model=MessageAcceptedOut,
    status_code=202,
    responses={404: {"model": ErrorOut, "description": "The conversation is not in handoff."}},
)
def customer_message(
    request: Request, body: CustomerMessageIn, conversation_id: str = Path(..., max_length=255)
) -> Dict[str, str]:
    return {"status": desk_of(request).add_customer_message(conversation_id, body)}


@api.post(
    "/handoffs/{conversation_id}/survey",
    tags=["handoffs"],
    summary="The customer's satisfaction rating (1 to 5) after a resolved handoff",
    response_model=SurveyOut,
    responses={404: {"model": ErrorOut, "description": "No resolved handoff for this conversation."}},
)
def survey(request: Request, body: SurveyIn, conversation_id: str = Path(..., max_length=255)) -> Dict[str, int]:
    return desk_of(request).record_survey(conversation_id, body.rating)


@api.post(
    "/tickets",
    tags=["tickets"],
    summary="A callback at one of the offered slots, or a written message for an agent",
    response_model=TicketOut,
    status_code=201,
    responses={409: {"model": ErrorOut, "description": "Idempotency-Key reused with a different body."}},
)
def open_ticket(
    request: Request, body: TicketIn, idempotency_key: Optional[str] = Header(None, max_length=255)
) -> JSONResponse:
    desk = desk_of(request)
    status_code, payload = desk.idempotent(
        "tickets", idempotency_key, body.dict(), lambda: (201, desk.create_ticket(body))
    )
    return JSONResponse(jsonable_encoder(payload), status_code=status_code)


@api.get("/openapi.json", include_in_schema=False)
def openapi(request: Request) -> Dict[str, Any]:
    """The service API's description: what a lender's own desk implements to replace this one."""
    app: FastAPI = request.app
    return get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes, tags=TAGS
    )


# --- console -----------------------------------------------------------------------------------------------

console = APIRouter(include_in_schema=False)


@console.get("/")
def root(_viewer: Viewer = Depends(current_viewer)) -> Response:
    return RedirectResponse("/console", status_code=303)


@console.get("/assets/desk.js")
def script(_viewer: Viewer = Depends(current_viewer)) -> Response:
    return _asset("desk.js", "text/javascript; charset=utf-8")


@console.get("/console")
def console_page(request: Request, viewer: Viewer = Depends(current_viewer)) -> Response:
    desk = desk_of(request)
    return html(
        page_of(request).console(
            viewer, desk.queue(), desk.active(viewer), desk.recently_resolved(viewer), desk.agent_loads()
        )
    )


@console.get("/console/conversations/{handoff_id}")
def conversation_page(request: Request, handoff_id: int, viewer: Viewer = Depends(current_viewer)) -> Response:
    desk = desk_of(request)
    handoff = desk.conversation(viewer, handoff_id)
    return html(page_of(request).conversation(viewer, handoff, desk.undelivered(handoff_id), desk.agent_loads()))


@console.get("/console/tickets")
def tickets_page(request: Request, viewer: Viewer = Depends(current_viewer)) -> Response:
    return html(page_of(request).tickets(viewer, desk_of(request).tickets()))


@console.get(METRICS_PATH)
def metrics_page(request: Request, viewer: Viewer = Depends(current_viewer)) -> Response:
    """The supervisors' dashboard; agents are refused, the figures come from credia.analytics."""
    if not viewer.is_supervisor:
        raise DeskError(403, "Solo los supervisores pueden ver las métricas del asistente.")
    state = request.app.state
    status_code, content = dashboard.render(
        page_of(request), viewer, request.query_params, state.tracker_store_url, state.core_banking_url
    )
    return html(content, status_code)


@console.get("/console/events")
async def live_events(request: Request, viewer: Viewer = Depends(current_viewer)) -> Response:
    """Server-sent events: what changed (never customer data); the page fetches what it shows itself."""
    desk = desk_of(request)

    async def stream() -> AsyncIterator[str]:
        queue = desk.broker.subscribe()
        try:
            yield "retry: 2000\n\n"
            ends = time.monotonic() + STREAM_SECONDS
            while time.monotonic() < ends:
                try:
                    event = await asyncio.wait_for(queue.get(), timeout=HEARTBEAT_SECONDS)
                except asyncio.TimeoutError:
                    if not await run_in_threadpool(desk.touch, viewer.session_id):
                        return
                    yield ": still here\n\n"
                    continue
                if event is None:
                    return
                if _visible(viewer, event):
                    yield f"event: {event.kind}\ndata: {json.dumps(event.as_json())}\n\n"
        finally:
            desk.broker.unsubscribe(queue)

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )


def _visible(viewer: Viewer, event: DeskEvent) -> bool:
    """Events about one conversation go to whoever can see it; queue and team changes to everyone."""
    if event.kind in ("customer_message", "message", "delivery", "survey"):
        return viewer.is_supervisor or event.agent_id in (None, viewer.agent_id)
    return True


@console.post("/logout")
def logout(request: Request, viewer: Viewer = Depends(current_viewer), _form: Dict = Depends(console_form)) -> Response:
    desk_of(request).logout(viewer.session_id)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


@console.post("/console/presence")
def presence(
    request: Request, viewer: Viewer = Depends(current_viewer), form: Dict = Depends(console_form)
) -> Response:
    desk_of(request).set_available(viewer, form.get("available") == "1")
    return done(request, _safe_next(urlsplit(request.headers.get("referer", "")).path))


@console.post("/console/conversations/{handoff_id}/claim")
def claim(
    request: Request, handoff_id: int, viewer: Viewer = Depends(current_viewer), _form: Dict = Depends(console_form)
) -> Response:
    desk_of(request).claim(viewer, handoff_id)
    return done(request, f"/console/conversations/{handoff_id}")


@console.post("/console/conversations/{handoff_id}/assign")
def assign(
    request: Request, handoff_id: int, viewer: Viewer = Depends(current_viewer), form: Dict = Depends(console_form)
) -> Response:
    desk_of(request).assign(viewer, handoff_id, int_field(form, "agent_id"))
    return done(request, f"/console/conversations/{handoff_id}")


@console.post("/console/conversations/{handoff_id}/transfer")
def transfer(
    request: Request, handoff_id: int, viewer: Viewer = Depends(current_viewer), form: Dict = Depends(console_form)
) -> Response:
    desk_of(request).transfer(viewer, handoff_id, int_field(form, "agent_id"))
    return done(request, "/console")


@console.post("/console/conversations/{handoff_id}/reply")
def reply(
    request: Request, handoff_id: int, viewer: Viewer = Depends(current_viewer), form: Dict = Depends(console_form)
) -> Response:
    desk_of(request).reply(viewer, handoff_id, form.get("text", ""))
    return done(request, f"/console/conversations/{handoff_id}")


@console.post("/console/conversations/{handoff_id}/notes")
def note(
    request: Request, handoff_id: int, viewer: Viewer = Depends(current_viewer), form: Dict = Depends(console_form)
) -> Response:
    desk_of(request).note(viewer, handoff_id, form.get("text", ""))
    return done(request, f"/console/conversations/{handoff_id}")


@console.post("/console/conversations/{handoff_id}/resolve")
def resolve(
    request: Request, handoff_id: int, viewer: Viewer = Depends(current_viewer), form: Dict = Depends(console_form)
) -> Response:
    desk = desk_of(request)
    callback_at = _local_datetime(page_of(request), form.get("callback_at", ""))
    desk.resolve(viewer, handoff_id, form.get("outcome", ""), form.get("survey") == "1", callback_at)
    return done(request, f"/console/conversations/{handoff_id}")


def _local_datetime(page: Page, value: str) -> Optional[datetime]:
    """A ``datetime-local`` field, in the desk's time zone."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise DeskError(422, "Escriba la fecha y hora como 31/07/2025 10:00.") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=page.zone)


@console.post("/console/deliveries/{item_id}/retry")
def retry_delivery(
    request: Request, item_id: int, viewer: Viewer = Depends(current_viewer), _form: Dict = Depends(console_form)
) -> Response:
    handoff_id = desk_of(request).retry_delivery(viewer, item_id)
    return done(request, f"/console/conversations/{handoff_id}")


@console.post("/console/tickets/{ticket_id}/done")
def ticket_done(
    request: Request, ticket_id: int, viewer: Viewer = Depends(current_viewer), _form: Dict = Depends(console_form)
) -> Response:
    desk_of(request).ticket_done(viewer, ticket_id)
    return done(request, "/console/tickets")


# --- errors ------------------------------------------------------------------------------------------------


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


async def _not_logged_in(request: Request, _exc: Exception) -> Response:
    """A page asked for in the browser goes to the login page; anything else is simply refused."""
    page = request.method == "GET" and request.url.path not in ("/console/events", "/assets/desk.js")
    if page and not wants_json(request):
        return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)
    return JSONResponse({"detail": "Inicie sesión para continuar."}, status_code=401)


async def _desk_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DeskError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
    if _is_api(request) or wants_json(request):
        return JSONResponse({"detail": exc.message}, status_code=exc.status_code, headers=headers)
    token = request.cookies.get(SESSION_COOKIE)
    viewer = await run_in_threadpool(desk_of(request).viewer_for, token) if token else None
    return html(page_of(request).error(exc.message, viewer), exc.status_code)


async def _unknown_country(_request: Request, exc: Exception) -> Response:
    return JSONResponse({"detail": f"country: {exc}"}, status_code=422)


def _describe(error: Dict[str, Any]) -> str:
    if error.get("type") == "value_error.jsondecode":
        return "body is not valid JSON"
    where = ".".join(str(part) for part in error.get("loc", ()) if part not in ("body", "__root__"))
    return f"{where}: {error['msg']}" if where else str(error["msg"])


async def _validation_error(_request: Request, exc: Exception) -> Response:
    """422 for invalid values, 400 when the body is not JSON at all; one readable ``detail``."""
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    bad_json = any(error.get("type") in ("value_error.jsondecode", "json_invalid") for error in errors)
    return JSONResponse(
        {"detail": "; ".join(_describe(error) for error in errors), "errors": jsonable_encoder(errors)},
        status_code=400 if bad_json else 422,
    )


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": "internal error; the request was not completed"}, status_code=500)


# --- application -------------------------------------------------------------------------------------------


class BodyLimitAndHeaders:
    """Refuse oversized bodies before reading them, and mark every response ``nosniff``.

    Plain ASGI rather than ``BaseHTTPMiddleware``, which would buffer the live event streams."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > MAX_BODY_BYTES:
            await JSONResponse({"detail": "body too large"}, status_code=413)(scope, receive, send)
            return

        async def send_marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-content-type-options", b"nosniff")]
            await send(message)

        await self.app(scope, receive, send_marked)


def create_app(config: DeskConfig) -> FastAPI:
    """Build the desk; tables, demo users and the outbox worker are set up when the app starts."""
    engine = make_engine(config.database_url)
    broker = Broker()
    desk = Desk(make_session_factory(engine), config.policy, config.clock, config.rasa, broker)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        Base.metadata.create_all(engine)
        for user, password in config.passwords:
            await run_in_threadpool(desk.ensure_agent, user.username, user.display_name, user.role, password)
        broker.bind(asyncio.get_running_loop())
        desk.outbox.start()
        try:
            yield
        finally:
            broker.close()
            await asyncio.to_thread(desk.outbox.stop)
            engine.dispose()

    app = FastAPI(
        title="Credia agent desk",
        version="1.0.0",
        # Everything but /health needs a login or the API token, the description included (/api/openapi.json).
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        description=(
            "Service API of the agent desk, the boundary between the assistant and the people who take over "
            "conversations. A lender with its own desk implements these calls and points the assistant's "
            "DESK_URL at it. Every call needs `Authorization: Bearer <DESK_API_TOKEN>`. The desk answers the "
            "customer through Rasa's HTTP API: agent replies as `bot` events with `metadata.from = \"agent\"`, "
            "then `resume` and the intent `EXTERNAL_handoff_resolved` (entity `survey`: yes or no)."
        ),
        lifespan=lifespan,
    )
    app.state.desk = desk
    app.state.page = Page(config.policy)
    app.state.api_token = config.api_token
    app.state.cookie_secure = config.cookie_secure
    app.state.session_seconds = config.policy.security.session_max_hours * 3600
    app.state.tracker_store_url = config.tracker_store_url
    app.state.core_banking_url = config.core_banking_url

    app.add_middleware(BodyLimitAndHeaders)
    app.include_router(public)
    app.include_router(api)
    app.include_router(console)
    app.add_exception_handler(NotLoggedIn, _not_logged_in)
    app.add_exception_handler(DeskError, _desk_error)
    app.add_exception_handler(UnknownCountry, _unknown_country)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
    return app
