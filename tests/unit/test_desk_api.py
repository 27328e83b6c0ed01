"""The agent desk as a real process (``python -m credia.desk``) with a fake Rasa server that records what the desk
sends: authentication of every route, login lockout, the queue, assignment rules, replies and hand-backs through
Rasa's HTTP API with retries, business hours, tickets and idempotency.

``start_desk`` and ``Console`` are also used by the browser test (tests/e2e/test_desk_console.py).
"""

from __future__ import annotations

import json
import re
import sqlite3
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import requests

from credia.desk.app import create_app
from credia.desk.config import DeskConfig
from credia.desk.hours import system_clock
from credia.desk.outbox import RasaTarget
from credia.desk.policy import load_policy
from credia.processes import ManagedProcess, free_port
from tests.unit.fake_receiver import FakeReceiver, ReceivedRequest
from tests.waiting import wait_until

PROJECT_ROOT = Path(__file__).resolve().parents[2]
API_TOKEN = "desk-api-token-for-tests"
RASA_TOKEN = "rasa-token-for-tests"
SUPERVISOR_PASSWORD = "supervisora-de-prueba"
AGENT_PASSWORD = "agente-de-prueba"
PASSWORDS = {"supervisor": SUPERVISOR_PASSWORD, "agente1": AGENT_PASSWORD, "agente2": AGENT_PASSWORD}
# A Wednesday morning in Lima: the desk is open whatever the machine's clock says.
OPEN_CLOCK = "2025-07-30T10:00:00-05:00"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')



@dataclass
class DeskService:
    """A running desk on its own SQLite file."""

    url: str
    database_path: Path
    process: ManagedProcess

    def api(self, method: str, path: str, body: Any = None, key: Optional[str] = None,
            token: Optional[str] = API_TOKEN) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if key:
            headers["Idempotency-Key"] = key
        return requests.request(method, f"{self.url}{path}", json=body, headers=headers, timeout=10)

    def open_handoff(self, conversation_id: str, **overrides: Any) -> Dict[str, Any]:
        response = self.api("POST", "/api/handoffs", handoff_body(conversation_id, **overrides))
        assert response.status_code == 201, response.text
        return response.json()

    def console(self, username: str) -> "Console":
        return Console(self, username)

    def rows(self, query: str, *args: Any) -> List[tuple]:
        with sqlite3.connect(self.database_path) as connection:
            return connection.execute(query, args).fetchall()

    def stop(self) -> None:
        self.process.stop()


class Console:
    """A logged-in agent, as the browser would be: session cookie plus the page's CSRF token."""

    def __init__(self, desk: DeskService, username: str, password: Optional[str] = None) -> None:
        self.desk = desk
        self.http = requests.Session()
        response = self.http.post(
            f"{desk.url}/login", data={"username": username, "password": password or PASSWORDS[username]},
            allow_redirects=False, timeout=10,
        )
        assert response.status_code == 303, response.text
        self.csrf = CSRF.search(self.page("/console")).group(1)

    def get(self, path: str) -> requests.Response:
        return self.http.get(f"{self.desk.url}{path}", timeout=10, allow_redirects=False)

    def page(self, path: str) -> str:
        response = self.get(path)
        assert response.status_code == 200, (response.status_code, response.text[:500])
        return response.text

    def act(self, path: str, **fields: Any) -> requests.Response:
        """Post a console form the way its script does (JSON answer)."""
        return self.http.post(
            f"{self.desk.url}{path}", data={"csrf": self.csrf, **fields},
            headers={"Accept": "application/json"}, timeout=10, allow_redirects=False,
        )

    def ok(self, path: str, **fields: Any) -> Dict[str, Any]:
        response = self.act(path, **fields)
        assert response.status_code == 200, (response.status_code, response.text)
        return response.json()


def handoff_body(conversation_id: str, **overrides: Any) -> Dict[str, Any]:
    body: Dict[str, Any] = {
        "conversation_id": conversation_id,
        "channel": "whatsapp",
        "reason": "dispute",
        "priority": "normal",
        "customer": {"customer_id": 7, "name": "María Elena Quispe", "verified": True, "document": "****410"},
        "journey": "collections",
        "values": {"collections_goal": "dispute", "payment_amount": "350.00"},
        "offers": ["PO-1A2B3C"],
        "transcript": [
            {"role": "customer", "text": "no reconozco esta deuda", "at": "2025-07-30T09:58:00-05:00"},
            {"role": "bot", "text": "Entiendo. Le comunico con una persona.", "at": "2025-07-30T09:58:02-05:00"},
        ],
    }
    body.update(overrides)
    return body


