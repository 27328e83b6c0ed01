"""The reminder scheduler against the real core-banking process: the opt-out endpoint, broken promises detected
and stored, and a scheduler process stopped in the middle of a run and started again (nothing lost, nothing
sent twice, the reminder caught between Rasa and the record confirmed from the conversation); its API and CLI.

Rasa is a small HTTP server in the test that records ``trigger_intent`` calls and serves them back as the
conversation's tracker, and can hold one call unanswered so the scheduler can be killed while it waits.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple
from urllib.parse import parse_qs, unquote, urlsplit
from zoneinfo import ZoneInfo

import pytest
import requests
from sqlalchemy import update

from credia.core_banking.models import PromiseToPay
from credia.db import make_engine, make_session_factory
from credia.processes import ManagedProcess, free_port
from credia.reminders.contact import customer_zones, window_block
from credia.reminders.scheduler import Scheduler, fixed_clock
from credia.reminders.sources import CoreBanking
from credia.reminders.store import ContactStore
from tests.unit.conftest import PROJECT_ROOT, CoreBankingService
from tests.unit.test_reminders_scheduler import POLICY, FakeRasa

LIMA = ZoneInfo("America/Lima")
RASA_TOKEN = "rasa-test-token"
API_TOKEN = "reminders-test-token"


class FakeRasaServer:
    """Rasa's HTTP API as the scheduler uses it: ``trigger_intent`` recorded, the tracker served back."""

    def __init__(self) -> None:
        self.port = free_port()
        self.triggers: List[Tuple[str, str, Dict[str, Any]]] = []  # (conversation, output channel, body)
        self.hold_call: Optional[int] = None  # this call (1-based) is recorded and left unanswered
        self.released = threading.Event()
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                url = urlsplit(self.path)
                conversation = unquote(url.path.split("/")[2])
                query = parse_qs(url.query)
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                if query.get("token") != [RASA_TOKEN]:
                    return self.answer(401, {"status": "failure"})
                with server.lock:
                    server.triggers.append((conversation, query["output_channel"][0], body))
                    held = server.hold_call == len(server.triggers)
                if held:
                    server.released.wait(60)
                self.answer(200, {"tracker": {}})

            def do_GET(self) -> None:  # noqa: N802
                conversation = unquote(urlsplit(self.path).path.split("/")[2])
                with server.lock:
                    events = [
                        {"event": "user", "text": f"EXTERNAL: {body['name']}",
                         "parse_data": {"intent": {"name": body["name"]},
                                        "entities": [{"entity": k, "value": v} for k, v in body["entities"].items()]}}
                        for sent_to, _channel, body in server.triggers if sent_to == conversation
                    ]
                self.answer(200, {"sender_id": conversation, "events": events})

            def answer(self, status: int, body: Dict[str, Any]) -> None:
                payload = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the scheduler was killed while waiting

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        threading.Thread(target=self.server.serve_forever, name="fake-rasa", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reminder_ids(self) -> List[str]:
        with self.lock:
            return [body["entities"]["reminder_id"] for _conversation, _channel, body in self.triggers]

    def stop(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def rasa() -> Iterator[FakeRasaServer]:
    server = FakeRasaServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def service(core_banking: CoreBankingService) -> CoreBankingService:
    return core_banking


def new_phone() -> str:
    return "+519" + "".join(random.choice("0123456789") for _ in range(8))


def new_customer(
    service: CoreBankingService, consents: Tuple[str, ...] = ("whatsapp",), **fields: Any
) -> Dict[str, Any]:
    body = {
        "document_type": "DNI",
        "document_number": "6" + "".join(random.choice("0123456789") for _ in range(7)),
        "first_name": "Cliente",
        "last_name": "Recordatorio",
        "date_of_birth": "1990-01-01",
        "phone": new_phone(),
        **fields,
    }
    created = service.post("/customers", body)
    assert created.status_code == 201, created.text
    customer = created.json()
    for channel in consents:
        granted = service.put(f"/customers/{customer['id']}/consents/{channel}", {"granted": True, "source": "test"})
        assert granted.status_code == 200, granted.text
    return customer


def new_loan(service: CoreBankingService, customer_id: int) -> Dict[str, Any]:
    """A loan disbursed today: its first installment falls due about a month from now."""
    body = {"customer_id": customer_id, "product_code": "PERSONAL", "amount": "3000", "term_months": 6,
            "monthly_income": 4000, "employment_type": "employee"}
    application = service.post("/applications", body).json()
    for status in ("approved", "disbursed"):
        moved = service.post(f"/applications/{application['id']}/transitions", {"status": status})
        assert moved.status_code == 200, moved.text
    return service.get(f"/loans/{moved.json()['loan_id']}").json()


def business_morning(first: date, last: date) -> datetime:
    """10:00 in Lima on the first day from ``first`` to ``last`` when Peru's law allows a contact."""
    rules = POLICY.rules("PE")
    day = first
    while day <= last:
        moment = datetime(day.year, day.month, day.day, 10, tzinfo=LIMA)
        if window_block(moment, customer_zones("+51987654321", rules), rules) is None:
            return moment
        day += timedelta(days=1)
    raise AssertionError(f"no working day from {first} to {last}")


def scheduler_env(service: CoreBankingService, rasa: FakeRasaServer, tmp: Path, **extra: str) -> Dict[str, str]:
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("REMINDERS_", "DESK_", "CREDIA_REMINDERS"))}
    return {
        **env,
        "CORE_BANKING_URL": service.url,
        "RASA_URL": rasa.url,
        "RASA_AUTH_TOKEN": RASA_TOKEN,
        "REMINDERS_DATABASE_URL": f"sqlite:///{tmp / 'reminders.db'}",
        "REMINDERS_TRACKER_DB": str(tmp / "no_tracker_yet.db"),
        "REMINDERS_SENDING_STALE_SECONDS": "0",
        **extra,
    }


