"""The payments mock, started for real (``python -m credia.payments``) against a real webhook receiver."""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import pytest
import requests
from sqlalchemy import select, text, update

from credia.db import make_engine
from credia.payments.models import Notification, PaymentLink
from credia.signing import SIGNATURE_HEADER, SignatureError, verify
from tests.unit.conftest import PUBLIC_URL, PaymentsService, link_body
from tests.unit.conftest import TEST_WEBHOOK_SECRET as SECRET
from tests.unit.fake_receiver import FakeReceiver


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, fake_rasa: FakeReceiver) -> Iterator[PaymentsService]:
    folder = tmp_path_factory.mktemp("payments")
    svc = PaymentsService(
        folder / "payments.db", folder / "payments.log", fake_rasa.url, PAYMENTS_PUBLIC_URL=PUBLIC_URL + "/"
    )
    svc.start()
    yield svc
    svc.stop()


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[Callable[..., PaymentsService]]:
    """Start services on one SQLite file (so a restart keeps the data); all are stopped afterwards."""
    started: List[PaymentsService] = []

    def start(core_banking_url: str, **env: str) -> PaymentsService:
        log_path = tmp_path / f"payments-{len(started)}.log"
        svc = PaymentsService(tmp_path / "payments.db", log_path, core_banking_url, **env)
        started.append(svc)
        svc.start()
        return svc

    yield start
    for svc in started:
        svc.stop()


# --- API ------------------------------------------------------------------------------------------------


def test_health_and_openapi_describe_the_service(service: PaymentsService) -> None:
    assert service.get("/health").json() == {"status": "ok"}
    spec = service.get("/openapi.json").json()
    paths = spec["paths"]
    assert paths["/links"]["post"]["summary"] == "Create a payment link (idempotent)"
    assert {"200", "201", "400", "409", "422"} <= set(paths["/links"]["post"]["responses"])
    assert paths["/links/{link_id}/complete"]["post"]["tags"] == ["simulation"]
    assert "/links/{link_id}/notifications" in paths
    assert "/pay/{link_id}" in paths
    assert spec["components"]["schemas"]["LinkOut"]["properties"]["amount"]["type"] == "string"


def test_create_link(service: PaymentsService) -> None:
    body = link_body(amount=1234.5, expires_in_minutes=90)
    response = service.create_link(body)

    assert response.status_code == 201, response.text
    link = response.json()
    assert link["id"].startswith("lnk_")
    assert link["url"] == f"{PUBLIC_URL}/pay/{link['id']}"
    assert link["amount"] == "1234.50"
    assert link["currency"] == "PEN"
    assert (link["reference"], link["customer_id"], link["loan_id"]) == (
        body["reference"],
        "CUST-001",
        "LN-2024-001",
    )
    assert link["status"] == "pending"
    assert link["paid_at"] is None and link["payment_id"] is None
    created, expires = parse_time(link["created_at"]), parse_time(link["expires_at"])
    assert created.utcoffset() == timedelta(0)
    assert expires - created == timedelta(minutes=90)
    assert service.get(f"/links/{link['id']}").json() == link


def test_defaults_and_other_currencies(service: PaymentsService) -> None:
    link = service.new_link(loan_id=None, description="")
    assert link["loan_id"] is None
    assert parse_time(link["expires_at"]) - parse_time(link["created_at"]) == timedelta(days=1)
    assert service.new_link(amount="1500", currency="clp")["amount"] == "1500"
    assert service.new_link(amount="99.9", currency="USD")["currency"] == "USD"
    numeric_ids = service.new_link(customer_id=7, loan_id=42)  # numeric ids from core banking are kept as text
    assert (numeric_ids["customer_id"], numeric_ids["loan_id"]) == ("7", "42")


def test_same_key_and_body_returns_the_same_link(service: PaymentsService) -> None:
    body = link_body()
    first = service.create_link(body, key="retry-1")
    # The same request, with the amount written differently, is a retry.
    second = service.create_link({**body, "amount": 150}, key="retry-1")

    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json() == first.json()
    assert len(service.get("/links", reference=body["reference"]).json()) == 1


def test_concurrent_retries_create_one_link(service: PaymentsService) -> None:
    body = link_body()
    key = uuid.uuid4().hex
    with ThreadPoolExecutor(max_workers=12) as pool:
        responses = list(pool.map(lambda _: service.create_link(body, key=key), range(12)))

    assert sorted(r.status_code for r in responses) == [200] * 11 + [201]
    assert len({r.json()["id"] for r in responses}) == 1
    assert len(service.get("/links", reference=body["reference"]).json()) == 1