def start_desk(directory: Path, rasa_url: str, clock: Optional[str] = OPEN_CLOCK, **env: str) -> DeskService:
    """Start the desk (a fresh database in ``directory``) and wait until it is healthy."""
    port = free_port()
    database_path = directory / f"desk-{port}.db"
    process = ManagedProcess(
        name="desk",
        command=[sys.executable, "-m", "credia.desk"],
        health_url=f"http://127.0.0.1:{port}/health",
        env={
            "DESK_PORT": str(port),
            "DESK_DATABASE_URL": f"sqlite:///{database_path}",
            "DESK_API_TOKEN": API_TOKEN,
            "DESK_SUPERVISOR_PASSWORD": SUPERVISOR_PASSWORD,
            "DESK_AGENT_PASSWORD": AGENT_PASSWORD,
            "RASA_URL": rasa_url,
            "RASA_AUTH_TOKEN": RASA_TOKEN,
            "DESK_CLOCK_START": clock or "",
            "DESK_RETRY_BASE_SECONDS": "0.2",
            "DESK_RETRY_MAX_SECONDS": "0.5",
            "DESK_OUTBOX_POLL_SECONDS": "0.2",
            "DESK_RASA_TIMEOUT_SECONDS": "2",
            **env,
        },
        log_path=directory / f"desk-{port}.log",
        cwd=PROJECT_ROOT,
    )
    process.start()
    try:
        process.wait_healthy(timeout=30)
    except Exception:
        process.stop()
        raise
    return DeskService(f"http://127.0.0.1:{port}", database_path, process)


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory, fake_rasa: FakeReceiver) -> Iterator[DeskService]:
    """One desk for the module; tests use their own conversation ids."""
    service = start_desk(tmp_path_factory.mktemp("desk"), fake_rasa.url)
    yield service
    service.stop()


@pytest.fixture
def fresh_desk(tmp_path: Path, fake_rasa: FakeReceiver) -> Iterator[Callable[..., DeskService]]:
    """Desks of a test's own (another clock, another Rasa), stopped after it."""
    started: List[DeskService] = []

    def start(rasa_url: Optional[str] = None, clock: Optional[str] = OPEN_CLOCK, **env: str) -> DeskService:
        service = start_desk(tmp_path, rasa_url or fake_rasa.url, clock, **env)
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()


def conversation() -> str:
    return f"whatsapp:+519{uuid.uuid4().int % 10**8:08d}"


def calls_for(fake: FakeReceiver, conversation_id: str) -> List[ReceivedRequest]:
    prefix = f"/conversations/{quote(conversation_id, safe='')}/"
    return [request for request in fake.received if request.path.startswith(prefix)]


def wait_calls(fake: FakeReceiver, conversation_id: str, count: int, timeout: float = 10.0) -> List[ReceivedRequest]:
    return wait_until(lambda: len(calls_for(fake, conversation_id)) >= count and calls_for(fake, conversation_id),
                      timeout, f"{count} calls to Rasa for {conversation_id}")


def split(request: ReceivedRequest) -> tuple:
    """(path, query parameters, JSON body) of a call the desk made to Rasa."""
    parts = urlsplit(request.path)
    return parts.path, {name: values[0] for name, values in parse_qs(parts.query).items()}, json.loads(request.body)


# --- authentication ----------------------------------------------------------------------------------------

PUBLIC = {("GET", "/health"), ("GET", "/login"), ("POST", "/login"), ("GET", "/assets/desk.css")}


def app_routes(tmp_path: Path) -> List[tuple]:
    """Every (method, path) the desk serves, from the application itself, so a new route cannot be missed."""
    config = DeskConfig(
        database_url=f"sqlite:///{tmp_path / 'routes.db'}", api_token="unused",
        rasa=RasaTarget("http://127.0.0.1:9", "unused"), policy=load_policy(), clock=system_clock, passwords=(),
    )
    routes = []
    for route in create_app(config).routes:
        for method in sorted(getattr(route, "methods", None) or []):
            if method != "HEAD":
                routes.append((method, route.path))
    return routes


def concrete(path: str) -> str:
    """A route's path with its parameters filled in."""
    return re.sub(r"\{\w+\}", "1", path.replace("{conversation_id}", "whatsapp:+51900000000"))


