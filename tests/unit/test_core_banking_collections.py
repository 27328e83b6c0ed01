"""The collections side of core banking on the real process: identity verification before disclosure, plan
offers within the collections policy and their acceptance, promises to pay within policy, and cases.

The service is seeded for today in Lima; tests take loans of generated customers (ids above the 8 demo ones)
by bucket so that no two tests change the same loan. Times the service decides (code expiry, locks, offer
validity) are moved into the past in its database, and the lock's exact length is checked on the operations
with an injected clock.
"""

from __future__ import annotations

import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import pytest
import requests
from sqlalchemy import update

from credia.backends import BackendRejected
from credia.backends.core_banking import CoreBankingClient
from credia.collections.plans import plan_for_monthly_amount, plan_options
from credia.collections.policy import BUCKETS, load_policy
from credia.core_banking import operations as ops
from credia.core_banking.loans import LIMA, today_lima
from credia.core_banking.models import (
    Base,
    Customer,
    IdentityChallenge,
    PlanOffer,
    SmsMessage,
    VerificationState,
)
from credia.db import make_engine, make_session_factory
from tests.unit.conftest import CoreBankingService

D = Decimal
POLICY = load_policy()
OFFER_ID = re.compile(r"^OF-[23456789ABCDEFGHJKMNPQRSTUVWXYZ]{6}$")
CASE_CODE = re.compile(r"^CAS-[23456789ABCDEFGHJKMNPQRSTUVWXYZ]{6}$")
SMS_CODE = re.compile(r"código de verificación es (\d{6})\.")
CODE_SENT = "Si el documento está registrado, enviamos un código al celular registrado."
# Valid DNIs of nobody in the seed.
UNKNOWN_DNIS = iter(f"7100{n:04d}" for n in range(9000, 9999))
MARIA = "10117410"  # up to date
CARLOS = "09876543"  # 61-120 with an active payment plan


@pytest.fixture(scope="module")
def service(core_banking: CoreBankingService) -> CoreBankingService:
    return core_banking


@pytest.fixture(scope="module")
def customers(service: CoreBankingService) -> List[Dict[str, Any]]:
    """Generated customers (not the 8 demo ones), each used by one identity test at most."""
    return [customer for customer in service.get("/customers", limit=500).json() if customer["id"] > 8]


@pytest.fixture(scope="module")
def take(service: CoreBankingService) -> Callable[..., Dict[str, Any]]:
    """Hand out seeded overdue loans without a payment plan, by bucket, each to one test only."""
    pool: Dict[str, List[Dict[str, Any]]] = {bucket: [] for bucket in BUCKETS}
    for customer in service.get("/customers", limit=500).json():
        for loan in service.get(f"/customers/{customer['id']}/loans").json():
            if customer["id"] > 8 and loan["bucket"] in pool and loan["active_plan_id"] is None:
                pool[loan["bucket"]].append(loan)

    def next_loan(bucket: str, without_pending_promise: bool = False) -> Dict[str, Any]:
        for loan in pool[bucket]:
            terms = service.get(f"/loans/{loan['id']}/promise-terms").json()
            if not without_pending_promise or terms["pending_promise"] is None:
                pool[bucket].remove(loan)
                return loan
        raise AssertionError(f"no seeded loan left in bucket {bucket}")

    return next_loan


def customer_by_dni(service: CoreBankingService, dni: str) -> Dict[str, Any]:
    (customer,) = service.get("/customers", document_type="DNI", document_number=dni).json()
    return customer


def only_loan(service: CoreBankingService, dni: str) -> Dict[str, Any]:
    (loan,) = service.get(f"/customers/{customer_by_dni(service, dni)['id']}/loans").json()
    return loan


def verify(service: CoreBankingService, dni: str, **factor: Any) -> Dict[str, Any]:
    response = service.post("/identity/verifications", {"document_type": "DNI", "document_number": dni, **factor})
    assert response.status_code == 200, response.text
    return response.json()


def send_code(service: CoreBankingService, dni: str) -> Dict[str, Any]:
    response = service.post("/identity/codes", {"document_type": "DNI", "document_number": dni})
    assert response.status_code == 202, response.text
    return response.json()


def latest_code(service: CoreBankingService, **filters: str) -> str:
    messages = service.get("/mock/sms", **filters).json()
    match = SMS_CODE.search(messages[0]["text"])
    assert match, messages[0]
    return match.group(1)


def change_rows(service: CoreBankingService, statement: Any) -> None:
    """Change the service's database directly: how a test moves a deadline into the past."""
    engine = make_engine(service.database_url)
    try:
        with engine.begin() as connection:
            connection.execute(statement)
    finally:
        engine.dispose()