def test_same_key_with_another_body_is_a_conflict(service: PaymentsService) -> None:
    body = link_body()
    assert service.create_link(body, key="conflict-1").status_code == 201
    response = service.create_link({**body, "amount": "151.00"}, key="conflict-1")
    assert response.status_code == 409
    assert "Idempotency-Key" in response.json()["detail"]


def test_missing_idempotency_key_is_a_bad_request(service: PaymentsService) -> None:
    response = requests.post(f"{service.url}/links", json=link_body(), timeout=10)
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["detail"]


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"amount": 0}, "amount", "greater than zero"),
        ({"amount": "-10.00"}, "amount", "greater than zero"),
        ({"amount": "10.005"}, "amount", "at most 2 decimal places"),
        ({"amount": 10.005}, "amount", "at most 2 decimal places"),
        ({"amount": "1000000.01"}, "amount", "must not exceed 1000000 PEN"),
        ({"amount": 1e300}, "amount", "must not exceed"),
        ({"amount": "NaN"}, "amount", "finite"),
        ({"amount": "1.234,56"}, "amount", "not a decimal number"),
        ({"amount": True}, "amount", "decimal string"),
        ({"amount": "10.5", "currency": "CLP"}, "amount", "whole number for CLP"),
        ({"currency": "EUR"}, "currency", "unsupported currency"),
        ({"reference": "  "}, "reference", "at least 1 character"),
        ({"expires_in_minutes": 0}, "expires_in_minutes", "greater than or equal to 1"),
        ({"expires_in_minutes": 60 * 24 * 31}, "expires_in_minutes", "less than or equal to 43200"),
        ({"amout": "10.00"}, "amout", "extra fields not permitted"),
    ],
)
def test_invalid_links_are_refused_with_a_reason(
    service: PaymentsService, changes: Dict[str, Any], field: str, reason: str
) -> None:
    response = service.create_link(link_body(**changes))
    assert response.status_code == 422, response.text
    assert f"{field}: " in response.json()["detail"]
    assert reason in response.json()["detail"]


def test_largest_amount_is_accepted(service: PaymentsService) -> None:
    assert service.new_link(amount="1000000")["amount"] == "1000000.00"