def test_every_route_but_health_and_login_needs_a_login_or_the_api_token(desk: DeskService, tmp_path: Path) -> None:
    routes = app_routes(tmp_path)
    assert len(routes) >= 20 and ("POST", "/api/handoffs") in routes and ("GET", "/console/events") in routes
    assert PUBLIC <= set(routes)
    agent = desk.console("agente1")  # a valid console session must not open the service API
    for method, path in routes:
        if (method, path) in PUBLIC:
            continue
        url = f"{desk.url}{concrete(path)}"
        if path.startswith("/api/"):
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": API_TOKEN}):
                response = requests.request(method, url, json={}, headers=headers, timeout=10)
                assert response.status_code == 401, (method, path, headers, response.status_code)
                assert response.headers["WWW-Authenticate"] == "Bearer"
            with_cookie = agent.http.request(method, url, json={}, timeout=10)
            assert with_cookie.status_code == 401, (method, path)
        else:
            response = requests.request(
                method, url, data={"csrf": agent.csrf}, timeout=10, allow_redirects=False,
                headers={"Authorization": f"Bearer {API_TOKEN}"},  # the API token does not open the console
            )
            if response.status_code == 303:
                assert response.headers["location"].startswith("/login?next="), (method, path)
            else:
                assert response.status_code == 401, (method, path, response.status_code)
            assert "María" not in response.text and "csrf" not in response.text
    # The service API describes itself to whoever holds the token: the contract a lender's own desk implements.
    description = desk.api("GET", "/api/openapi.json").json()
    assert set(description["paths"]) == {
        "/health", "/api/handoffs", "/api/handoffs/{conversation_id}", "/api/handoffs/{conversation_id}/messages",
        "/api/handoffs/{conversation_id}/survey", "/api/tickets",
    }


def test_the_console_needs_its_csrf_token_and_its_own_origin(desk: DeskService) -> None:
    agent = desk.console("agente1")
    url = f"{desk.url}/console/presence"
    assert agent.http.post(url, data={"available": "1"}, timeout=10).status_code == 403
    assert agent.http.post(url, data={"csrf": "forged", "available": "1"}, timeout=10).status_code == 403
    foreign = agent.http.post(url, data={"csrf": agent.csrf, "available": "1"},
                              headers={"Origin": "https://evil.example"}, timeout=10)
    assert foreign.status_code == 403
    same = agent.http.post(url, data={"csrf": agent.csrf, "available": "1"}, headers={"Origin": desk.url},
                           timeout=10, allow_redirects=False)
    assert same.status_code == 303 and same.headers["location"] == "/console"


def test_login_sets_a_strict_httponly_session_cookie_stored_only_hashed(desk: DeskService) -> None:
    response = requests.post(f"{desk.url}/login", data={"username": "Agente1", "password": AGENT_PASSWORD,
                                                         "next": "/console/tickets"}, allow_redirects=False, timeout=10)
    assert response.status_code == 303 and response.headers["location"] == "/console/tickets"
    cookie = response.headers["set-cookie"]
    token = re.match(r"desk_session=([^;]+);", cookie).group(1)
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    stored = [row[0] for row in desk.rows("SELECT token_hash FROM auth_sessions")]
    assert token not in stored and len(stored[-1]) == 64
    hashes = dict(desk.rows("SELECT username, password_hash FROM agents"))
    assert set(hashes) == {"supervisor", "agente1", "agente2"}
    assert all(value.startswith("scrypt$") and AGENT_PASSWORD not in value for value in hashes.values())
    assert hashes["agente1"] != hashes["agente2"]  # same password, different salts

    offsite = requests.post(f"{desk.url}/login", data={"username": "agente1", "password": AGENT_PASSWORD,
                                                       "next": "//evil.example/x"}, allow_redirects=False, timeout=10)
    assert offsite.headers["location"] == "/console"

    agent = desk.console("agente1")
    session_token = agent.http.cookies.get("desk_session")
    assert agent.get("/console").status_code == 200
    logout = agent.http.post(f"{desk.url}/logout", data={"csrf": agent.csrf}, allow_redirects=False, timeout=10)
    assert logout.status_code == 303 and logout.headers["location"] == "/login"
    replayed = requests.get(f"{desk.url}/console", cookies={"desk_session": session_token}, allow_redirects=False,
                            timeout=10)
    assert replayed.status_code == 303  # the session ended on the server, not only in the browser