def run_cli(env: Dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "credia.reminders", *args], env=env, cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=120)


# --- opt-out ------------------------------------------------------------------------------------------------


def test_opt_out_withdraws_consent_for_the_address_once_and_keeps_when_and_where(service: CoreBankingService) -> None:
    customer = new_customer(service, consents=("whatsapp", "sms"), email="Opt.Out@Example.com")
    phone = customer["phone"]
    first = service.post("/consents/opt-out",
                         {"channel": "whatsapp", "address": phone.lstrip("+"), "source": "whatsapp_baja"})
    assert first.status_code == 200, first.text
    body = first.json()
    assert (body["channel"], body["address"], body["changed"]) == ("whatsapp", phone, 1)
    assert [c["customer_id"] for c in body["customers"]] == [customer["id"]]
    for again in ("whatsapp:" + phone, phone):  # the Twilio and E.164 forms of the same address
        repeat = service.post("/consents/opt-out", {"channel": "whatsapp", "address": again, "source": "x"})
        assert repeat.json() == {"channel": "whatsapp", "address": phone, "changed": 0, "customers": []}

    consents = service.get(f"/customers/{customer['id']}/consents").json()
    current = {item["channel"]: item for item in consents["current"]}
    assert current["whatsapp"]["granted"] is False and current["whatsapp"]["source"] == "whatsapp_baja"
    assert current["sms"]["granted"] is True
    revoked = [e for e in consents["history"] if e["channel"] == "whatsapp" and not e["granted"]]
    assert [(e["source"], e["recorded_at"]) for e in revoked] == [("whatsapp_baja", body["customers"][0]["revoked_at"])]

    by_mail = service.post("/consents/opt-out",
                           {"channel": "email", "address": "opt.out@example.com", "source": "email_link"})
    assert by_mail.json()["changed"] == 1


def test_opt_out_of_an_unknown_or_shared_address(service: CoreBankingService) -> None:
    unknown = service.post("/consents/opt-out", {"channel": "sms", "address": new_phone(), "source": "sms_stop"})
    assert unknown.status_code == 200 and unknown.json()["changed"] == 0
    shared = new_phone()
    owners = [new_customer(service, consents=("sms",), phone=shared)["id"] for _ in range(2)]
    both = service.post("/consents/opt-out", {"channel": "sms", "address": shared, "source": "sms_stop"}).json()
    assert sorted(c["customer_id"] for c in both["customers"]) == owners
    for wrong in ({"channel": "sms", "address": "hola", "source": "x"},
                  {"channel": "fax", "address": shared, "source": "x"},
                  {"channel": "sms", "address": shared}):
        assert service.post("/consents/opt-out", wrong).status_code == 422


# --- broken promises ----------------------------------------------------------------------------------------