def test_malformed_json_is_a_bad_request(service: PaymentsService) -> None:
    response = requests.post(
        f"{service.url}/links",
        data=b'{"amount": "10.00",',
        headers={"Idempotency-Key": "bad-json", "Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 400
    assert "malformed JSON" in response.json()["detail"]
    not_an_object = service.create_link([1, 2])  # type: ignore[arg-type]
    assert not_an_object.status_code == 422


def test_unknown_link_is_404(service: PaymentsService) -> None:
    assert service.get("/links/lnk_missing").status_code == 404
    assert service.get("/links/" + "x" * 300).status_code == 404
    assert service.complete("lnk_missing").status_code == 404
    assert service.get("/links/lnk_missing/notifications").status_code == 404
    page = service.get("/pay/lnk_missing")
    assert page.status_code == 404 and "No encontramos este enlace" in page.text


def test_expired_link_cannot_be_paid(service: PaymentsService) -> None:
    link = service.new_link()
    engine = make_engine(service.database_url)
    with engine.begin() as connection:  # time passes: the link's expiry is now in the past
        connection.execute(
            update(PaymentLink)
            .where(PaymentLink.id == link["id"])
            .values(expires_at=datetime.now(timezone.utc) - timedelta(seconds=1))
        )
    engine.dispose()

    assert service.get(f"/links/{link['id']}").json()["status"] == "expired"
    expired = [item["id"] for item in service.get("/links", reference=link["reference"], status="expired").json()]
    assert expired == [link["id"]]
    assert service.get("/links", reference=link["reference"], status="pending").json() == []
    response = service.complete(link["id"])
    assert response.status_code == 409 and "expired" in response.json()["detail"]
    assert "venció" in service.get(f"/pay/{link['id']}").text


def test_list_finds_a_reusable_link(service: PaymentsService) -> None:
    reference = f"CUOTA-{uuid.uuid4().hex[:10]}"
    paid = service.new_link(reference=reference)
    service.complete(paid["id"])
    pending = service.new_link(reference=reference)
    other_customer = service.new_link(reference=reference, customer_id="CUST-002")

    found = service.get("/links", reference=reference, customer_id="CUST-001", status="pending").json()
    assert [item["id"] for item in found] == [pending["id"]]
    newest_first = [item["id"] for item in service.get("/links", reference=reference).json()]
    assert newest_first == [other_customer["id"], pending["id"], paid["id"]]
    assert service.get("/links", status="unknown").status_code == 422


def test_complete_pays_once_and_sends_a_signed_webhook(service: PaymentsService, fake_rasa: FakeReceiver) -> None:
    link = service.new_link(amount="250.5")
    response = service.complete(link["id"])

    assert response.status_code == 200
    paid = response.json()
    assert paid["status"] == "paid" and paid["payment_id"].startswith("pay_") and paid["paid_at"]
    again = service.complete(link["id"])
    assert again.status_code == 409 and "already paid" in again.json()["detail"]

    delivered = service.wait_notification(link["id"], lambda n: n["status"] == "delivered")
    assert delivered["attempts"] == 1 and delivered["last_status_code"] == 200 and delivered["delivered_at"]
    [request] = [r for r in fake_rasa.received if json.loads(r.body)["link_id"] == link["id"]]
    assert request.path == "/webhooks/payments"
    verify(SECRET, request.headers[SIGNATURE_HEADER], request.body)
    with pytest.raises(SignatureError):
        verify("another-secret", request.headers[SIGNATURE_HEADER], request.body)
    assert json.loads(request.body) == {
        "event": "payment.completed",
        "payment_id": paid["payment_id"],
        "link_id": link["id"],
        "amount": "250.50",
        "currency": "PEN",
        "reference": link["reference"],
        "customer_id": "CUST-001",
        "loan_id": "LN-2024-001",
        "paid_at": paid["paid_at"],
        "metadata": {},
    }


def test_checkout_page_renders_and_pays(service: PaymentsService) -> None:
    link = service.new_link(amount="1234.5", description="<script>alert(1)</script>")
    page = service.get(f"/pay/{link['id']}")

    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<html lang="es">' in page.text
    assert "S/ 1,234.50" in page.text and link["reference"] in page.text and ">Pagar</button>" in page.text
    assert "<script>" not in page.text and "&lt;script&gt;" in page.text
    assert "http" not in page.text.replace(PUBLIC_URL, "")  # self-contained: nothing fetched from elsewhere

    pay = requests.post(f"{service.url}/pay/{link['id']}", allow_redirects=False, timeout=10)
    assert pay.status_code == 303 and pay.headers["location"] == link["url"]
    assert service.get(f"/links/{link['id']}").json()["status"] == "paid"
    assert "Pago recibido" in service.get(f"/pay/{link['id']}").text
    paid_again = requests.post(f"{service.url}/pay/{link['id']}", allow_redirects=False, timeout=10)
    assert paid_again.status_code == 303 and paid_again.headers["location"] == link["url"]


# --- webhook delivery ------------------------------------------------------------------------------------


def test_server_errors_are_retried_until_delivered(start_service: Callable[..., PaymentsService]) -> None:
    receiver = FakeReceiver()
    receiver.answer_next(500, 502, 503)
    receiver.start()
    try:
        service = start_service(receiver.url)
        link = service.new_link()
        assert link["url"] == f"{service.url}/pay/{link['id']}"  # no public URL set: the service's own
        service.complete(link["id"])

        delivered = service.wait_notification(link["id"], lambda n: n["status"] == "delivered")
        assert delivered["attempts"] == 4 and delivered["last_error"] is None
        time.sleep(0.5)
        received = receiver.received
        assert [r.answered for r in received] == [500, 502, 503, 200]
        assert len({r.body for r in received}) == 1  # the same bytes every time
        for request in received:
            verify(SECRET, request.headers[SIGNATURE_HEADER], request.body)
    finally:
        receiver.stop()


def test_client_error_is_not_retried(start_service: Callable[..., PaymentsService]) -> None:
    receiver = FakeReceiver(default_status=400)
    receiver.start()
    try:
        service = start_service(receiver.url)
        link = service.new_link()
        service.complete(link["id"])

        failed = service.wait_notification(link["id"], lambda n: n["status"] == "failed")
        assert failed["attempts"] == 1 and failed["last_status_code"] == 400
        assert "HTTP 400" in failed["last_error"] and failed["next_attempt_at"] is None
        time.sleep(0.6)
        assert len(receiver.received) == 1
    finally:
        receiver.stop()


def test_delivery_gives_up_after_the_last_attempt(start_service: Callable[..., PaymentsService]) -> None:
    receiver = FakeReceiver(default_status=503)
    receiver.start()
    try:
        service = start_service(receiver.url, PAYMENTS_WEBHOOK_MAX_ATTEMPTS="3")
        link = service.new_link()
        service.complete(link["id"])

        failed = service.wait_notification(link["id"], lambda n: n["status"] == "failed")
        assert failed["attempts"] == 3 and failed["last_status_code"] == 503
        time.sleep(0.5)
        assert len(receiver.received) == 3
    finally:
        receiver.stop()


def test_receiver_down_then_up_gets_the_webhook(start_service: Callable[..., PaymentsService]) -> None:
    receiver = FakeReceiver()  # not listening yet
    service = start_service(receiver.url)
    link = service.new_link()
    service.complete(link["id"])

    failing = service.wait_notification(link["id"], lambda n: n["attempts"] >= 2)
    assert failing["status"] == "pending" and "ConnectionError" in failing["last_error"]
    receiver.start()
    try:
        service.wait_notification(link["id"], lambda n: n["status"] == "delivered")
        [request] = receiver.received
        assert json.loads(request.body)["link_id"] == link["id"]
    finally:
        receiver.stop()


def test_outbox_survives_a_restart(start_service: Callable[..., PaymentsService]) -> None:
    receiver = FakeReceiver()  # down while the first run is up
    service = start_service(receiver.url)
    link = service.new_link()
    paid = service.complete(link["id"]).json()
    service.wait_notification(link["id"], lambda n: n["attempts"] >= 1)
    service.stop()
    engine = make_engine(service.database_url)
    with engine.connect() as connection:
        statuses = connection.execute(select(Notification.status)).scalars().all()
    engine.dispose()
    assert statuses == ["pending"]

    receiver.start()
    try:
        service.start()
        delivered = service.wait_notification(link["id"], lambda n: n["status"] == "delivered")
        assert delivered["attempts"] >= 2
        [request] = receiver.received
        assert json.loads(request.body)["payment_id"] == paid["payment_id"]
    finally:
        receiver.stop()


def test_unexpected_error_is_a_json_500_and_the_payment_is_rolled_back(
    start_service: Callable[..., PaymentsService],
) -> None:
    service = start_service(FakeReceiver().url)
    link = service.new_link()
    engine = make_engine(service.database_url)
    with engine.begin() as connection:  # the outbox table disappears under the running service
        connection.execute(text("DROP TABLE payment_notifications"))
    engine.dispose()

    response = service.complete(link["id"])
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error; the request was not completed"}
    assert service.get("/health").json() == {"status": "ok"}
    assert service.get(f"/links/{link['id']}").json()["status"] == "pending"


def test_the_assistant_hears_of_a_payment_only_after_core_banking_applied_it(
    start_service: Callable[..., PaymentsService],
) -> None:
    core_banking, assistant = FakeReceiver(), FakeReceiver()
    core_banking.answer_next(503, 503)
    core_banking.start()
    assistant.start()
    try:
        service = start_service(core_banking.url, PAYMENTS_ASSISTANT_WEBHOOK_URL=f"{assistant.url}/events")
        link = service.new_link(metadata={"conversation_id": "web-123", "channel": "socketio"})
        assert link["metadata"] == {"conversation_id": "web-123", "channel": "socketio"}
        service.complete(link["id"])

        service.wait_notification(link["id"], lambda n: n["target"] == "assistant" and n["status"] == "delivered")
        assert [r.answered for r in core_banking.received] == [503, 503, 200]
        [announced] = assistant.received
        assert announced.path == "/events"
        body = json.loads(announced.body)
        assert body["metadata"] == {"conversation_id": "web-123", "channel": "socketio"}
        verify(SECRET, announced.headers[SIGNATURE_HEADER], announced.body)
        rows = service.get(f"/links/{link['id']}/notifications").json()
        assert [row["target"] for row in rows] == ["core_banking", "assistant"]
    finally:
        core_banking.stop()
        assistant.stop()


def test_no_announcement_when_core_banking_refused_the_payment(
    start_service: Callable[..., PaymentsService],
) -> None:
    core_banking, assistant = FakeReceiver(default_status=400), FakeReceiver()
    core_banking.start()
    assistant.start()
    try:
        service = start_service(core_banking.url, PAYMENTS_ASSISTANT_WEBHOOK_URL=assistant.url)
        link = service.new_link()
        service.complete(link["id"])

        failed = service.wait_notification(link["id"], lambda n: n["target"] == "assistant" and n["status"] == "failed")
        assert "failed" in failed["last_error"] and failed["attempts"] == 0
        assert assistant.received == []
    finally:
        core_banking.stop()
        assistant.stop()


def test_link_metadata_is_bounded(service: PaymentsService) -> None:
    too_many = {f"k{i}": "v" for i in range(11)}
    response = service.create_link(link_body(metadata=too_many))
    assert response.status_code == 422 and "at most 10 keys" in response.text