def test_repeated_wrong_passwords_lock_the_user_name(fresh_desk: Callable[..., DeskService]) -> None:
    desk = fresh_desk()
    policy = load_policy().security

    def attempt(username: str, password: str) -> requests.Response:
        return requests.post(f"{desk.url}/login", data={"username": username, "password": password},
                             allow_redirects=False, timeout=10)

    started = time.monotonic()
    for _ in range(policy.login_max_failures - 1):
        wrong = attempt("agente2", "not-the-password")
        assert wrong.status_code == 401 and "Usuario o contraseña incorrectos" in wrong.text
    assert time.monotonic() - started > 0.25 * sum(range(1, policy.login_max_failures))  # slowed down
    unknown = attempt("nadie", "whatever-it-is")
    assert unknown.status_code == 401 and "Usuario o contraseña incorrectos" in unknown.text
    locked = attempt("agente2", "still-not-it")
    assert locked.status_code == 429 and f"espere {policy.login_lock_minutes} minutos" in locked.text
    assert attempt("agente2", AGENT_PASSWORD).status_code == 429  # even the right password, while locked
    assert attempt("agente1", AGENT_PASSWORD).status_code == 303  # other users are not affected


# --- queue and assignment ----------------------------------------------------------------------------------


def test_the_queue_goes_by_priority_then_waiting_time(desk: DeskService) -> None:
    desk.console("agente1")  # someone online
    first_normal, high, urgent, second_normal = conversation(), conversation(), conversation(), conversation()
    ids = {
        first_normal: desk.open_handoff(first_normal, priority="normal")["handoff_id"],
        high: desk.open_handoff(high, priority="high")["handoff_id"],
        urgent: desk.open_handoff(urgent, priority="urgent")["handoff_id"],
        second_normal: desk.open_handoff(second_normal, priority="normal")["handoff_id"],
    }
    positions = {cid: desk.api("GET", f"/api/handoffs/{cid}").json()["position"] for cid in ids}
    assert positions[urgent] < positions[high] < positions[first_normal] < positions[second_normal]
    page = desk.console("agente2").page("/console")
    order = [page.index(f'href="/console/conversations/{ids[cid]}"') for cid in (urgent, high, first_normal,
                                                                                   second_normal)]
    assert order == sorted(order)
    status = desk.api("GET", f"/api/handoffs/{urgent}").json()
    assert status["status"] == "queued" and status["agent"] is None


def test_claim_limit_and_transfer(fresh_desk: Callable[..., DeskService]) -> None:
    desk = fresh_desk()
    limit = load_policy().queue.max_open_per_agent
    andrea, miguel = desk.console("agente1"), desk.console("agente2")
    handoffs = [desk.open_handoff(conversation())["handoff_id"] for _ in range(limit + 1)]

    assert andrea.ok(f"/console/conversations/{handoffs[0]}/claim") == {
        "redirect": f"/console/conversations/{handoffs[0]}"}
    taken = miguel.act(f"/console/conversations/{handoffs[0]}/claim")
    assert taken.status_code == 409 and "Otra persona ya tomó" in taken.json()["detail"]
    assert miguel.get(f"/console/conversations/{handoffs[0]}").status_code == 403  # someone else's now
    for handoff_id in handoffs[1:limit]:
        andrea.ok(f"/console/conversations/{handoff_id}/claim")
    over = andrea.act(f"/console/conversations/{handoffs[limit]}/claim")
    assert over.status_code == 409 and f"{limit} conversaciones abiertas" in over.json()["detail"]

    page = andrea.page(f"/console/conversations/{handoffs[0]}")
    assert "Transferir" in page and "Miguel Torres" in page and "Andrea Rojas tomó la conversación" in page
    miguel_id = desk.rows("SELECT id FROM agents WHERE username = 'agente2'")[0][0]
    andrea.ok(f"/console/conversations/{handoffs[0]}/transfer", agent_id=miguel_id)
    assert andrea.get(f"/console/conversations/{handoffs[0]}").status_code == 403
    page = miguel.page(f"/console/conversations/{handoffs[0]}")
    assert "transfirió la conversación de Andrea Rojas a Miguel Torres" in page and "Enviar al cliente" in page
    # Andrea has room again: the transferred conversation no longer counts for her.
    andrea.ok(f"/console/conversations/{handoffs[limit]}/claim")

    supervisor = desk.console("supervisor")
    overview = supervisor.page("/console")
    assert "Equipo" in overview and f"{limit} de {limit}" in overview and f"1 de {limit}" in overview
    extra = desk.open_handoff(conversation())["handoff_id"]
    andrea_id = desk.rows("SELECT id FROM agents WHERE username = 'agente1'")[0][0]
    full = supervisor.act(f"/console/conversations/{extra}/assign", agent_id=andrea_id)
    assert full.status_code == 409 and "Andrea Rojas ya tiene" in full.json()["detail"]
    supervisor.ok(f"/console/conversations/{extra}/assign", agent_id=miguel_id)
    assert "Patricia Salazar asignó la conversación a Miguel Torres" in miguel.page(f"/console/conversations/{extra}")
    assert miguel.act(f"/console/conversations/{extra}/assign", agent_id=miguel_id).status_code == 403

    # Nobody can be handed a conversation while away from the console.
    miguel.ok("/console/presence", available="0")
    offline = andrea.act(f"/console/conversations/{handoffs[1]}/transfer", agent_id=miguel_id)
    assert offline.status_code == 409 and "no está conectado" in offline.json()["detail"]


