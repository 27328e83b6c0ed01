"""Fixtures that run real service processes for unit tests of their HTTP APIs and of clients that call them."""

from __future__ import annotations

import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import pytest
import requests

from credia.processes import ManagedProcess, free_port

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TEST_WEBHOOK_SECRET = "test-webhook-secret"


@dataclass
class CoreBankingService:
    """A running ``python -m credia.core_banking`` on its own SQLite file, seeded for today in Lima."""

    url: str
    webhook_secret: str
    database_url: str
    process: ManagedProcess
    http: requests.Session

    def get(self, path: str, **params: Any) -> requests.Response:
        return self.http.get(f"{self.url}{path}", params=params, timeout=10)

    def post(self, path: str, json: Any = None, **kwargs: Any) -> requests.Response:
        return self.http.post(f"{self.url}{path}", json=json, timeout=10, **kwargs)

    def put(self, path: str, json: Any = None) -> requests.Response:
        return self.http.put(f"{self.url}{path}", json=json, timeout=10)


def start_core_banking(directory: Path, webhook_secret: str = TEST_WEBHOOK_SECRET, **env: str) -> CoreBankingService:
    """Start the service (a fresh database in ``directory`` gets demo data) and wait until it is healthy."""
    port = free_port()
    database_url = f"sqlite:///{directory / 'core_banking.db'}"
    process = ManagedProcess(
        name="core-banking",
        command=[sys.executable, "-m", "credia.core_banking"],
        health_url=f"http://127.0.0.1:{port}/health",
        env={
            "CORE_BANKING_PORT": str(port),
            "CORE_BANKING_DATABASE_URL": database_url,
            "PAYMENTS_WEBHOOK_SECRET": webhook_secret,
            **env,
        },
        log_path=directory / "core_banking.log",
        cwd=PROJECT_ROOT,
    )
    process.start()
    try:
        process.wait_healthy(timeout=60)
    except Exception:
        process.stop()
        raise
    return CoreBankingService(f"http://127.0.0.1:{port}", webhook_secret, database_url, process, requests.Session())


@pytest.fixture(scope="module")
def core_banking(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoreBankingService]:
    """One core-banking process per test module; tests in a module share (and may change) its data."""
    service = start_core_banking(tmp_path_factory.mktemp("core_banking"))
    try:
        yield service
    finally:
        service.http.close()
        service.process.stop()


PUBLIC_URL = "https://pagos.credia.example"


class PaymentsService:
    """The real service in a subprocess, with its own SQLite file."""

    def __init__(self, db_path: Path, log_path: Path, core_banking_url: str, **env: str) -> None:
        self.port = free_port()
        self.database_url = f"sqlite:///{db_path}"
        self.process = ManagedProcess(
            name="payments",
            command=[sys.executable, "-m", "credia.payments"],
            health_url=f"{self.url}/health",
            env={
                "PAYMENTS_PORT": str(self.port),
                "PAYMENTS_DATABASE_URL": self.database_url,
                "PAYMENTS_WEBHOOK_SECRET": TEST_WEBHOOK_SECRET,
                "CORE_BANKING_URL": core_banking_url,
                "PAYMENTS_PUBLIC_URL": "",
                "PAYMENTS_WEBHOOK_RETRY_BASE_SECONDS": "0.1",
                "PAYMENTS_WEBHOOK_MAX_ATTEMPTS": "10",
                "PAYMENTS_WEBHOOK_TIMEOUT_SECONDS": "2",
                "PAYMENTS_WEBHOOK_POLL_SECONDS": "0.2",
                **env,
            },
            log_path=log_path,
            cwd=PROJECT_ROOT,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process.start()
        self.process.wait_healthy(timeout=30)

    def stop(self) -> None:
        self.process.stop()

    def create_link(self, body: Dict[str, Any], key: str | None = None) -> requests.Response:
        headers = {"Idempotency-Key": key or uuid.uuid4().hex}
        return requests.post(f"{self.url}/links", json=body, headers=headers, timeout=10)

    def new_link(self, **overrides: Any) -> Dict[str, Any]:
        response = self.create_link(link_body(**overrides))
        assert response.status_code == 201, response.text
        return response.json()

    def get(self, path: str, **params: Any) -> requests.Response:
        return requests.get(f"{self.url}{path}", params=params, timeout=10)

    def complete(self, link_id: str) -> requests.Response:
        return requests.post(f"{self.url}/links/{link_id}/complete", timeout=10)

    def notifications(self, link_id: str) -> List[Dict[str, Any]]:
        response = self.get(f"/links/{link_id}/notifications")
        assert response.status_code == 200, response.text
        return response.json()

    def wait_notification(
        self, link_id: str, until: Callable[[Dict[str, Any]], bool], timeout: float = 15.0
    ) -> Dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = self.notifications(link_id)
            matching = [row for row in rows if until(row)]
            if matching:
                return matching[0]
            time.sleep(0.05)
        raise AssertionError(f"notification of {link_id} never matched; last: {rows}\n{self.process.log_tail()}")


def link_body(**overrides: Any) -> Dict[str, Any]:
    body = {
        "amount": "150.00",
        "reference": f"CUOTA-{uuid.uuid4().hex[:10]}",
        "customer_id": "CUST-001",
        "loan_id": "LN-2024-001",
        "description": "Cuota 3 de 12",
    }
    body.update(overrides)
    return body