def offers_for(service: CoreBankingService, loan_id: int, **body: Any) -> Dict[str, Any]:
    response = service.post(f"/loans/{loan_id}/plan-offers", body)
    assert response.status_code == 201, response.text
    return response.json()


def schedule_of(option: Any) -> List[Dict[str, str]]:
    return [{"number": r.number, "due_date": r.due_date.isoformat(), "amount": str(r.amount)} for r in option.schedule]


def expected_offer(option: Any) -> Dict[str, Any]:
    """The JSON fields of an offer computed by ``credia.collections.plans``."""
    return {
        "kind": option.kind,
        "debt": str(option.debt),
        "discount": str(option.discount),
        "down_payment": str(option.down_payment),
        "installments_count": option.installments_count,
        "installment_amount": str(option.installment_amount),
        "total_to_pay": str(option.total_to_pay),
        "first_due_date": option.first_due_date.isoformat(),
        "valid_until": option.valid_until.isoformat(),
        "needs_approval": option.needs_approval,
        "schedule": schedule_of(option),
    }


def without(offer: Dict[str, Any], *keys: str) -> Dict[str, Any]:
    return {key: value for key, value in offer.items() if key not in keys}


# --- identity ------------------------------------------------------------------------------------------------


def test_verification_by_date_of_birth(service: CoreBankingService, customers: List[Dict[str, Any]]) -> None:
    customer = customers[0]
    result = verify(service, customer["document_number"], birth_date=customer["date_of_birth"])
    assert result == {
        "verified": True, "customer_id": customer["id"], "first_name": customer["first_name"],
        "attempts_left": 3, "locked_until": None,
    }


def test_verification_by_a_code_read_from_the_mock_sms(
    service: CoreBankingService, customers: List[Dict[str, Any]]
) -> None:
    customer = customers[1]
    before = datetime.now(timezone.utc)
    challenge = send_code(service, customer["document_number"])
    assert challenge["message"] == CODE_SENT
    expires = datetime.fromisoformat(challenge["expires_at"])
    assert before + timedelta(minutes=4) < expires <= datetime.now(timezone.utc) + timedelta(minutes=5)

    (sms,) = service.get("/mock/sms", phone=customer["phone"]).json()
    assert sms["to"] == customer["phone"] and "Vence en 5 minutos" in sms["text"]
    code = latest_code(service, document_number=customer["document_number"])
    assert code == SMS_CODE.search(sms["text"]).group(1)

    result = verify(service, customer["document_number"], challenge_id=challenge["challenge_id"], code=code)
    assert (result["verified"], result["customer_id"], result["attempts_left"]) == (True, customer["id"], 3)
    # Single use: the same code again is a failure.
    again = verify(service, customer["document_number"], challenge_id=challenge["challenge_id"], code=code)
    assert (again["verified"], again["attempts_left"]) == (False, 2)


def test_a_code_only_verifies_its_own_document(
    service: CoreBankingService, customers: List[Dict[str, Any]]
) -> None:
    owner, other = customers[2], customers[3]
    challenge = send_code(service, owner["document_number"])
    code = latest_code(service, phone=owner["phone"])
    stolen = verify(service, other["document_number"], challenge_id=challenge["challenge_id"], code=code)
    assert stolen["verified"] is False
    wrong = verify(service, owner["document_number"], challenge_id=challenge["challenge_id"],
                    code=f"{(int(code) + 1) % 10**6:06d}")
    assert wrong["verified"] is False
    assert verify(service, owner["document_number"], challenge_id=challenge["challenge_id"], code=code)["verified"]


def test_an_expired_code_fails(service: CoreBankingService, customers: List[Dict[str, Any]]) -> None:
    customer = customers[4]
    challenge = send_code(service, customer["document_number"])
    code = latest_code(service, phone=customer["phone"])
    past = datetime.now(timezone.utc) - timedelta(seconds=1)
    change_rows(
        service,
        update(IdentityChallenge).where(IdentityChallenge.id == challenge["challenge_id"]).values(expires_at=past),
    )
    result = verify(service, customer["document_number"], challenge_id=challenge["challenge_id"], code=code)
    assert (result["verified"], result["attempts_left"]) == (False, 2)