# --- replies, notes and hand-back through Rasa -------------------------------------------------------------


def test_a_reply_reaches_rasa_with_the_exact_body_and_a_note_never_leaves(
    desk: DeskService, fake_rasa: FakeReceiver
) -> None:
    agent = desk.console("agente1")
    cid = conversation()
    handoff_id = desk.open_handoff(cid)["handoff_id"]
    agent.ok(f"/console/conversations/{handoff_id}/claim")
    agent.ok(f"/console/conversations/{handoff_id}/notes", text="Revisar el pago del 12/07 antes de responder.")
    agent.ok(f"/console/conversations/{handoff_id}/reply", text="Hola, María. Reviso su caso ahora mismo.")

    [call] = wait_calls(fake_rasa, cid, 1)
    path, query, body = split(call)
    assert path == f"/conversations/{quote(cid, safe='')}/tracker/events"
    assert query == {"output_channel": "latest", "execute_side_effects": "true", "token": RASA_TOKEN}
    assert body == [{"event": "bot", "text": "Hola, María. Reviso su caso ahora mismo.",
                     "metadata": {"from": "agent", "agent": "Andrea Rojas"}}]
    time.sleep(0.6)  # several outbox rounds: still only the reply
    assert len(calls_for(fake_rasa, cid)) == 1
    assert all(b"Revisar el pago" not in request.body for request in fake_rasa.received)

    page = wait_until(lambda: (text := agent.page(f"/console/conversations/{handoff_id}")) and "Entregado" in text
                      and text, what="delivered mark")
    assert "Nota interna" in page and "Revisar el pago del 12/07" in page and "el cliente no la ve" in page
    empty = agent.act(f"/console/conversations/{handoff_id}/reply", text="   ")
    assert empty.status_code == 422 and empty.json()["detail"] == "Escriba un texto."


def test_resolve_resumes_the_bot_then_triggers_the_hand_back_and_takes_the_survey(
    desk: DeskService, fake_rasa: FakeReceiver
) -> None:
    agent = desk.console("agente2")
    cid = conversation()
    handoff_id = desk.open_handoff(cid)["handoff_id"]
    early = desk.api("POST", f"/api/handoffs/{cid}/survey", {"rating": 5})
    assert early.status_code == 404
    agent.ok(f"/console/conversations/{handoff_id}/claim")
    agent.ok(f"/console/conversations/{handoff_id}/reply", text="Listo, quedó registrado su reclamo.")
    bad = agent.act(f"/console/conversations/{handoff_id}/resolve", outcome="made_up", survey="1")
    assert bad.status_code == 422
    agent.ok(f"/console/conversations/{handoff_id}/resolve", outcome="resolved", survey="1")

    calls = wait_calls(fake_rasa, cid, 3)
    assert [split(call)[2] for call in calls] == [
        [{"event": "bot", "text": "Listo, quedó registrado su reclamo.",
          "metadata": {"from": "agent", "agent": "Miguel Torres"}}],
        [{"event": "resume"}],
        {"name": "EXTERNAL_handoff_resolved", "entities": {"survey": "yes"}},
    ]
    resume_path, resume_query, _ = split(calls[1])
    assert resume_path.endswith("/tracker/events") and resume_query["execute_side_effects"] == "true"
    trigger_path, trigger_query, _ = split(calls[2])
    assert trigger_path == f"/conversations/{quote(cid, safe='')}/trigger_intent"
    assert trigger_query == {"output_channel": "latest", "token": RASA_TOKEN}

    status = desk.api("GET", f"/api/handoffs/{cid}").json()
    assert status["status"] == "resolved" and status["agent"] == "Miguel Torres" and status["outcome"] == "resolved"
    late = desk.api("POST", f"/api/handoffs/{cid}/messages",
                    {"event_id": f"{cid}:1", "text": "hola", "at": "2025-07-30T10:30:00-05:00"})
    assert late.status_code == 404
    assert desk.api("POST", f"/api/handoffs/{cid}/survey", {"rating": 6}).status_code == 422
    assert desk.api("POST", f"/api/handoffs/{cid}/survey", {"rating": 4}).json() == {
        "handoff_id": handoff_id, "rating": 4}
    assert "4 de 5" in agent.page(f"/console/conversations/{handoff_id}")
    assert agent.act(f"/console/conversations/{handoff_id}/reply", text="otra").status_code == 409

    # The conversation can be handed off again later: a new handoff, without the survey this time.
    again = desk.open_handoff(cid)["handoff_id"]
    assert again != handoff_id
    agent.ok(f"/console/conversations/{again}/claim")
    agent.ok(f"/console/conversations/{again}/resolve", outcome="no_action")
    assert split(wait_calls(fake_rasa, cid, 5)[4])[2] == {
        "name": "EXTERNAL_handoff_resolved", "entities": {"survey": "no"}}


