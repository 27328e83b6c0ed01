"""Schema-based fuzzing of the services' OpenAPI: core banking, payments, the desk API and the reminders API.

Every operation of each service's ``/openapi.json`` gets 100 requests drawn from its schemas (and outside them),
with a fixed seed, against the app in-process; none may get a 5xx or make the app raise.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.asgi_client import AsgiClient
from tests.unit.fuzz_support import Operation, operations, requests_for

FUZZ = settings(max_examples=100, derandomize=True, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))
SECRET = "fuzz-webhook-secret"
DESK_TOKEN = "fuzz-desk-api-token"
REMINDERS_TOKEN = "fuzz-reminders-token"


def core_banking_app(directory: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    from credia.core_banking.app import create_app
    from credia.core_banking.seed import seed_if_empty
    from credia.credit.policy import load_policy
    from credia.db import make_engine

    url = f"sqlite:///{directory / 'core_banking.db'}"
    app = create_app(url, SECRET)
    engine = make_engine(url)
    seed_if_empty(engine, date(2026, 12, 7), load_policy())
    engine.dispose()
    return app


def payments_app(directory: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    from credia.payments.app import PaymentsConfig, create_app

    monkeypatch.setenv("PAYMENTS_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("PAYMENTS_DATABASE_URL", f"sqlite:///{directory / 'payments.db'}")
    monkeypatch.setenv("CORE_BANKING_URL", "http://127.0.0.1:9")  # nowhere: notifications wait for retries
    return create_app(PaymentsConfig.from_env())


def desk_app(directory: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    from credia.desk.app import create_app
    from credia.desk.config import DeskConfig

    for name, value in {"DESK_DATABASE_URL": f"sqlite:///{directory / 'desk.db'}", "DESK_API_TOKEN": DESK_TOKEN,
                        "DESK_SUPERVISOR_PASSWORD": "clave-supervisor", "DESK_AGENT_PASSWORD": "clave-agente",
                        "RASA_URL": "http://127.0.0.1:9", "RASA_AUTH_TOKEN": "fuzz-rasa-token",
                        "DESK_TRACKER_DB": f"sqlite:///{directory / 'tracker.db'}"}.items():
        monkeypatch.setenv(name, value)
    return create_app(DeskConfig.from_env())


def reminders_app(directory: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    from credia.reminders.api import create_app
    from credia.reminders.store import ContactStore

    return create_app(ContactStore(f"sqlite:///{directory / 'reminders.db'}"), REMINDERS_TOKEN)


# How to build each app, where it publishes its description, and the credentials of its API.
SERVICES: Dict[str, tuple[Callable[[Path, pytest.MonkeyPatch], Any], str, Dict[str, str]]] = {
    "core-banking": (core_banking_app, "/openapi.json", {}),
    "payments": (payments_app, "/openapi.json", {}),
    "desk": (desk_app, "/api/openapi.json", {"Authorization": f"Bearer {DESK_TOKEN}"}),
    "reminders": (reminders_app, "/openapi.json", {"Authorization": f"Bearer {REMINDERS_TOKEN}"}),
}


@pytest.fixture(scope="module", params=list(SERVICES))
def service(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    build, description, headers = SERVICES[request.param]
    with pytest.MonkeyPatch.context() as monkeypatch:
        app = build(tmp_path_factory.mktemp(request.param), monkeypatch)
        with AsgiClient(app) as client:
            spec = client.request("GET", description, headers=headers).json()
            yield request.param, client, spec, headers


def test_every_operation_of_every_service_answers_fuzzed_requests_without_a_server_error(service: tuple) -> None:
    name, client, spec, headers = service
    found = operations(spec)
    assert found, f"{name} publishes no operation"
    failures: List[str] = []
    for operation in found:
        failures += fuzz(client, spec, operation, headers)
    assert failures == []


def fuzz(client: AsgiClient, spec: Dict[str, Any], operation: Operation, headers: Dict[str, str]) -> List[str]:
    failures: List[str] = []

    @FUZZ
    @given(request=requests_for(operation, spec), authorised=st.booleans())
    def run(request: Dict[str, Any], authorised: bool) -> None:
        answer = client.request(request["method"], request["path"], params=request["params"],
                                json=request["json"], headers=headers if authorised else {})
        if answer.status >= 500:
            failures.append(f"{operation}: {request} -> {answer.status} {answer.body[:200]!r}")

    run()
    return failures[:3]