def test_an_unknown_document_is_answered_exactly_like_a_wrong_factor(
    service: CoreBankingService, customers: List[Dict[str, Any]]
) -> None:
    customer, unknown = customers[5], next(UNKNOWN_DNIS)
    assert service.get("/customers", document_type="DNI", document_number=unknown).json() == []

    known_code, unknown_code = send_code(service, customer["document_number"]), send_code(service, unknown)
    assert known_code.keys() == unknown_code.keys() and unknown_code["message"] == known_code["message"]
    assert service.get("/mock/sms", document_number=unknown).json() == []

    for attempt in range(3):
        wrong = verify(service, customer["document_number"], birth_date="1950-01-01")
        nobody = verify(service, unknown, birth_date="1950-01-01")
        assert without(wrong, "locked_until") == without(nobody, "locked_until") == {
            "verified": False, "customer_id": None, "first_name": None, "attempts_left": 2 - attempt,
        }
        assert (wrong["locked_until"] is None) == (nobody["locked_until"] is None) == (attempt < 2)
    by_code = verify(service, unknown, challenge_id=unknown_code["challenge_id"], code="123456")
    assert by_code == {**nobody, "locked_until": by_code["locked_until"]}


def test_three_failures_lock_the_document_until_the_lock_ends(
    service: CoreBankingService, customers: List[Dict[str, Any]]
) -> None:
    customer = customers[6]
    dni, birth = customer["document_number"], customer["date_of_birth"]
    assert [verify(service, dni, birth_date="1950-01-01")["attempts_left"] for _ in range(2)] == [2, 1]
    before = datetime.now(timezone.utc)
    third = verify(service, dni, birth_date="1950-01-01")
    locked_until = datetime.fromisoformat(third["locked_until"])
    assert third["verified"] is False and third["attempts_left"] == 0
    assert before + timedelta(minutes=29) < locked_until <= datetime.now(timezone.utc) + timedelta(minutes=30)

    # While locked the right factor fails too, and nothing more is counted.
    for _ in range(2):
        locked = verify(service, dni, birth_date=birth)
        assert locked == {**third, "locked_until": third["locked_until"]}
    code = send_code(service, dni)
    locked = verify(service, dni, challenge_id=code["challenge_id"], code=latest_code(service, phone=customer["phone"]))
    assert locked["verified"] is False and locked["locked_until"] == third["locked_until"]

    past = datetime.now(timezone.utc) - timedelta(seconds=1)
    change_rows(service, update(VerificationState).where(VerificationState.document_number == dni)
                .values(locked_until=past))
    unlocked = verify(service, dni, birth_date=birth)
    assert (unlocked["verified"], unlocked["attempts_left"], unlocked["locked_until"]) == (True, 3, None)