def test_calls_to_rasa_wait_while_it_is_down_and_go_in_order_when_it_is_back(
    fresh_desk: Callable[..., DeskService]
) -> None:
    rasa = FakeReceiver()  # not started yet: Rasa is down
    desk = fresh_desk(rasa_url=rasa.url)
    agent = desk.console("agente1")
    cid = conversation()
    handoff_id = desk.open_handoff(cid)["handoff_id"]
    agent.ok(f"/console/conversations/{handoff_id}/claim")
    agent.ok(f"/console/conversations/{handoff_id}/reply", text="Primera respuesta")
    agent.ok(f"/console/conversations/{handoff_id}/reply", text="Segunda respuesta")
    agent.ok(f"/console/conversations/{handoff_id}/resolve", outcome="resolved", survey="1")
    page = wait_until(lambda: (text := agent.page(f"/console/conversations/{handoff_id}"))
                      and "se reintenta automáticamente" in text and text, what="retry shown")
    assert "Rasa no responde" in page and "Hay envíos al cliente que aún no llegan" in page
    attempts = desk.rows("SELECT attempts FROM outbox ORDER BY id")
    assert attempts[0][0] >= 1 and all(row[0] == 0 for row in attempts[1:])  # the rest wait their turn

    rasa.start()
    try:
        calls = wait_calls(rasa, cid, 4)
        assert [split(call)[2] for call in calls] == [
            [{"event": "bot", "text": "Primera respuesta", "metadata": {"from": "agent", "agent": "Andrea Rojas"}}],
            [{"event": "bot", "text": "Segunda respuesta", "metadata": {"from": "agent", "agent": "Andrea Rojas"}}],
            [{"event": "resume"}],
            {"name": "EXTERNAL_handoff_resolved", "entities": {"survey": "yes"}},
        ]
        wait_until(lambda: desk.rows("SELECT count(*) FROM outbox WHERE status != 'delivered'")[0][0] == 0)
        assert "aún no llegan" not in agent.page(f"/console/conversations/{handoff_id}")

        # A refusal that retrying cannot fix (here a wrong token) waits for the agent, who retries by hand.
        second = conversation()
        other = desk.open_handoff(second)["handoff_id"]
        agent.ok(f"/console/conversations/{other}/claim")
        rasa.answer_next(401)
        agent.ok(f"/console/conversations/{other}/reply", text="¿Sigue ahí?")
        page = wait_until(lambda: (text := agent.page(f"/console/conversations/{other}"))
                          and "No entregado" in text and text, what="refusal shown")
        assert "Rasa respondió 401" in page and "Reintentar" in page
        time.sleep(0.6)
        assert len(calls_for(rasa, second)) == 1  # not retried on its own
        item_id = desk.rows("SELECT id FROM outbox WHERE status = 'failed'")[0][0]
        agent.ok(f"/console/deliveries/{item_id}/retry")
        wait_calls(rasa, second, 2)
        wait_until(lambda: "Entregado" in agent.page(f"/console/conversations/{other}"), what="delivered")
    finally:
        rasa.stop()


# --- service API -------------------------------------------------------------------------------------------


