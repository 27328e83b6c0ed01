"""The WhatsApp ingress gateway as a real process: Meta's checks, the inbox written before the 200, and the relay
to a stand-in for Rasa's webhook (order per customer, retries while it is down, no double relay)."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import pytest
import requests

from credia.channels.meta_webhook import MAX_BODY_BYTES, SIGNATURE_HEADER, signature_of
from credia.channels.whatsapp_gateway import (
    DELIVERED,
    FAILED,
    PENDING,
    WEBHOOK_PATH,
    Delivery,
    GatewayConfig,
    Inbox,
    Relayer,
    ordering_key,
)
from credia.processes import ManagedProcess, free_port
from tests.unit.fake_receiver import FakeReceiver
from tests.waiting import wait_until

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SECRET = "gateway-test-secret"
VERIFY_TOKEN = "gateway-verify-token"


def notification(wa_id: str, text: str) -> bytes:
    message = {"from": wa_id, "id": f"wamid.{uuid.uuid4().hex}", "timestamp": "1767225600", "type": "text",
               "text": {"body": text}}
    value = {"messaging_product": "whatsapp", "contacts": [{"wa_id": wa_id, "profile": {"name": "Ana"}}],
             "messages": [message]}
    payload = {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [
        {"field": "messages", "value": value}]}]}
    return json.dumps(payload, ensure_ascii=False).encode()


class Gateway:
    """A running ``python -m credia.channels.whatsapp_gateway`` with its own SQLite inbox."""

    def __init__(self, directory: Path, relay_port: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.database_url = f"sqlite:///{directory / 'gateway.db'}"
        self.process = ManagedProcess(
            "whatsapp-gateway",
            [sys.executable, "-m", "credia.channels.whatsapp_gateway", "--port", str(self.port)],
            f"{self.url}/health",
            {
                "WHATSAPP_APP_SECRET": SECRET,
                "WHATSAPP_VERIFY_TOKEN": VERIFY_TOKEN,
                "WHATSAPP_RELAY_URL": f"http://127.0.0.1:{relay_port}{WEBHOOK_PATH}",
                "WHATSAPP_GATEWAY_DATABASE_URL": self.database_url,
                "WHATSAPP_GATEWAY_RETRY_BASE_SECONDS": "0.1",
                "WHATSAPP_GATEWAY_MAX_RETRY_SECONDS": "0.4",
                "WHATSAPP_GATEWAY_POLL_SECONDS": "0.2",
            },
            directory / "gateway.log",
            PROJECT_ROOT,
        )
        self.inbox = Inbox(self.database_url)

    def start(self) -> None:
        self.process.start()
        self.process.wait_healthy(30)

    def post(self, body: bytes, signature: Optional[str] = "sign") -> requests.Response:
        headers = {"Content-Type": "application/json"}
        if signature == "sign":
            signature = signature_of(SECRET, body)
        if signature is not None:
            headers[SIGNATURE_HEADER] = signature
        return requests.post(f"{self.url}{WEBHOOK_PATH}", data=body, headers=headers, timeout=10)

    def rows(self) -> List[Delivery]:
        with self.inbox.sessions() as session:
            return list(session.query(Delivery).order_by(Delivery.id))


@pytest.fixture()
def receiver() -> Iterator[FakeReceiver]:
    target = FakeReceiver()
    target.start()
    yield target
    target.stop()


@pytest.fixture()
def gateway(tmp_path: Path, receiver: FakeReceiver) -> Iterator[Gateway]:
    running = Gateway(tmp_path, receiver.port)
    running.start()
    yield running
    running.process.stop()


def test_meta_verification_handshake(gateway: Gateway) -> None:
    url = f"{gateway.url}{WEBHOOK_PATH}"
    ok = requests.get(url, params={"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN,
                                   "hub.challenge": "1158201444"}, timeout=10)
    assert (ok.status_code, ok.text) == (200, "1158201444")
    wrong = requests.get(url, params={"hub.mode": "subscribe", "hub.verify_token": "otro",
                                      "hub.challenge": "1158201444"}, timeout=10)
    assert wrong.status_code == 403 and "1158201444" not in wrong.text


def test_signed_delivery_is_stored_then_relayed_with_the_same_bytes_and_signature(
    gateway: Gateway, receiver: FakeReceiver
) -> None:
    body = notification("51911111111", "hola")
    response = gateway.post(body)
    assert response.status_code == 200, response.text
    stored = gateway.rows()
    assert [row.body for row in stored] == [body]  # in the inbox by the time Meta has its 200
    assert stored[0].sender_key == "51911111111"

    relayed = receiver.wait_for(1)[0]
    assert relayed.path == WEBHOOK_PATH
    assert relayed.body == body
    assert relayed.headers[SIGNATURE_HEADER] == signature_of(SECRET, body)
    wait_until(lambda: gateway.rows()[0].state == DELIVERED, what="the row marked delivered")
    assert requests.get(f"{gateway.url}/health", timeout=10).json()[DELIVERED] == 1


@pytest.mark.parametrize(
    ("body", "signature", "status", "detail"),
    [
        (b'{"object": "whatsapp_business_account"}', None, 401, "missing X-Hub-Signature-256"),
        (b'{"object": "whatsapp_business_account"}', "sha256=" + "0" * 64, 403, "invalid signature"),
        (b"{no es json", "sign", 400, "body is not valid JSON"),
        (b"[1, 2]", "sign", 400, "a JSON object is required"),
    ],
)
def test_unsigned_wrongly_signed_or_malformed_deliveries_are_refused_and_not_stored(
    gateway: Gateway, receiver: FakeReceiver, body: bytes, signature: Optional[str], status: int, detail: str
) -> None:
    response = gateway.post(body, signature)
    assert (response.status_code, response.json()["detail"]) == (status, detail)
    assert gateway.rows() == []
    assert receiver.received == []


def test_a_signature_made_with_another_secret_is_refused(gateway: Gateway) -> None:
    body = notification("51911111111", "hola")
    assert gateway.post(body, signature_of("otro-secreto", body)).status_code == 403
    assert gateway.rows() == []


def test_oversized_bodies_are_refused_before_being_read(gateway: Gateway) -> None:
    body = b'{"pad": "' + b"x" * MAX_BODY_BYTES + b'"}'
    response = gateway.post(body)
    assert response.status_code == 413
    assert gateway.rows() == []


def test_each_customer_in_arrival_order_even_when_a_relay_fails(gateway: Gateway, receiver: FakeReceiver) -> None:
    receiver.answer_next(500)  # whichever customer's first relay this is must not be overtaken by its next one
    sent: Dict[str, List[bytes]] = {"51922222222": [], "51933333333": []}
    for n in range(8):
        for wa_id in sent:
            body = notification(wa_id, f"mensaje {n}")
            sent[wa_id].append(body)
            assert gateway.post(body).status_code == 200
    received = receiver.wait_for(17, timeout=30)
    assert [request.answered for request in received].count(500) == 1
    for wa_id, bodies in sent.items():
        delivered = [r.body for r in received if r.answered == 200 and wa_id.encode() in r.body]
        assert delivered == bodies
    wait_until(lambda: all(row.state == DELIVERED for row in gateway.rows()), what="every row delivered")


def test_relay_retries_while_rasa_is_down_and_survives_a_gateway_restart(tmp_path: Path) -> None:
    target = FakeReceiver()  # not started yet: Rasa is down
    running = Gateway(tmp_path, target.port)
    running.start()
    try:
        body = notification("51944444444", "¿cuánto debo?")
        assert running.post(body).status_code == 200
        wait_until(lambda: running.rows()[0].attempts >= 2, what="failed relay attempts")
        assert running.rows()[0].state == PENDING
        assert "unreachable" in running.rows()[0].last_error

        running.process.stop()  # the gateway restarts while Rasa is still down: the row is not lost
        running.start()
        target.answer_next(503)  # Rasa comes back, still starting up
        target.start()
        received = target.wait_for(2, timeout=20)
        assert [request.answered for request in received] == [503, 200]
        assert received[1].body == body
        wait_until(lambda: running.rows()[0].state == DELIVERED, what="the row marked delivered")
    finally:
        running.process.stop()
        target.stop()


def test_a_permanent_refusal_is_marked_failed_and_not_retried(gateway: Gateway, receiver: FakeReceiver) -> None:
    receiver.answer_next(403)
    assert gateway.post(notification("51955555555", "hola")).status_code == 200
    wait_until(lambda: gateway.rows()[0].state == FAILED, what="the row marked failed")
    assert "403" in gateway.rows()[0].last_error
    nxt = notification("51955555555", "sigo aquí")  # the customer's next message is not blocked by it
    assert gateway.post(nxt).status_code == 200
    wait_until(lambda: gateway.rows()[1].state == DELIVERED, what="the next row delivered")
    assert len(receiver.received) == 2


async def test_two_relayers_on_one_inbox_never_relay_the_same_row(tmp_path: Path, receiver: FakeReceiver) -> None:
    config = GatewayConfig(SECRET, VERIFY_TOKEN, f"{receiver.url}{WEBHOOK_PATH}", f"sqlite:///{tmp_path / 'in.db'}",
                           retry_base_seconds=0.05, poll_seconds=0.05, concurrency=4)
    inbox = Inbox(config.database_url)
    bodies = [notification(f"5196666666{n % 6}", f"mensaje {n}") for n in range(36)]
    for body in bodies:
        inbox.add(body, signature_of(SECRET, body), ordering_key(json.loads(body)))
    relayers = [Relayer(Inbox(config.database_url), config) for _ in range(2)]
    tasks = [asyncio.create_task(relayer.run()) for relayer in relayers]
    try:
        for _ in range(600):
            if inbox.counts()[DELIVERED] == len(bodies):
                break
            await asyncio.sleep(0.05)
    finally:
        for relayer in relayers:
            relayer.stop()
        await asyncio.gather(*tasks)
    received = [request.body for request in receiver.received]
    assert sorted(received) == sorted(bodies)  # each exactly once
    assert inbox.counts() == {PENDING: 0, DELIVERED: 36, FAILED: 0}


def test_ordering_key_is_the_first_customer_and_never_fails_on_odd_shapes() -> None:
    assert ordering_key(json.loads(notification("51977777777", "hola"))) == "51977777777"
    status = {"entry": [{"changes": [{"value": {"statuses": [{"id": "wamid.1", "recipient_id": "51988888888"}]}}]}]}
    assert ordering_key(status) == "51988888888"
    for odd in ({}, {"entry": "x"}, {"entry": [{"changes": [{"value": {"messages": {"from": "1"}}}]}]},
                {"entry": [None, {"changes": [None]}]}):
        assert ordering_key(odd) == ""


def test_retry_delay_doubles_up_to_its_cap() -> None:
    config = GatewayConfig("s", "t", "http://x", "sqlite://", retry_base_seconds=0.5, max_retry_seconds=3)
    assert [config.retry_delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3, 3]


async def test_inbox_operations_run_one_at_a_time_in_the_order_called(tmp_path: Path) -> None:
    """Concurrent acknowledgements never wait for each other on SQLite's lock: one thread does them in turn."""
    import threading
    import time

    inbox = Inbox(f"sqlite:///{tmp_path / 'inbox.db'}")
    running, most, order, threads = 0, 0, [], set()

    def operation(number: int) -> int:
        nonlocal running, most
        running += 1
        most = max(most, running)
        threads.add(threading.get_ident())
        time.sleep(0.002)
        order.append(number)
        running -= 1
        return number

    assert await asyncio.gather(*(inbox.call(operation, n) for n in range(20))) == list(range(20))
    assert most == 1 and order == list(range(20)) and len(threads) == 1 and threading.get_ident() not in threads
    ids = await asyncio.gather(*(inbox.call(inbox.add, b"{}", "sha256=x", f"519{n}") for n in range(30)))
    assert sorted(ids) == list(range(1, 31)) and (await inbox.call(inbox.counts))["pending"] == 30
