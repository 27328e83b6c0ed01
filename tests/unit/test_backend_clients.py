"""The backend clients against a real local HTTP server: timeouts, 5xx, refused connections, safe retries."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from aiohttp import web

from credia.backends import BackendRejected, BackendUnavailable, NotFound
from credia.backends.core_banking import CoreBankingClient
from credia.backends.http import JsonClient
from credia.backends.payments import PaymentsClient
from credia.processes import free_port


class FakeBackend:
    """A real aiohttp server whose answers each test scripts; it counts the requests it receives."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict]] = []
        self.fail_times = 0
        self.fail_status = 503
        self.delay = 0.0
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else {}
        self.calls.append((request.method, request.path, {"body": body, "headers": dict(request.headers)}))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail_times > 0:
            self.fail_times -= 1
            return web.json_response({"detail": "boom"}, status=self.fail_status)
        if request.path == "/products":
            return web.json_response([{"code": "PERSONAL", "name": "Préstamo personal"}])
        if request.path == "/customers":
            found = request.query.get("document_number") == "10117410"
            return web.json_response([{"id": 7}] if found else [])
        if request.path == "/links" and request.method == "POST":
            return web.json_response({"id": "lnk_1", **body}, status=201)
        if request.path == "/bad":
            return web.json_response({"detail": "amount must be positive"}, status=422)
        return web.json_response({"detail": "not found"}, status=404)

    async def __aenter__(self) -> "FakeBackend":
        self.runner = web.AppRunner(self.app)
        await self.runner.setup()
        port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


async def test_get_returns_json() -> None:
    async with FakeBackend() as backend:
        products = await CoreBankingClient(backend.url).products()
    assert products == [{"code": "PERSONAL", "name": "Préstamo personal"}]


async def test_find_customer_returns_none_when_unknown() -> None:
    async with FakeBackend() as backend:
        client = CoreBankingClient(backend.url)
        assert await client.find_customer("DNI", "10117410") == {"id": 7}
        assert await client.find_customer("DNI", "99999999") is None
        assert await client.customer(12345) is None


async def test_get_is_retried_after_5xx_and_succeeds() -> None:
    async with FakeBackend() as backend:
        backend.fail_times = 2
        products = await JsonClient("core-banking", backend.url, retries=2, backoff=0.01).request("GET", "/products")
        assert products[0]["code"] == "PERSONAL"
        assert len(backend.calls) == 3


async def test_persistent_5xx_raises_unavailable() -> None:
    async with FakeBackend() as backend:
        backend.fail_times = 10
        with pytest.raises(BackendUnavailable, match="HTTP 503"):
            await JsonClient("core-banking", backend.url, retries=1, backoff=0.01).request("GET", "/products")
        assert len(backend.calls) == 2


async def test_timeout_raises_unavailable() -> None:
    async with FakeBackend() as backend:
        backend.delay = 1.0
        with pytest.raises(BackendUnavailable, match="timed out"):
            await JsonClient("core-banking", backend.url, timeout=0.2, retries=0).request("GET", "/products")


async def test_connection_refused_raises_unavailable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(BackendUnavailable, match="connection failed"):
        await CoreBankingClient(url, retries=1).products()


async def test_post_without_idempotency_key_is_not_retried() -> None:
    async with FakeBackend() as backend:
        backend.fail_times = 1
        with pytest.raises(BackendUnavailable):
            await JsonClient("x", backend.url, retries=3, backoff=0.01).request("POST", "/links", json={"a": 1})
        assert len(backend.calls) == 1


async def test_payment_link_post_is_retried_with_the_same_idempotency_key() -> None:
    async with FakeBackend() as backend:
        backend.fail_times = 1
        client = PaymentsClient(backend.url)
        client.http.backoff = 0.01
        link = await client.create_link(
            amount=Decimal("150.50"), reference="LOAN-1", customer_id=7, idempotency_key="key-1"
        )
        assert link["id"] == "lnk_1" and link["amount"] == "150.50"
        keys = [call[2]["headers"]["Idempotency-Key"] for call in backend.calls]
        assert keys == ["key-1", "key-1"]


async def test_4xx_is_rejected_with_detail_and_not_retried() -> None:
    async with FakeBackend() as backend:
        client = JsonClient("x", backend.url, retries=3)
        with pytest.raises(BackendRejected) as info:
            await client.request("GET", "/bad")
        assert info.value.status == 422 and info.value.detail == "amount must be positive"
        with pytest.raises(NotFound):
            await client.request("GET", "/nothing-here")
        assert len(backend.calls) == 2