def test_business_hours_decide_between_the_queue_and_callback_slots(fresh_desk: Callable[..., DeskService]) -> None:
    open_desk = fresh_desk()
    nobody = open_desk.api("POST", "/api/handoffs", handoff_body(conversation()))
    assert nobody.status_code == 200
    assert nobody.json() == {
        "handoff_id": None, "status": "no_agents", "next_open_at": None,
        "callback_slots": ["2025-07-30T11:00:00-05:00", "2025-07-30T12:00:00-05:00",
                           "2025-07-30T13:00:00-05:00", "2025-07-30T14:00:00-05:00"],
    }
    paused = open_desk.console("agente1")
    paused.ok("/console/presence", available="0")  # logged in but on a break is not online
    assert open_desk.api("POST", "/api/handoffs", handoff_body(conversation())).json()["status"] == "no_agents"
    paused.ok("/console/presence", available="1")
    assert open_desk.api("POST", "/api/handoffs", handoff_body(conversation())).status_code == 201

    night = fresh_desk(clock="2025-07-30T22:00:00-05:00")
    night.console("agente1")
    closed = night.api("POST", "/api/handoffs", handoff_body(conversation())).json()
    assert closed["status"] == "closed" and closed["handoff_id"] is None
    assert closed["next_open_at"] == "2025-07-31T09:00:00-05:00"
    assert closed["callback_slots"][:2] == ["2025-07-31T09:00:00-05:00", "2025-07-31T10:00:00-05:00"]

    # Monday 28 and Tuesday 29 July are Peru's national holidays (Fiestas Patrias).
    holiday = fresh_desk(clock="2025-07-28T11:00:00-05:00")
    holiday.console("agente1")
    closed = holiday.api("POST", "/api/handoffs", handoff_body(conversation())).json()
    assert closed["status"] == "closed" and closed["next_open_at"] == "2025-07-30T09:00:00-05:00"
    assert closed["callback_slots"][0] == "2025-07-30T09:00:00-05:00"
    mexico = holiday.api("POST", "/api/handoffs", handoff_body(conversation(), country="MX"))
    assert mexico.status_code == 201  # a plain Monday in Mexico
    assert holiday.api("POST", "/api/handoffs", handoff_body(conversation(), country="AR")).status_code == 422

    slot = closed["callback_slots"][1]
    ticket = holiday.api("POST", "/api/tickets", {
        "conversation_id": conversation(), "kind": "callback", "callback_at": slot, "contact": "+51987654321",
        "summary": "Quiere hablar de su deuda", "customer": {"name": "José", "verified": False},
    })
    assert ticket.status_code == 201 and re.fullmatch(r"LL-[A-Z2-9]{6}", ticket.json()["code"])
    night_call = holiday.api("POST", "/api/tickets", {
        "conversation_id": conversation(), "kind": "callback", "callback_at": "2025-07-30T21:00:00-05:00",
        "summary": "x",
    })
    assert night_call.status_code == 422 and "outside business hours" in night_call.json()["detail"]


def test_tickets_and_callbacks_are_listed_for_agents(desk: DeskService) -> None:
    callback = {"conversation_id": conversation(), "kind": "callback", "callback_at": "2025-07-31T10:00:00-05:00",
                "contact": "+51912345678", "summary": "Llamar por el plan de pagos",
                "customer": {"customer_id": 2, "name": "José Luis", "verified": True, "document": "45879632"}}
    key = uuid.uuid4().hex
    created = desk.api("POST", "/api/tickets", callback, key=key)
    assert created.status_code == 201
    again = desk.api("POST", "/api/tickets", callback, key=key)
    assert again.status_code == 201 and again.json() == created.json()
    conflict = desk.api("POST", "/api/tickets", {**callback, "summary": "otra cosa"}, key=key)
    assert conflict.status_code == 409
    message = desk.api("POST", "/api/tickets", {"conversation_id": conversation(), "kind": "ticket",
                                                "summary": "Deja su mensaje: quiere su cronograma"})
    assert message.status_code == 201 and message.json()["code"].startswith("TK-")
    missing = desk.api("POST", "/api/tickets", {"conversation_id": "x", "kind": "callback", "summary": "x"})
    assert missing.status_code == 422 and "callback_at is required" in missing.json()["detail"]

    agent = desk.console("agente1")
    page = agent.page("/console/tickets")
    code = created.json()["code"]
    assert code in page and message.json()["code"] in page and "Llamar por el plan de pagos" in page
    assert "31/07/2025 10:00" in page and "45879632" not in page
    assert desk.rows("SELECT customer FROM tickets WHERE code = ?", code)[0][0].count("*****632") == 1
    agent.ok(f"/console/tickets/{created.json()['ticket_id']}/done")
    assert "Atendido" in agent.page("/console/tickets")

    # Resolving with a callback files one too, at the time the agent agreed with the customer.
    cid = conversation()
    handoff_id = desk.open_handoff(cid)["handoff_id"]
    agent.ok(f"/console/conversations/{handoff_id}/claim")
    no_time = agent.act(f"/console/conversations/{handoff_id}/resolve", outcome="callback")
    assert no_time.status_code == 422
    agent.ok(f"/console/conversations/{handoff_id}/resolve", outcome="callback", callback_at="2025-07-31T15:00")
    tickets = agent.page("/console/tickets")
    assert "Llamada acordada por Andrea Rojas" in tickets and "31/07/2025 15:00" in tickets