def test_a_broken_promise_is_stored_as_broken_and_reminded_the_day_after(service: CoreBankingService) -> None:
    loan = overdue_loan_without_promise(service)
    terms = service.get(f"/loans/{loan['id']}/promise-terms").json()
    made = service.post(f"/loans/{loan['id']}/promises",
                        {"amount": terms["min_amount"], "promised_date": terms["earliest_date"]})
    assert made.status_code == 201, made.text
    promise_id = made.json()["id"]
    today = date.fromisoformat(terms["earliest_date"])
    engine = make_engine(service.database_url)
    try:
        with make_session_factory(engine)() as session:  # the promised day passes without a payment
            session.execute(update(PromiseToPay).where(PromiseToPay.id == promise_id).values(
                promised_date=today - timedelta(days=1), created_at=datetime.now(LIMA) - timedelta(days=4)))
            session.commit()

        [facts] = [f for f in CoreBanking(service.url).loans(loan["customer_id"]) if f.id == loan["id"]]
        assert [p.status for p in facts.promises if p.id == promise_id] == ["broken"]
        with make_session_factory(engine)() as session:
            stored = session.get(PromiseToPay, promise_id)
            assert stored.status == "broken" and stored.resolved_at is not None
    finally:
        engine.dispose()

    store = ContactStore("sqlite://")
    try:
        clock = fixed_clock(datetime(today.year, today.month, today.day, 10, tzinfo=LIMA))
        Scheduler(POLICY, store, CoreBanking(service.url), FakeRasa(clock), clock).run(
            customer_ids=[loan["customer_id"]]
        )
        steps = {(row["kind"], row["loan_id"]) for row in store.decisions(loan["customer_id"])}
        assert ("promise_broken", loan["id"]) in steps
    finally:
        store.close()


def overdue_loan_without_promise(service: CoreBankingService) -> Dict[str, Any]:
    for customer in service.get("/customers", limit=500).json()[::-1]:
        for loan in service.get(f"/customers/{customer['id']}/loans").json():
            if loan["bucket"] == "1-30" and not loan["collections_hold"] and loan["active_plan_id"] is None:
                if service.get(f"/loans/{loan['id']}/promise-terms").json()["pending_promise"] is None:
                    return loan
    raise AssertionError("no seeded loan 1-30 days late without a promise")


# --- restart ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    """Five customers with a loan disbursed today, a working morning around its first due date, and the
    scheduler's environment (one store for the module)."""

    customers: List[Dict[str, Any]]
    instant: datetime
    env: Dict[str, str]

    @property
    def run_args(self) -> List[str]:
        return ["run", "--at", self.instant.isoformat(), *[f"--customer={c['id']}" for c in self.customers]]

    @property
    def conversations(self) -> List[str]:
        return sorted(c["phone"].lstrip("+") for c in self.customers)


@pytest.fixture(scope="module")
def batch(service: CoreBankingService, rasa: FakeRasaServer, tmp_path_factory: pytest.TempPathFactory) -> Batch:
    customers = [new_customer(service) for _ in range(5)]
    loans = [new_loan(service, customer["id"]) for customer in customers]
    due = date.fromisoformat(loans[0]["installments"][0]["due_date"])
    assert all(loan["installments"][0]["due_date"] == due.isoformat() for loan in loans)
    # Every day from 3 before the due date to 5 after has a step of the cadence; take the first working one.
    instant = business_morning(due - timedelta(days=3), due + timedelta(days=5))
    return Batch(customers, instant, scheduler_env(service, rasa, tmp_path_factory.mktemp("reminders")))