def test_concurrent_failures_are_all_counted(service: CoreBankingService) -> None:
    """Parallel guesses must not slip past the lock: each failure is counted, the rest meet the lock."""
    dni = next(UNKNOWN_DNIS)
    body = {"document_type": "DNI", "document_number": dni, "birth_date": "1950-01-01"}

    def guess(_: int) -> int:
        response = requests.post(f"{service.url}/identity/verifications", json=body, timeout=30)
        return response.json()["attempts_left"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert Counter(pool.map(guess, range(8))) == Counter({2: 1, 1: 1, 0: 6})


def test_success_resets_the_failures(service: CoreBankingService, customers: List[Dict[str, Any]]) -> None:
    customer = customers[7]
    dni = customer["document_number"]
    assert verify(service, dni, birth_date="1950-01-01")["attempts_left"] == 2
    assert verify(service, dni, birth_date="1950-01-01")["attempts_left"] == 1
    assert verify(service, dni, birth_date=customer["date_of_birth"])["verified"] is True
    assert verify(service, dni, birth_date="1950-01-01")["attempts_left"] == 2


@pytest.mark.parametrize(
    ("path", "body", "detail"),
    [
        ("/identity/codes", {"document_type": "DNI", "document_number": "123"}, "document_number"),
        ("/identity/codes", {"document_type": "DNI"}, "document_number"),
        ("/identity/verifications", {"document_number": "1234", "birth_date": "1990-01-01"}, "document_number"),
        ("/identity/verifications", {"document_number": "10117410"}, "one factor"),
        (
            "/identity/verifications",
            {"document_number": "10117410", "birth_date": "1985-03-14", "challenge_id": "x", "code": "123456"},
            "one factor",
        ),
        ("/identity/verifications", {"document_number": "10117410", "challenge_id": "x"}, "both challenge_id and code"),
        ("/identity/verifications", {"document_number": "10117410", "challenge_id": "x", "code": "12ab56"}, "code"),
        ("/identity/verifications", {"document_number": "10117410", "birth_date": "ayer"}, "birth_date"),
    ],
)
def test_malformed_identity_requests_are_refused(
    service: CoreBankingService, path: str, body: Dict[str, Any], detail: str
) -> None:
    response = service.post(path, body)
    assert response.status_code == 422
    assert detail in response.json()["detail"]


def test_the_mock_sms_outbox_needs_a_filter(service: CoreBankingService) -> None:
    assert service.get("/mock/sms").status_code == 422
    assert service.get("/mock/sms", phone="abc").status_code == 422
    assert service.get("/mock/sms", document_type="DNI", document_number="12").status_code == 422


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[Any]:
    engine = make_engine(f"sqlite:///{tmp_path / 'identity.db'}")
    Base.metadata.create_all(engine)
    try:
        yield make_session_factory(engine)
    finally:
        engine.dispose()


def test_the_lock_lasts_lock_minutes_and_a_code_its_ttl(sessions: Any) -> None:
    """Injected clock: the operations take the moment they act at."""
    rules = POLICY.verification
    start = datetime(2025, 3, 14, 10, 0, tzinfo=LIMA)
    with sessions() as session:
        session.add(Customer(document_type="DNI", document_number="47000001", first_name="Ana", last_name="Paz",
                             date_of_birth=date(1990, 1, 2), phone="+51999000111"))
        session.flush()

        def attempt(at: datetime, **factor: Any) -> ops.Verification:
            return ops.verify_identity(session, rules, "DNI", "47000001", at, **factor)

        for second in range(rules.max_failures):
            result = attempt(start + timedelta(seconds=second), birth_date=date(1990, 1, 3))
        lock_start = start + timedelta(seconds=rules.max_failures - 1)
        assert result.locked_until == lock_start + timedelta(minutes=rules.lock_minutes)
        almost = lock_start + timedelta(minutes=rules.lock_minutes) - timedelta(seconds=1)
        assert attempt(almost, birth_date=date(1990, 1, 2)).verified is False
        assert attempt(result.locked_until, birth_date=date(1990, 1, 2)).verified is True

        challenge = ops.send_code(session, rules, "DNI", "47000001", start)
        (sms,) = session.query(SmsMessage).all()
        code = SMS_CODE.search(sms.text).group(1)
        expiry = start + timedelta(minutes=rules.code_ttl_minutes)
        assert attempt(expiry, challenge_id=challenge.id, code=code).verified is False
        assert attempt(expiry - timedelta(seconds=1), challenge_id=challenge.id, code=code).verified is True


# --- plan offers and plans -----------------------------------------------------------------------------------


@pytest.mark.parametrize("bucket", BUCKETS)
def test_offers_in_each_bucket_follow_the_policy(
    service: CoreBankingService, take: Callable[..., Dict[str, Any]], bucket: str
) -> None:
    loan = take(bucket)
    rules = POLICY.bucket(bucket)
    result = offers_for(service, loan["id"], channel="whatsapp")

    debt = D(loan["total_overdue"])
    options = plan_options(debt, rules, today_lima())
    assert without(result, "offers") == {
        "loan_id": loan["id"], "bucket": bucket, "debt": loan["total_overdue"], "currency": "PEN", "feasible": True,
        "reason": None, "required_installments": None, "max_installments": rules.max_installments,
        "needs_approval": options[0].needs_approval,
    }
    assert [without(offer, "id", "loan_id", "status") for offer in result["offers"]] == [
        expected_offer(option) for option in options
    ]
    assert 1 <= len(result["offers"]) <= 3
    for offer in result["offers"]:
        assert OFFER_ID.match(offer["id"]) and offer["status"] == "offered" and offer["loan_id"] == loan["id"]
        assert service.get(f"/plan-offers/{offer['id']}").json() == offer
        assert sum(D(row["amount"]) for row in offer["schedule"]) == D(offer["total_to_pay"])
    assert len({offer["id"] for offer in result["offers"]}) == len(result["offers"])


def test_a_counter_offer_is_the_shortest_plan_within_the_monthly_amount(
    service: CoreBankingService, take: Callable[..., Dict[str, Any]]
) -> None:
    loan = take("31-60")
    debt, rules = D(loan["total_overdue"]), POLICY.bucket("31-60")
    rest = debt - (rules.min_down_payment_rate * debt).quantize(D("0.01"), rounding=ROUND_CEILING)
    monthly = max((rest / 4).quantize(D("0.01"), rounding=ROUND_CEILING), D("50.00"))

    result = offers_for(service, loan["id"], monthly_amount=str(monthly))
    expected = plan_for_monthly_amount(debt, rules, today_lima(), monthly).plan
    (offer,) = result["offers"]
    assert result["feasible"] is True and without(offer, "id", "loan_id", "status") == expected_offer(expected)
    assert D(offer["installment_amount"]) <= monthly

    too_long = offers_for(service, loan["id"], monthly_amount="50.00")
    needed = (rest / D("50.00")).to_integral_value(rounding=ROUND_CEILING)
    assert needed > rules.max_installments
    assert (too_long["feasible"], too_long["reason"]) == (False, "exceeds_max_installments")
    assert too_long["required_installments"] == needed and too_long["offers"] == []
    below = offers_for(service, loan["id"], monthly_amount="49.99")
    assert (below["feasible"], below["reason"], below["offers"]) == (False, "below_minimum_installment", [])
    assert below["required_installments"] is None and below["max_installments"] == 6


def test_offers_are_refused_with_a_reason_when_there_is_nothing_to_negotiate(service: CoreBankingService) -> None:
    maria = only_loan(service, MARIA)
    current = offers_for(service, maria["id"])
    assert (current["feasible"], current["reason"], current["bucket"], current["offers"]) == (
        False, "nothing_overdue", "current", []
    )
    carlos = only_loan(service, CARLOS)
    assert carlos["active_plan_id"] is not None
    planned = offers_for(service, carlos["id"])
    assert (planned["feasible"], planned["reason"], planned["offers"]) == (False, "plan_active", [])
    assert service.post("/loans/999999/plan-offers", {}).status_code == 404
    assert service.post(f"/loans/{maria['id']}/plan-offers", {"monthly_amount": "-1"}).status_code == 422
    assert service.get("/plan-offers/OF-NOPE22").status_code == 404


def test_accepting_an_offer_books_exactly_that_plan_once(
    service: CoreBankingService, take: Callable[..., Dict[str, Any]]
) -> None:
    loan = take("31-60")
    settlement, three, six = offers_for(service, loan["id"], channel="whatsapp")["offers"]

    accepted = service.post(f"/plan-offers/{three['id']}/accept", {"channel": "whatsapp"})
    assert accepted.status_code == 201, accepted.text
    plan = accepted.json()
    assert plan["offer_id"] == three["id"] and plan["loan_id"] == loan["id"]
    assert (plan["status"], plan["kind"], plan["channel"]) == ("active", "installments", "whatsapp")
    same = ("discount", "down_payment", "installments_count", "installment_amount", "first_due_date", "schedule")
    assert {key: plan[key] for key in same} == {key: three[key] for key in same}
    assert plan["total_amount"] == three["debt"]

    again = service.post(f"/plan-offers/{three['id']}/accept", {"channel": "web"})
    assert again.status_code == 200 and again.json() == plan
    assert service.get(f"/plan-offers/{three['id']}").json()["status"] == "accepted"
    assert service.get(f"/loans/{loan['id']}").json()["active_plan_id"] == plan["id"]
    assert [p["id"] for p in service.get(f"/loans/{loan['id']}/payment-plans").json()] == [plan["id"]]

    other = service.post(f"/plan-offers/{six['id']}/accept", {"channel": "whatsapp"})
    assert other.status_code == 409 and three["id"] in other.json()["detail"]
    assert "already accepted" in other.json()["detail"]
    assert offers_for(service, loan["id"])["reason"] == "plan_active"


def test_a_settlement_is_one_payment_today(service: CoreBankingService, take: Callable[..., Dict[str, Any]]) -> None:
    loan = take("61-120")
    settlement = offers_for(service, loan["id"])["offers"][0]
    assert settlement["kind"] == "settlement" and settlement["installments_count"] == 0
    plan = service.post(f"/plan-offers/{settlement['id']}/accept", {"channel": "socketio"}).json()
    today = today_lima().isoformat()
    assert plan["schedule"] == [{"number": 0, "due_date": today, "amount": settlement["total_to_pay"]}]
    assert D(plan["total_amount"]) - D(plan["discount"]) == D(settlement["total_to_pay"])


def test_an_offer_that_needs_approval_books_a_plan_pending_approval(
    service: CoreBankingService, take: Callable[..., Dict[str, Any]]
) -> None:
    loan = take(">120")
    result = offers_for(service, loan["id"])
    assert result["needs_approval"] is True and all(offer["needs_approval"] for offer in result["offers"])
    plan = service.post(f"/plan-offers/{result['offers'][-1]['id']}/accept", {"channel": "whatsapp"}).json()
    assert plan["status"] == "pending_approval"
    assert service.get(f"/loans/{loan['id']}").json()["active_plan_id"] == plan["id"]
    assert offers_for(service, loan["id"])["reason"] == "plan_active"


def test_an_expired_offer_cannot_be_accepted(service: CoreBankingService, take: Callable[..., Dict[str, Any]]) -> None:
    loan = take("1-30")
    offer = offers_for(service, loan["id"])["offers"][0]
    yesterday = today_lima() - timedelta(days=1)
    change_rows(service, update(PlanOffer).where(PlanOffer.id == offer["id"]).values(valid_until=yesterday))

    assert service.get(f"/plan-offers/{offer['id']}").json()["status"] == "expired"
    response = service.post(f"/plan-offers/{offer['id']}/accept", {"channel": "whatsapp"})
    assert response.status_code == 409 and "expired" in response.json()["detail"]
    assert service.get(f"/loans/{loan['id']}").json()["active_plan_id"] is None


def test_an_offer_cannot_be_accepted_over_a_plan_an_agent_recorded(
    service: CoreBankingService, take: Callable[..., Dict[str, Any]]
) -> None:
    loan = take("1-30")
    offer = offers_for(service, loan["id"])["offers"][0]
    agent = service.post(f"/loans/{loan['id']}/payment-plans", {"installments_count": 2})
    assert agent.status_code == 201, agent.text
    recorded = agent.json()
    assert (recorded["channel"], recorded["offer_id"], recorded["kind"]) == ("agent", None, "installments")
    assert sum(D(row["amount"]) for row in recorded["schedule"]) == D(recorded["total_amount"])

    response = service.post(f"/plan-offers/{offer['id']}/accept", {"channel": "whatsapp"})
    assert response.status_code == 409 and f"payment plan {recorded['id']}" in response.json()["detail"]


# --- promises ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bucket", BUCKETS)
def test_promise_terms_follow_the_bucket(
    service: CoreBankingService, take: Callable[..., Dict[str, Any]], bucket: str
) -> None:
    loan = take(bucket)
    rules = POLICY.bucket(bucket)
    terms = service.get(f"/loans/{loan['id']}/promise-terms").json()
    minimum = (rules.promise_min_rate * D(loan["total_overdue"])).quantize(D("0.01"), rounding=ROUND_CEILING)
    today = today_lima()
    assert without(terms, "pending_promise") == {
        "bucket": bucket,
        "min_amount": str(min(minimum, D(loan["outstanding_balance"]))),
        "max_amount": loan["outstanding_balance"],
        "suggested_amount": loan["total_overdue"],
        "earliest_date": today.isoformat(),
        "latest_date": (today + timedelta(days=rules.promise_max_days)).isoformat(),
    }


def test_promises_are_kept_within_the_policy(service: CoreBankingService, take: Callable[..., Dict[str, Any]]) -> None:
    loan = take("31-60", without_pending_promise=True)
    path = f"/loans/{loan['id']}/promises"
    terms = service.get(f"/loans/{loan['id']}/promise-terms").json()
    below = str(D(terms["min_amount"]) - D("0.01"))
    too_late = (date.fromisoformat(terms["latest_date"]) + timedelta(days=1)).isoformat()

    small = service.post(path, {"amount": below, "promised_date": terms["latest_date"]})
    assert small.status_code == 422
    allowed = f"must be from S/ {D(terms['min_amount']):,.2f} to S/ {D(terms['max_amount']):,.2f}"
    assert allowed in small.json()["detail"]
    late = service.post(path, {"amount": terms["min_amount"], "promised_date": too_late})
    assert late.status_code == 422
    assert f"from {terms['earliest_date']} to {terms['latest_date']}" in late.json()["detail"]
    both = service.post(path, {"amount": "999999", "promised_date": too_late}).json()["detail"]
    assert "promised_date" in both and "amount" in both

    made = service.post(path, {"amount": terms["min_amount"], "promised_date": terms["latest_date"],
                               "channel": "WhatsApp"})
    assert made.status_code == 201, made.text
    promise = made.json()
    assert (promise["channel"], promise["status"], promise["amount"]) == ("whatsapp", "pending", terms["min_amount"])
    assert service.get(f"/loans/{loan['id']}/promise-terms").json()["pending_promise"] == promise
    again = service.post(path, {"amount": terms["suggested_amount"], "promised_date": terms["earliest_date"]})
    assert again.status_code == 409 and "pending" in again.json()["detail"]


def test_no_promise_without_overdue_debt(service: CoreBankingService) -> None:
    maria = only_loan(service, MARIA)
    terms = service.get(f"/loans/{maria['id']}/promise-terms")
    assert terms.status_code == 409 and "nothing overdue" in terms.json()["detail"]
    promise = service.post(f"/loans/{maria['id']}/promises",
                           {"amount": "100", "promised_date": today_lima().isoformat()})
    assert promise.status_code == 409
    assert service.get("/loans/999999/promise-terms").status_code == 404


# --- cases ---------------------------------------------------------------------------------------------------


def case_body(**changes: Any) -> Dict[str, Any]:
    return {
        "kind": "hardship", "channel": "whatsapp", "conversation_id": "conv-1", "priority": "normal",
        "summary": "Perdí mi trabajo y no puedo pagar la cuota completa.", "details": {"income_lost": True},
        "attachments": [], **changes,
    }


def test_cases_are_opened_once_per_key_and_listed(
    service: CoreBankingService, take: Callable[..., Dict[str, Any]]
) -> None:
    loan = take("1-30")
    body = case_body(customer_id=loan["customer_id"], loan_id=loan["id"], attachments=[
        {"filename": "carta.pdf", "content_type": "application/pdf", "url": "https://files.example/carta.pdf"},
        {"filename": "foto.jpg", "content_type": "", "url": "wamid.HBgLNTE5"},
    ])
    first = service.post("/cases", body, headers={"Idempotency-Key": "case-key-1"})
    assert first.status_code == 201, first.text
    case = first.json()
    assert CASE_CODE.match(case["code"]) and case["status"] == "open" and case["outcome"] is None
    assert {key: case[key] for key in body} == body
    again = service.post("/cases", body, headers={"Idempotency-Key": "case-key-1"})
    assert again.status_code == 200 and again.json() == case

    assert service.get(f"/cases/{case['id']}").json() == case
    listed = service.get("/cases", customer_id=loan["customer_id"], status="open").json()
    assert [item["id"] for item in listed] == [case["id"]]
    assert service.get("/cases", customer_id=loan["customer_id"], status="closed").json() == []
    # A dispute-free case holds nothing.
    assert service.get(f"/loans/{loan['id']}").json()["collections_hold"] is False


def test_a_dispute_holds_collections_on_the_loan_until_closed(
    service: CoreBankingService, take: Callable[..., Dict[str, Any]]
) -> None:
    loan = take("31-60")
    created = service.post("/cases", case_body(kind="dispute", loan_id=loan["id"], priority="high",
                                               summary="No reconozco esta deuda."))
    assert created.status_code == 201, created.text
    case = created.json()
    assert case["customer_id"] == loan["customer_id"]  # filled from the loan

    assert service.get(f"/loans/{loan['id']}").json()["collections_hold"] is True
    listed = {item["id"]: item for item in service.get(f"/customers/{loan['customer_id']}/loans").json()}
    assert listed[loan["id"]]["collections_hold"] is True
    held = offers_for(service, loan["id"])
    assert (held["feasible"], held["reason"], held["offers"]) == (False, "collections_hold", [])

    closed = service.post(f"/cases/{case['id']}/close", {"outcome": "Deuda confirmada con el cliente."})
    assert closed.status_code == 200, closed.text
    assert (closed.json()["status"], closed.json()["outcome"]) == ("closed", "Deuda confirmada con el cliente.")
    assert closed.json()["closed_at"] is not None
    assert service.get(f"/loans/{loan['id']}").json()["collections_hold"] is False
    assert offers_for(service, loan["id"])["feasible"] is True
    repeat = service.post(f"/cases/{case['id']}/close", {"outcome": "Deuda confirmada con el cliente."})
    assert repeat.status_code == 200 and repeat.json() == closed.json()
    assert service.post(f"/cases/{case['id']}/close", {"outcome": "Otra cosa"}).status_code == 409


@pytest.mark.parametrize(
    ("changes", "status", "detail"),
    [
        ({"kind": "complaint"}, 422, "kind"),
        ({"summary": "x" * 501}, 422, "summary"),
        ({"summary": "  "}, 422, "summary"),
        ({"details": {"text": "x" * 9000}}, 422, "8192 bytes"),
        ({"attachments": [{"filename": "a.pdf", "url": "https://x.example/a.pdf"}] * 6}, 422, "attachments"),
        ({"attachments": [{"filename": "../a.pdf", "url": "https://x.example/a.pdf"}]}, 422, "filename"),
        ({"priority": "urgent"}, 422, "priority"),
        ({"customer_id": 999999}, 404, "customer 999999"),
        ({"loan_id": 999999}, 404, "loan 999999"),
    ],
)
def test_invalid_cases_are_refused(
    service: CoreBankingService, changes: Dict[str, Any], status: int, detail: str
) -> None:
    response = service.post("/cases", case_body(**changes))
    assert response.status_code == status, response.text
    assert detail in response.json()["detail"]


def test_a_case_about_someone_elses_loan_is_a_conflict(service: CoreBankingService) -> None:
    maria, carlos = customer_by_dni(service, MARIA), only_loan(service, CARLOS)
    response = service.post("/cases", case_body(customer_id=maria["id"], loan_id=carlos["id"]))
    assert response.status_code == 409 and "does not belong" in response.json()["detail"]
    assert service.get("/cases/999999").status_code == 404


# --- the client the actions use, and the API description ------------------------------------------------------


async def test_the_client_methods_against_the_real_service(
    service: CoreBankingService, customers: List[Dict[str, Any]], take: Callable[..., Dict[str, Any]]
) -> None:
    client = CoreBankingClient(service.url)
    customer = customers[8]
    challenge = await client.send_code("DNI", customer["document_number"])
    assert challenge["message"] == CODE_SENT
    (sms,) = await client.sms_outbox(document_number=customer["document_number"])
    assert await client.sms_outbox(phone=customer["phone"]) == [sms]
    code = SMS_CODE.search(sms["text"]).group(1)
    verified = await client.verify_identity(
        "DNI", customer["document_number"], challenge_id=challenge["challenge_id"], code=code
    )
    assert verified["verified"] is True and verified["customer_id"] == customer["id"]
    by_birth = await client.verify_identity("DNI", customer["document_number"], birth_date=date(1950, 1, 1))
    assert by_birth["verified"] is False

    loan = take("1-30", without_pending_promise=True)
    offers = await client.plan_offers(loan["id"], channel="socketio")
    counter = await client.plan_offers(loan["id"], monthly_amount=Decimal("100000.00"))
    assert counter["feasible"] is True and counter["offers"][0]["installments_count"] == 1
    offer = await client.plan_offer(offers["offers"][0]["id"])
    assert offer == offers["offers"][0]
    plan = await client.accept_plan_offer(offer["id"], "socketio")
    assert plan["offer_id"] == offer["id"] and plan == await client.accept_plan_offer(offer["id"], "socketio")

    terms = await client.promise_terms(loan["id"])
    promise = await client.create_promise(
        loan["id"], Decimal(terms["min_amount"]), date.fromisoformat(terms["latest_date"]), "socketio"
    )
    assert (promise["amount"], promise["channel"]) == (terms["min_amount"], "socketio")
    with pytest.raises(BackendRejected) as refused:
        await client.create_promise(loan["id"], terms["min_amount"], terms["earliest_date"], "socketio")
    assert refused.value.status == 409

    paid = service.post(f"/loans/{loan['id']}/payments", {"amount": "10.00", "external_id": "client-test-1"})
    assert paid.status_code == 201
    assert [p["external_id"] for p in await client.loan_payments(loan["id"])][-1] == "client-test-1"

    body = case_body(kind="negotiation", loan_id=loan["id"], details={"monthly_amount": "80.00"})
    case = await client.open_case(body, idempotency_key="client-case-1")
    assert case == await client.open_case(body, idempotency_key="client-case-1")
    assert case["kind"] == "negotiation" and case["customer_id"] == loan["customer_id"]


def test_openapi_describes_identity_and_collections(service: CoreBankingService) -> None:
    spec = service.get("/openapi.json").json()
    tags = {
        "/identity/codes": "identity", "/identity/verifications": "identity", "/mock/sms": "identity",
        "/loans/{loan_id}/plan-offers": "collections", "/plan-offers/{offer_id}": "collections",
        "/plan-offers/{offer_id}/accept": "collections", "/loans/{loan_id}/promise-terms": "collections",
        "/cases": "collections", "/cases/{case_id}": "collections", "/cases/{case_id}/close": "collections",
    }
    for path, tag in tags.items():
        assert all(operation["tags"] == [tag] and operation["summary"] for operation in spec["paths"][path].values())
    schemas = spec["components"]["schemas"]
    assert schemas["PlanOfferOut"]["properties"]["total_to_pay"]["type"] == "string"
    assert schemas["PromiseTermsOut"]["properties"]["min_amount"]["type"] == "string"
    assert {"collections_hold", "active_plan_id"} <= set(schemas["LoanOut"]["properties"])
    assert {"offer_id", "kind", "channel", "schedule"} <= set(schemas["PaymentPlanOut"]["properties"])