def test_handoffs_and_messages_are_idempotent(desk: DeskService) -> None:
    desk.console("agente1")
    cid = conversation()
    key = uuid.uuid4().hex
    first = desk.api("POST", "/api/handoffs", handoff_body(cid), key=key)
    assert first.status_code == 201
    replay = desk.api("POST", "/api/handoffs", handoff_body(cid), key=key)
    assert (replay.status_code, replay.json()) == (201, first.json())
    changed = desk.api("POST", "/api/handoffs", handoff_body(cid, priority="urgent"), key=key)
    assert changed.status_code == 409
    existing = desk.api("POST", "/api/handoffs", handoff_body(cid, reason="frustration"))
    assert existing.status_code == 200
    assert existing.json() == {"handoff_id": first.json()["handoff_id"], "status": "queued",
                               "position": existing.json()["position"]}
    handoff_id = first.json()["handoff_id"]

    message = {"event_id": f"{cid}:1722351600.1", "text": "¿sigue ahí?", "at": "2025-07-30T10:05:00-05:00",
               "attachments": [{"filename": "voucher.pdf", "content_type": "application/pdf",
                                "media_url": "https://files.example/voucher.pdf"}]}
    assert desk.api("POST", f"/api/handoffs/{cid}/messages", message).json() == {"status": "accepted"}
    duplicate = desk.api("POST", f"/api/handoffs/{cid}/messages", message)
    assert (duplicate.status_code, duplicate.json()) == (202, {"status": "duplicate"})
    page = desk.console("agente2").page(f"/console/conversations/{handoff_id}")
    assert page.count("¿sigue ahí?") == 1 and "voucher.pdf" in page
    assert "no reconozco esta deuda" in page  # the transcript sent with the handoff
    stranger = conversation()
    assert desk.api("POST", f"/api/handoffs/{stranger}/messages", {**message, "event_id": f"{stranger}:1"}) \
        .status_code == 404

    assert desk.api("GET", f"/api/handoffs/{conversation()}").status_code == 404
    invalid = desk.api("POST", "/api/handoffs", handoff_body(conversation(), priority="soon"))
    assert invalid.status_code == 422 and "priority" in invalid.json()["detail"]
    not_json = requests.post(f"{desk.url}/api/handoffs", data=b"{nope", timeout=10,
                             headers={"Authorization": f"Bearer {API_TOKEN}", "Content-Type": "application/json"})
    assert not_json.status_code == 400
    empty = desk.api("POST", f"/api/handoffs/{cid}/messages",
                     {"event_id": "e", "text": " ", "at": "2025-07-30T10:00:00Z"})
    assert empty.status_code == 422


def test_the_context_card_shows_who_the_customer_is_and_why(desk: DeskService) -> None:
    desk.console("agente1")
    cid = conversation()
    handoff_id = desk.open_handoff(cid, reason="legal", priority="urgent", customer={
        "customer_id": 4, "name": "Carlos <b>Mendoza</b>", "verified": False, "document": "DNI 09876543"})["handoff_id"]
    page = desk.console("supervisor").page(f"/console/conversations/{handoff_id}")
    assert "Identidad no verificada" in page and "Mención legal o reclamo formal" in page and "Urgente" in page
    assert "Cobranza" in page and "Monto a pagar" in page and "350.00" in page and "PO-1A2B3C" in page
    assert "Carlos &lt;b&gt;Mendoza&lt;/b&gt;" in page and "<b>Mendoza" not in page
    assert "DNI *****543" in page and "09876543" not in page  # only the last digits reach the console
    assert "Asignar" in page  # a supervisor can assign a queued conversation


def test_open_consoles_get_live_events(desk: DeskService) -> None:
    agent = desk.console("agente1")
    stream = agent.http.get(f"{desk.url}/console/events", stream=True, timeout=10)
    assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
    lines = stream.iter_lines(decode_unicode=True)
    assert next(lines) == "retry: 2000"
    cid = conversation()
    handoff_id = desk.open_handoff(cid)["handoff_id"]
    desk.api("POST", f"/api/handoffs/{cid}/messages", {"event_id": f"{cid}:9", "text": "hola",
                                                       "at": "2025-07-30T10:00:00-05:00"})
    seen = []
    for line in lines:
        if line.startswith("data: "):
            event = json.loads(line[len("data: "):])
            if event["handoff_id"] == handoff_id:
                seen.append(event["type"])
        if seen == ["handoff_created", "customer_message"]:
            break
    stream.close()
    assert seen == ["handoff_created", "customer_message"]