def test_a_scheduler_stopped_mid_run_loses_nothing_and_sends_nothing_twice(
    rasa: FakeRasaServer, batch: Batch
) -> None:
    customers, env, args = batch.customers, batch.env, batch.run_args
    before = len(rasa.triggers)
    rasa.hold_call = before + 3  # the third reminder reaches Rasa, and its answer never comes back
    process = subprocess.Popen([sys.executable, "-m", "credia.reminders", *args], env=env, cwd=PROJECT_ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while len(rasa.triggers) < rasa.hold_call and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(rasa.triggers) == rasa.hold_call, "the scheduler never reached the third reminder"
        time.sleep(0.3)  # it is waiting for Rasa's answer now
    finally:
        process.kill()
        process.wait(timeout=10)
    rasa.hold_call = None
    rasa.released.set()
    assert len(rasa.triggers) == before + 3

    again = run_cli(env, *args)
    assert again.returncode == 0, again.stdout + again.stderr
    ids = rasa.reminder_ids()[before:]
    assert len(ids) == 5 and len(set(ids)) == 5, "a reminder was lost or sent twice"
    triggers = rasa.triggers[before:]
    assert sorted(conversation for conversation, _channel, _body in triggers) == batch.conversations
    assert {channel for _conversation, channel, _body in triggers} == {"whatsapp"}
    assert len({body["entities"]["reminder_kind"] for _c, _ch, body in triggers}) == 1  # the same step for all

    store = ContactStore(env["REMINDERS_DATABASE_URL"])
    try:
        decisions = [row for c in customers for row in store.decisions(c["id"])]
        assert [row["outcome"] for row in decisions] == ["sent"] * 5
        assert sum("confirmed in the conversation" in (row["detail"] or "") for row in decisions) == 1
    finally:
        store.close()
    third = run_cli(env, *args)  # and once more: nothing new
    assert third.returncode == 0 and len(rasa.triggers) == before + 5


def test_the_scheduler_service_health_audit_api_and_cli(
    rasa: FakeRasaServer, batch: Batch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    customers, instant = batch.customers, batch.instant
    assert run_cli(batch.env, *batch.run_args).returncode == 0  # the batch has had its reminders
    port = free_port()
    env = {**batch.env, "REMINDERS_PORT": str(port), "REMINDERS_API_TOKEN": API_TOKEN,
           "REMINDERS_NOW": instant.isoformat(), "REMINDERS_INTERVAL_SECONDS": "3600"}
    before = len(rasa.triggers)
    log = tmp_path_factory.mktemp("reminders_service") / "reminders.log"
    scheduler = ManagedProcess("reminders", [sys.executable, "-m", "credia.reminders"],
                               f"http://127.0.0.1:{port}/health", env, log, PROJECT_ROOT)
    scheduler.start()
    try:
        scheduler.wait_healthy(30)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while requests.get(f"{url}/health", timeout=5).json()["last_run_at"] is None:
            assert time.monotonic() < deadline, scheduler.log_tail()
            time.sleep(0.2)
        health = requests.get(f"{url}/health", timeout=5).json()
        assert health["status"] == "ok" and health["last_run_errors"] == []

        assert requests.get(f"{url}/audit", params={"customer_id": customers[0]["id"]}, timeout=5).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert requests.get(f"{url}/audit", headers=wrong, timeout=5).status_code == 401
        auth = {"Authorization": f"Bearer {API_TOKEN}"}
        mine = requests.get(f"{url}/audit", params={"customer_id": customers[0]["id"]}, headers=auth, timeout=5)
        assert mine.status_code == 200, mine.text
        [sent] = mine.json()
        assert (sent["outcome"], sent["channel"]) == ("sent", "whatsapp") and "Ley 29571" in sent["rule"]
        that_day = requests.get(f"{url}/audit", params={"day": instant.date().isoformat()}, headers=auth, timeout=5)
        assert {c["id"] for c in customers} <= {row["customer_id"] for row in that_day.json()}
        assert requests.get(f"{url}/audit", params={"day": "ayer"}, headers=auth, timeout=5).status_code == 422
    finally:
        scheduler.stop()
    # The service's pass (over every customer, at the same simulated instant) sent the batch nothing again.
    new = {conversation for conversation, _channel, _body in rasa.triggers[before:]}
    assert not new & set(batch.conversations)

    listed = run_cli(env, "audit", "--customer", str(customers[0]["id"]))
    assert listed.returncode == 0 and sent["step"] in listed.stdout and "sent" in listed.stdout
    dry = run_cli(env, "dry-run", "--at", instant.isoformat(), "--customer", str(customers[0]["id"]))
    assert dry.returncode == 0 and "dry run" in dry.stdout and "already_sent" in dry.stdout
    assert run_cli(env, "purge", "--older-than-days", "30").returncode != 0  # never below two years


def test_no_reminder_after_an_opt_out(service: CoreBankingService, batch: Batch) -> None:
    customer = batch.customers[0]
    opted = service.post("/consents/opt-out",
                         {"channel": "whatsapp", "address": customer["phone"], "source": "whatsapp_baja"})
    assert opted.json()["changed"] == 1
    loan = service.get(f"/customers/{customer['id']}/loans").json()[0]
    due = date.fromisoformat(loan["next_due_date"])
    store = ContactStore("sqlite://")
    try:
        clock = fixed_clock(datetime(due.year, due.month, due.day, 10, tzinfo=LIMA) + timedelta(days=1))
        rasa = FakeRasa(clock)
        Scheduler(POLICY, store, CoreBanking(service.url), rasa, clock).run(customer_ids=[customer["id"]])
        assert rasa.sent == []
        assert [(row["step"], row["reason"]) for row in store.decisions(customer["id"])] == [("overdue:1", "opted_out")]
    finally:
        store.close()
