"""Core-banking mock: loan maths and seed as functions, and the HTTP API of the real process.

The process is started once per module (``core_banking`` fixture) and seeds itself for today in Lima, so
service tests find loans by state rather than by id, and each test works on loans no other test changes.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import phonenumbers
import pytest
import requests
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from credia.core_banking import operations as ops
from credia.core_banking.app import create_app
from credia.core_banking.bureau import bureau_report
from credia.core_banking.documents import InvalidDocument, normalise_document
from credia.core_banking.loans import (
    LIMA,
    add_months,
    allocate_payment,
    french_installment,
    french_schedule,
    loan_position,
    monthly_rate,
    today_lima,
)
from credia.core_banking.models import (
    ApplicationStatus,
    ApplicationStatusEvent,
    Base,
    ConsentChannel,
    ConsentEvent,
    CreditApplication,
    Customer,
    DocumentType,
    Loan,
    Payment,
    PaymentPlan,
    PromiseToPay,
)
from credia.core_banking.seed import demo_customers, seed, seed_if_empty
from credia.db import make_engine, make_session_factory
from credia.signing import SIGNATURE_HEADER, sign
from tests.unit.conftest import CoreBankingService

D = Decimal
AS_OF = date(2025, 3, 14)
BUCKETS = ("current", "1-30", "31-60", "61-120", ">120")


# --- loan maths --------------------------------------------------------------------------------------------


def test_tem_is_compounded_from_tea_not_divided_by_twelve() -> None:
    assert monthly_rate(D("0.40")).quantize(D("0.0000001")) == D("0.0284362")
    assert monthly_rate(D("0.40")) < D("0.40") / 12


def test_french_installment_matches_the_reference_example() -> None:
    schedule = french_schedule(D("10000"), D("0.40"), 12, date(2025, 1, 15))

    assert french_installment(D("10000"), D("0.40"), 12) == D("995.27")
    assert sum(row.amount for row in schedule) == D("11943.18")
    assert sum(row.principal for row in schedule) == D("10000.00")
    assert all(row.amount == D("995.27") for row in schedule[:-1])
    assert schedule[-1].amount == D("995.21")  # the last installment absorbs the rounding
    assert schedule[0].interest == D("284.36")
    assert [row.due_date for row in schedule[:3]] == [date(2025, 1, 15), date(2025, 2, 15), date(2025, 3, 15)]


@pytest.mark.parametrize(
    ("principal", "tea", "term"),
    [("1000", "0.45", 1), ("5000", "0", 7), ("123456.78", "0.9", 60), ("15000", "0.159", 48)],
)
def test_schedules_always_add_up_to_the_principal(principal: str, tea: str, term: int) -> None:
    schedule = french_schedule(D(principal), D(tea), term, date(2025, 1, 28))
    assert sum(row.principal for row in schedule) == D(principal)
    assert all(row.amount == row.principal + row.interest and row.principal > 0 for row in schedule)
    assert all(row.amount.as_tuple().exponent == -2 for row in schedule)


def test_add_months_clamps_to_the_end_of_the_month() -> None:
    assert add_months(date(2024, 1, 31), 1) == date(2024, 2, 29)
    assert add_months(date(2024, 12, 5), 1) == date(2025, 1, 5)
    assert add_months(date(2024, 1, 5), -1) == date(2023, 12, 5)


@dataclass
class Row:
    """An installment for the pure functions (the ORM row has the same attributes)."""

    number: int
    due_date: date
    principal: Decimal
    interest: Decimal
    amount: Decimal
    principal_paid: Decimal = D("0.00")
    interest_paid: Decimal = D("0.00")
    late_interest_accrued: Decimal = D("0.00")
    late_interest_paid: Decimal = D("0.00")
    accrued_until: Optional[date] = None
    paid_on: Optional[date] = None


def rows(principal: str = "10000", tea: str = "0.40", term: int = 12) -> List[Row]:
    return [
        Row(r.number, r.due_date, r.principal, r.interest, r.amount)
        for r in french_schedule(D(principal), D(tea), term, date(2025, 1, 15))
    ]


def test_delinquency_is_counted_from_the_oldest_unpaid_installment() -> None:
    schedule = rows()
    moratory = D("0.12")

    before = loan_position(schedule, moratory, date(2025, 1, 15))
    assert (before.days_past_due, before.bucket, before.next_due_date) == (0, "current", date(2025, 1, 15))
    assert before.outstanding_balance == D("11943.18")

    later = loan_position(schedule, moratory, date(2025, 2, 25))
    assert later.days_past_due == 41
    assert later.bucket == "31-60"
    assert later.installments_overdue == 2
    assert later.amount_overdue == D("1990.54")
    # Moratory interest on overdue principal only, from each due date: 41 and 10 days.
    expected = (schedule[0].principal * ((1 + moratory) ** (D(41) / 360) - 1)).quantize(D("0.01")) + (
        schedule[1].principal * ((1 + moratory) ** (D(10) / 360) - 1)
    ).quantize(D("0.01"))
    assert later.late_interest == expected
    assert later.total_overdue == later.amount_overdue + later.late_interest
    assert later.next_due_date == date(2025, 3, 15)
    assert later.next_due_amount == D("995.27")


def test_payments_go_to_late_interest_then_interest_then_principal_of_the_oldest_installment() -> None:
    schedule = rows()
    moratory = D("0.12")
    on = date(2025, 2, 4)  # 20 days after the first due date
    late = loan_position(schedule, moratory, on).late_interest

    parts = allocate_payment(schedule, moratory, late + D("300"), on)

    assert len(parts) == 1
    assert parts[0].late_interest == late
    assert parts[0].interest == schedule[0].interest == D("284.36")
    assert parts[0].principal == D("300") - D("284.36")
    # Late interest stops on what was paid; the rest keeps accruing on the unpaid principal only.
    assert loan_position(schedule, moratory, on).late_interest == D("0.00")
    position = loan_position(schedule, moratory, on)
    rest = position.outstanding_balance
    parts = allocate_payment(schedule, moratory, rest, on)
    assert sum(part.late_interest + part.interest + part.principal for part in parts) == rest
    assert loan_position(schedule, moratory, on).status == "paid_off"
    assert all(row.paid_on == on for row in schedule)


def test_allocation_refuses_more_than_the_balance() -> None:
    schedule = rows("1000", "0.45", 1)
    with pytest.raises(ValueError):
        allocate_payment(schedule, D("0.12"), D("5000"), date(2025, 1, 1))


@pytest.mark.parametrize(
    ("document_type", "given", "stored"),
    [
        (DocumentType.DNI, "10117410", "10117410"),
        (DocumentType.DNI, " 10 117 410-2 ", "10117410"),
        (DocumentType.DNI, "10.117.410", "10117410"),
        (DocumentType.DNI, "10117410G", "10117410"),
        (DocumentType.RUT, "12.531.909-2", "125319092"),
        (DocumentType.CURP, "boxw310820hnerxn09", "BOXW310820HNERXN09"),
        (DocumentType.CE, "001-234567", "001234567"),
        (DocumentType.RUC, "20100047218", "20100047218"),
    ],
)
def test_documents_are_normalised(document_type: DocumentType, given: str, stored: str) -> None:
    assert normalise_document(document_type, given) == stored


@pytest.mark.parametrize(
    ("document_type", "given"),
    [
        (DocumentType.DNI, "1011741"),
        (DocumentType.DNI, "101174109"),
        (DocumentType.DNI, "ABCDEFGH"),
        (DocumentType.RUT, "12.531.909-3"),
        (DocumentType.RUC, "20100047219"),
        (DocumentType.CE, "12"),
    ],
)
def test_invalid_documents_are_refused(document_type: DocumentType, given: str) -> None:
    with pytest.raises(InvalidDocument):
        normalise_document(document_type, given)


def test_bureau_is_deterministic_and_consistent() -> None:
    ranges = {"Normal": (0, 8), "CPP": (9, 30), "Deficiente": (31, 60), "Dudoso": (61, 120), "Pérdida": (121, 10**4)}
    reports = [bureau_report(DocumentType.DNI, f"{40000000 + n * 7919}") for n in range(300)]
    assert reports[0] == bureau_report(DocumentType.DNI, reports[0].document_number)
    assert {report.rating for report in reports} == set(ranges)
    for report in reports:
        low, high = ranges[report.rating]
        assert report.lenders_count == 0 or low <= report.max_days_past_due <= high
        assert (report.total_debt == 0) == (report.lenders_count == 0)


# --- seed --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seeded_sessions(tmp_path_factory: pytest.TempPathFactory) -> sessionmaker:
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('seed') / 'seed.db'}")
    assert seed_if_empty(engine, AS_OF)
    assert not seed_if_empty(engine, AS_OF)  # a second start keeps the data
    return make_session_factory(engine)


def test_seed_has_realistic_peruvian_customers(seeded_sessions: sessionmaker) -> None:
    with seeded_sessions() as session:
        customers = session.execute(select(Customer)).scalars().all()
    assert len(customers) >= 60
    assert len({c.document_number for c in customers}) == len(customers)
    assert all(c.document_type == "DNI" and re.fullmatch(r"\d{8}", c.document_number) for c in customers)
    assert all(re.fullmatch(r"\+519\d{8}", c.phone) for c in customers)
    assert all(phonenumbers.is_valid_number(phonenumbers.parse(c.phone)) for c in customers)
    assert all(re.fullmatch(r"[a-z.]+\d*@example\.com", c.email) for c in customers)
    assert all(18 <= (AS_OF - c.date_of_birth).days // 365 <= 75 for c in customers)
    assert all(c.created_at.date() < AS_OF for c in customers)


def test_seed_spreads_loans_over_every_bucket_and_applications_over_every_status(seeded_sessions: sessionmaker) -> None:
    with seeded_sessions() as session:
        loans = session.execute(select(Loan)).scalars().all()
        positions = [ops.position(loan, AS_OF) for loan in loans]
        buckets = Counter(p.bucket if p.status == "active" else "paid_off" for p in positions)
        loans_per_customer = Counter(loan.customer_id for loan in loans)
        customers = session.execute(select(Customer.id)).scalars().all()
        statuses = Counter(session.execute(select(CreditApplication.status)).scalars())
        promises = Counter(session.execute(select(PromiseToPay.status)).scalars())
        plans = session.execute(select(PaymentPlan)).scalars().all()
        payments = session.execute(select(Payment)).scalars().all()

    assert all(buckets[bucket] >= 3 for bucket in (*BUCKETS, "paid_off")), buckets
    assert set(statuses) == {status.value for status in ApplicationStatus}, statuses
    assert {"pending", "kept", "broken"} <= set(promises)
    assert plans and all(plan.status == "active" for plan in plans)
    assert max(loans_per_customer.values()) >= 2
    assert len(set(customers) - set(loans_per_customer)) >= 5  # customers without loans
    for payment in payments:
        total = sum(D(part[key]) for part in payment.allocation for key in ("late_interest", "interest", "principal"))
        assert total == payment.amount
        assert payment.paid_at.date() <= AS_OF


def test_seeded_history_lies_before_the_seed_day(seeded_sessions: sessionmaker) -> None:
    start = datetime.combine(AS_OF, datetime.min.time(), LIMA)
    with seeded_sessions() as session:
        stamps = [
            *session.execute(select(Customer.created_at)).scalars(),
            *session.execute(select(ConsentEvent.recorded_at)).scalars(),
            *session.execute(select(ApplicationStatusEvent.created_at)).scalars(),
            *session.execute(select(Payment.paid_at)).scalars(),
            *session.execute(select(PromiseToPay.created_at)).scalars(),
            *session.execute(select(PaymentPlan.created_at)).scalars(),
            *(datetime.combine(day, datetime.min.time(), LIMA)
              for day in session.execute(select(Loan.disbursed_on)).scalars()),
        ]
    assert stamps and max(stamps) < start


def test_demo_customers_have_what_the_table_says(seeded_sessions: sessionmaker) -> None:
    demos = demo_customers()
    assert len(demos) >= 6
    with seeded_sessions() as session:
        for demo in demos:
            customer = ops.find_customer_by_document(session, demo.document_type, demo.document_number)
            assert customer is not None
            assert customer.date_of_birth == demo.date_of_birth and customer.full_name == demo.full_name
            states = [ops.position(loan, AS_OF) for loan in ops.loans_of(session, customer)]
            assert tuple(s.bucket if s.status == "active" else "paid_off" for s in states) == demo.loan_buckets
        rosa = ops.find_customer_by_document(session, "DNI", "40236715")
        whatsapp = [e for e in rosa.consent_events if e.channel == "whatsapp"]
        assert [e.granted for e in whatsapp] == [True, False]
        assert ops.current_consents(rosa)[ConsentChannel.WHATSAPP].source == "whatsapp_opt_out"


def snapshot(sessions: sessionmaker) -> List[Tuple[Any, ...]]:
    with sessions() as session:
        customers = session.execute(select(Customer).order_by(Customer.id)).scalars()
        payments = session.execute(select(Payment).order_by(Payment.id)).scalars()
        return [(c.document_number, c.full_name, c.phone, c.created_at) for c in customers] + [
            (p.external_id, p.loan_id, p.amount, p.paid_at) for p in payments
        ]


def test_seed_is_deterministic_for_a_day(seeded_sessions: sessionmaker, tmp_path: Path) -> None:
    def seeded(as_of: date, name: str) -> sessionmaker:
        engine = make_engine(f"sqlite:///{tmp_path / name}")
        seed_if_empty(engine, as_of)
        return make_session_factory(engine)

    first = snapshot(seeded_sessions)
    assert snapshot(seeded(AS_OF, "again.db")) == first
    shifted = snapshot(seeded(AS_OF + timedelta(days=1), "next_day.db"))
    assert [row[:3] for row in shifted[:60]] == [row[:3] for row in first[:60]]
    assert shifted[0][3] == first[0][3] + timedelta(days=1)


def test_another_random_seed_also_keeps_to_the_product_rules(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'rules.db'}")
    Base.metadata.create_all(engine)
    with make_session_factory(engine)() as session:
        seed(session, AS_OF, rng_seed=7)
        buckets = {ops.position(loan, AS_OF).bucket for loan in session.execute(select(Loan)).scalars()}
        assert set(BUCKETS) <= buckets
        for application in session.execute(select(CreditApplication)).scalars():
            product = application.product
            assert product.min_amount <= application.amount <= product.max_amount
            assert product.min_term_months <= application.term_months <= product.max_term_months


# --- the service -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def service(core_banking: CoreBankingService) -> CoreBankingService:
    return core_banking


@pytest.fixture(scope="module")
def initial_loans(service: CoreBankingService) -> Dict[str, List[Dict[str, Any]]]:
    """Loans of generated customers (ids above the 8 demo ones) by bucket, as seeded; each test picks its own."""
    found: Dict[str, List[Dict[str, Any]]] = {bucket: [] for bucket in (*BUCKETS, "paid_off")}
    for customer in service.get("/customers", limit=500).json():
        for loan in service.get(f"/customers/{customer['id']}/loans").json():
            if customer["id"] > 8:
                found[loan["bucket"] if loan["status"] == "active" else "paid_off"].append(loan)
    return found


def customer_by_dni(service: CoreBankingService, dni: str) -> Dict[str, Any]:
    (customer,) = service.get("/customers", document_type="DNI", document_number=dni).json()
    return customer


def loans_of(service: CoreBankingService, dni: str) -> List[Dict[str, Any]]:
    return service.get(f"/customers/{customer_by_dni(service, dni)['id']}/loans").json()


def post_webhook(service: CoreBankingService, payload: Any, timestamp: Optional[int] = None,
                 secret: Optional[str] = None, header: Optional[str] = None) -> requests.Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    signature = header if header is not None else sign(secret or service.webhook_secret, body, timestamp)
    return service.post(
        "/webhooks/payments", data=body, headers={SIGNATURE_HEADER: signature, "Content-Type": "application/json"}
    )


def webhook_payload(loan: Dict[str, Any], payment_id: str, amount: str = "50.00", **overrides: Any) -> Dict[str, Any]:
    return {
        "event": "payment.completed",
        "payment_id": payment_id,
        "link_id": f"lnk_{payment_id}",
        "amount": amount,
        "currency": "PEN",
        "reference": f"cuota-{loan['id']}",
        "customer_id": loan["customer_id"],
        "loan_id": loan["id"],
        "paid_at": datetime.now(timezone.utc).isoformat(),
        **overrides,
    }


def payments_of(service: CoreBankingService, loan_id: int) -> List[Dict[str, Any]]:
    return service.get(f"/loans/{loan_id}/payments").json()


def test_health_and_openapi_describe_the_service(service: CoreBankingService) -> None:
    assert service.get("/health").json() == {"status": "ok"}
    spec = service.get("/openapi.json").json()
    expected = {
        "/health", "/products", "/products/{code}", "/customers", "/customers/{customer_id}",
        "/customers/{customer_id}/consents/{channel}", "/customers/{customer_id}/consents",
        "/customers/{customer_id}/applications", "/applications", "/applications/{application_id}",
        "/applications/{application_id}/transitions", "/customers/{customer_id}/loans", "/loans/{loan_id}",
        "/loans/{loan_id}/payments", "/webhooks/payments", "/loans/{loan_id}/payment-plans",
        "/loans/{loan_id}/promises", "/bureau/{document_type}/{document_number}",
    }
    assert expected <= set(spec["paths"])
    operations = [op for path in spec["paths"].values() for op in path.values()]
    assert all(op.get("summary") and op.get("tags") for op in operations)
    assert spec["components"]["schemas"]["LoanOut"]["properties"]["outstanding_balance"]["type"] == "string"


def test_products_carry_their_rules_with_money_as_strings(service: CoreBankingService) -> None:
    products = service.get("/products").json()
    assert {p["code"] for p in products} == {"PERSONAL", "CONVENIO", "PYME", "VEHICULAR"}
    personal = service.get("/products/personal").json()
    assert personal["name"] == "Préstamo Personal"
    assert (personal["min_amount"], personal["max_amount"], personal["tea"]) == ("1000.00", "50000.00", "0.45")
    assert personal["requirements"] and all(isinstance(item, str) for item in personal["requirements"])
    assert {"min_age", "max_age_at_maturity", "max_installment_to_income", "moratory_tea"} <= set(personal)
    missing = service.get("/products/NOPE")
    assert missing.status_code == 404 and "NOPE" in missing.json()["detail"]


def test_customers_are_found_by_any_spelling_of_their_document(service: CoreBankingService) -> None:
    for spelling in ("10117410", "10 117 410", "10117410-2", "10.117.410"):
        found = service.get("/customers", document_type="DNI", document_number=spelling).json()
        assert [c["full_name"] for c in found] == ["María Elena Quispe Mamani"]
    assert service.get("/customers", document_number="10-117-410").json()[0]["id"] == found[0]["id"]
    assert service.get("/customers", phone="987654321").json()[0]["id"] == found[0]["id"]
    assert service.get("/customers", document_type="DNI", document_number="99999990").json() == []
    invalid = service.get("/customers", document_type="DNI", document_number="123")
    assert invalid.status_code == 422 and "8 digits" in invalid.json()["detail"]
    assert service.get("/customers/999999").status_code == 404
    customer = service.get(f"/customers/{found[0]['id']}").json()
    assert customer["consents"]["whatsapp"] is True and customer["consents"]["voice"] is False


def new_customer(**overrides: Any) -> Dict[str, Any]:
    return {
        "document_type": "DNI",
        "document_number": "47123456",
        "first_name": "Diana",
        "last_name": "Ñahui Palomino",
        "date_of_birth": "1992-06-15",
        "phone": "+51 999 888 777",
        "email": "diana.nahui@example.com",
        **overrides,
    }


def test_create_customer_and_refuse_duplicates(service: CoreBankingService) -> None:
    created = service.post("/customers", new_customer())
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["document_number"], body["phone"], body["country"]) == ("47123456", "+51999888777", "PE")
    assert all(value is False for value in body["consents"].values())

    again = service.post("/customers", new_customer(document_number="47-123-456"))
    assert again.status_code == 409 and "47123456" in again.json()["detail"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"document_number": "4712345"}, "document_number"),
        ({"phone": "12345"}, "phone"),
        ({"email": "not-an-email"}, "email"),
        ({"date_of_birth": (date.today() - timedelta(days=365 * 17)).isoformat()}, "date_of_birth"),
        ({"document_type": "RUT", "document_number": "12.531.909-2"}, "document_type"),
        ({"first_name": "Dian4"}, "first_name"),
        ({"nickname": "Di"}, "nickname"),
    ],
)
def test_invalid_customers_are_refused_with_the_field(
    service: CoreBankingService, overrides: Dict[str, Any], field: str
) -> None:
    response = service.post("/customers", new_customer(**{"document_number": "48123457", **overrides}))
    assert response.status_code == 422
    assert field in {error["loc"][-1] for error in response.json()["errors"]}
    assert field in response.json()["detail"]


def test_consent_changes_are_kept_with_time_and_source(service: CoreBankingService) -> None:
    customer = customer_by_dni(service, "70451236")
    path = f"/customers/{customer['id']}/consents"
    assert service.put(f"{path}/sms", {"granted": True, "source": "whatsapp"}).json()["granted"] is True
    revoked = service.put(f"{path}/sms", {"granted": False, "source": "web_form"})
    assert revoked.status_code == 200 and revoked.json()["source"] == "web_form"

    consents = service.get(path).json()
    current = {item["channel"]: item for item in consents["current"]}
    assert current["sms"]["granted"] is False and current["whatsapp"]["granted"] is True
    assert current["voice"] == {"channel": "voice", "granted": False, "source": None, "updated_at": None}
    sms = [event for event in consents["history"] if event["channel"] == "sms"]
    assert [(e["granted"], e["source"]) for e in sms] == [(True, "whatsapp"), (False, "web_form")]
    assert all(e["recorded_at"].endswith("+00:00") for e in sms)
    assert service.get(f"/customers/{customer['id']}").json()["consents"]["sms"] is False

    assert service.put(f"{path}/fax", {"granted": True, "source": "x"}).status_code == 422
    assert service.put(f"{path}/sms", {"granted": "yes", "source": "x"}).status_code == 422
    assert service.put(f"{path}/sms", {"granted": True, "source": ""}).status_code == 422
    assert service.put("/customers/999999/consents/sms", {"granted": True, "source": "x"}).status_code == 404


def test_application_goes_through_its_workflow_and_disbursement_books_a_loan(service: CoreBankingService) -> None:
    created = service.post("/customers", new_customer(document_number="47654321", phone="+51999888666"))
    assert created.status_code == 201, created.text
    customer = created.json()
    body = {
        "customer_id": customer["id"], "product_code": "PERSONAL", "amount": "10000", "term_months": 12,
        "monthly_income": 4000, "employment_type": "employee",
    }
    created = service.post("/applications", body)
    assert created.status_code == 201, created.text
    application = created.json()
    assert application["status"] == "received" and application["installment_amount"] == "1013.32"
    assert application["installment_to_income"] == "0.2533"
    assert service.post("/applications", body).status_code == 409  # one open application per product

    path = f"/applications/{application['id']}/transitions"
    refused = service.post(path, {"status": "disbursed"})
    assert refused.status_code == 409
    assert "received" in refused.json()["detail"] and "in_review" in refused.json()["detail"]
    for status in ("in_review", "approved", "disbursed"):
        moved = service.post(path, {"status": status, "note": f"paso a {status}"})
        assert moved.status_code == 200, moved.text
    final = service.get(f"/applications/{application['id']}").json()
    assert [(h["from_status"], h["status"]) for h in final["history"]] == [
        (None, "received"), ("received", "in_review"), ("in_review", "approved"), ("approved", "disbursed")
    ]
    assert service.post(path, {"status": "cancelled"}).status_code == 409  # disbursed is final

    loan = service.get(f"/loans/{final['loan_id']}").json()
    assert (loan["principal"], loan["term_months"], loan["status"]) == ("10000.00", 12, "active")
    assert loan["days_past_due"] == 0
    assert len(loan["installments"]) == 12
    assert sum(D(i["principal"]) for i in loan["installments"]) == D("10000.00")
    assert D(loan["installments"][0]["amount"]) == D("1013.32")
    assert date.fromisoformat(loan["next_due_date"]) > today_lima() - timedelta(days=1)
    assert [a["id"] for a in service.get(f"/customers/{customer['id']}/applications").json()] == [application["id"]]


@pytest.mark.parametrize(
    ("changes", "status"),
    [
        ({"amount": "500"}, 422),
        ({"term_months": 72}, 422),
        ({"amount": "0"}, 422),
        ({"monthly_income": "-1"}, 422),
        ({"employment_type": "astronaut"}, 422),
        ({"product_code": "NOPE"}, 404),
        ({"customer_id": 999999}, 404),
    ],
)
def test_invalid_applications_are_refused(service: CoreBankingService, changes: Dict[str, Any], status: int) -> None:
    body = {
        "customer_id": customer_by_dni(service, "46210987")["id"], "product_code": "PYME", "amount": "5000",
        "term_months": 12, "monthly_income": "3000", "employment_type": "business_owner", **changes,
    }
    response = service.post("/applications", body)
    assert response.status_code == status, response.text
    assert response.json()["detail"]


def test_demo_loans_show_their_delinquency(service: CoreBankingService) -> None:
    expected = {demo.document_number: demo.loan_buckets for demo in demo_customers()}
    for dni, buckets in expected.items():
        loans = loans_of(service, dni)
        assert tuple(l["bucket"] if l["status"] == "active" else "paid_off" for l in loans) == buckets
    (overdue,) = loans_of(service, "40236715")
    detail = service.get(f"/loans/{overdue['id']}").json()
    unpaid = [i for i in detail["installments"] if i["status"] != "paid"]
    assert 31 <= detail["days_past_due"] <= 60
    assert detail["days_past_due"] == (today_lima() - date.fromisoformat(unpaid[0]["due_date"])).days
    assert D(unpaid[0]["paid_amount"]) > 0  # the partial payment
    assert D(detail["late_interest"]) > 0
    assert D(detail["total_overdue"]) == D(detail["amount_overdue"]) + D(detail["late_interest"])
    assert D(detail["outstanding_balance"]) == sum(
        D(i["amount"]) - D(i["paid_amount"]) for i in unpaid
    ) + D(detail["late_interest"])
    assert detail["installments_overdue"] == sum(i["status"] == "overdue" for i in detail["installments"])
    assert D(detail["late_interest"]) == sum(D(i["late_interest"]) for i in detail["installments"])


def test_live_seed_covers_every_bucket_and_application_status(
    service: CoreBankingService, initial_loans: Dict[str, List[Dict[str, Any]]]
) -> None:
    assert all(len(initial_loans[bucket]) >= 3 for bucket in BUCKETS), {k: len(v) for k, v in initial_loans.items()}
    customers = service.get("/customers", limit=500).json()
    assert len(customers) >= 60
    statuses = {
        app["status"] for c in customers for app in service.get(f"/customers/{c['id']}/applications").json()
    }
    assert statuses == {status.value for status in ApplicationStatus}


def test_payment_is_applied_once_per_external_id(
    service: CoreBankingService, initial_loans: Dict[str, List[Dict[str, Any]]]
) -> None:
    loan = initial_loans["1-30"][0]
    before = service.get(f"/loans/{loan['id']}").json()
    amount = before["total_overdue"]
    first = service.post(f"/loans/{loan['id']}/payments", {"amount": amount, "external_id": "api-1", "channel": "web"})
    assert first.status_code == 201, first.text
    paid = first.json()
    assert paid["duplicate"] is False and paid["amount"] == amount
    assert paid["allocation"][0]["installment_number"] == before["installments_paid"] + 1
    assert paid["loan"]["days_past_due"] == 0 and paid["loan"]["amount_overdue"] == "0.00"

    again = service.post(f"/loans/{loan['id']}/payments", {"amount": amount, "external_id": "api-1", "channel": "web"})
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert again.json()["id"] == paid["id"]
    assert again.json()["loan"]["outstanding_balance"] == paid["loan"]["outstanding_balance"]

    other = service.post(f"/loans/{loan['id']}/payments", {"amount": "1.00", "external_id": "api-1"})
    assert other.status_code == 409 and "api-1" in other.json()["detail"]
    assert [p["external_id"] for p in payments_of(service, loan["id"])].count("api-1") == 1


def test_concurrent_duplicate_payments_apply_once(
    service: CoreBankingService, initial_loans: Dict[str, List[Dict[str, Any]]]
) -> None:
    loan = initial_loans["current"][1]
    before = D(service.get(f"/loans/{loan['id']}").json()["outstanding_balance"])
    url = f"{service.url}/loans/{loan['id']}/payments"

    def pay(_: int) -> int:
        return requests.post(url, json={"amount": "25.50", "external_id": "race-1"}, timeout=30).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = Counter(pool.map(pay, range(16)))

    assert codes == Counter({201: 1, 200: 15})
    after = D(service.get(f"/loans/{loan['id']}").json()["outstanding_balance"])
    assert before - after == D("25.50")
    assert [p["external_id"] for p in payments_of(service, loan["id"])].count("race-1") == 1


@pytest.mark.parametrize("amount", ["0", "0.00", "-5", "1.234", "abc", True, None, "NaN", "1e400"])
def test_bad_payment_amounts_are_refused(
    service: CoreBankingService, initial_loans: Dict[str, List[Dict[str, Any]]], amount: Any
) -> None:
    loan = initial_loans["31-60"][0]
    response = service.post(f"/loans/{loan['id']}/payments", {"amount": amount, "external_id": f"bad-{amount}"})
    assert response.status_code == 422
    assert response.json()["detail"]


def test_payments_beyond_the_balance_or_on_unknown_or_paid_off_loans_are_refused(
    service: CoreBankingService, initial_loans: Dict[str, List[Dict[str, Any]]]
) -> None:
    loan = service.get(f"/loans/{initial_loans['31-60'][0]['id']}").json()
    too_much = D(loan["outstanding_balance"]) + D("0.01")
    response = service.post(f"/loans/{loan['id']}/payments", {"amount": str(too_much), "external_id": "too-much"})
    assert response.status_code == 422 and "outstanding balance" in response.json()["detail"]
    assert service.post("/loans/999999/payments", {"amount": "10", "external_id": "x-404"}).status_code == 404
    paid_off = initial_loans["paid_off"][0]
    response = service.post(f"/loans/{paid_off['id']}/payments", {"amount": "10", "external_id": "x-paid"})
    assert response.status_code == 409 and "paid off" in response.json()["detail"]
    assert "too-much" not in {p["external_id"] for p in payments_of(service, loan["id"])}
    malformed = service.post(
        f"/loans/{loan['id']}/payments", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert malformed.status_code == 400 and malformed.json()["detail"]


@pytest.mark.parametrize(
    ("case", "expected"),
    [("missing", "missing"), ("wrong secret", "does not match"), ("stale", "stale"), ("malformed", "malformed")],
)
def test_webhook_without_a_valid_signature_is_refused_and_applies_nothing(
    service: CoreBankingService, initial_loans: Dict[str, List[Dict[str, Any]]], case: str, expected: str
) -> None:
    loan = initial_loans[">120"][0]
    payload = webhook_payload(loan, f"pay_sig_{case.replace(' ', '_')}")
    if case == "missing":
        response = service.post("/webhooks/payments", data=json.dumps(payload).encode())
    elif case == "wrong secret":
        response = post_webhook(service, payload, secret="not-the-secret")
    elif case == "stale":
        response = post_webhook(service, payload, timestamp=int(time.time()) - 3600)
    else:
        response = post_webhook(service, payload, header="v1=abc")
    assert response.status_code == 401
    assert expected in response.json()["detail"]
    assert payload["payment_id"] not in {p["external_id"] for p in payments_of(service, loan["id"])}


def test_webhook_body_must_be_the_signed_bytes(
    service: CoreBankingService, initial_loans: Dict[str, List[Dict[str, Any]]]
) -> None:
    loan = initial_loans[">120"][0]
    body = json.dumps(webhook_payload(loan, "pay_tampered")).encode()
    header = sign(service.webhook_secret, body)
    tampered = body.replace(b'"50.00"', b'"5.00"')
    response = service.post("/webhooks/payments", data=tampered, headers={SIGNATURE_HEADER: header})
    assert response.status_code == 401


def test_webhook_applies_a_payment_exactly_once(
    service: CoreBankingService, initial_loans: Dict[str, List[Dict[str, Any]]]
) -> None:
    loan = initial_loans[">120"][1]
    before = D(service.get(f"/loans/{loan['id']}").json()["outstanding_balance"])
    # The payments service sends ids as strings and the exact bytes it signed (accents included).
    payload = webhook_payload(loan, "pay_once", amount="123.45", customer_id=str(loan["customer_id"]),
                              reference="Cuota año 2025", loan_id=str(loan["id"]))
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()

    first = post_webhook(service, body)
    assert first.status_code == 200, first.text
    assert first.json() == {"status": "applied", "payment_id": "pay_once", "loan_id": loan["id"]}
    for _ in range(2):
        repeat = post_webhook(service, body)
        assert repeat.status_code == 200 and repeat.json()["status"] == "duplicate"

    (payment,) = [p for p in payments_of(service, loan["id"]) if p["external_id"] == "pay_once"]
    assert (payment["amount"], payment["source"], payment["reference"]) == ("123.45", "webhook", "Cuota año 2025")
    assert before - D(service.get(f"/loans/{loan['id']}").json()["outstanding_balance"]) == D("123.45")


def test_concurrent_webhook_deliveries_apply_once(
    service: CoreBankingService, initial_loans: Dict[str, List[Dict[str, Any]]]
) -> None:
    loan = initial_loans[">120"][2]
    body = json.dumps(webhook_payload(loan, "pay_race", amount="10.00")).encode()
    header = sign(service.webhook_secret, body)

    def deliver(_: int) -> str:
        response = requests.post(
            f"{service.url}/webhooks/payments", data=body, headers={SIGNATURE_HEADER: header}, timeout=30
        )
        return response.json()["status"]

    with ThreadPoolExecutor(max_workers=6) as pool:
        outcomes = Counter(pool.map(deliver, range(12)))
    assert outcomes == Counter({"applied": 1, "duplicate": 11})


def test_webhook_without_loan_goes_to_the_most_overdue_loan(
    service: CoreBankingService, initial_loans: Dict[str, List[Dict[str, Any]]]
) -> None:
    loan = initial_loans["61-120"][0]
    loans = service.get(f"/customers/{loan['customer_id']}/loans").json()
    target = max((l for l in loans if l["status"] == "active"), key=lambda l: (l["days_past_due"], -l["id"]))
    response = post_webhook(service, webhook_payload(loan, "pay_no_loan", loan_id=None))
    assert response.status_code == 200, response.text
    assert response.json()["loan_id"] == target["id"]


@pytest.mark.parametrize(
    ("changes", "status"),
    [
        ({"loan_id": 999999}, 404),
        ({"customer_id": 999999}, 404),
        ({"currency": "USD"}, 422),
        ({"amount": "-3"}, 422),
        ({"amount": "12.345"}, 422),
        ({"paid_at": "yesterday"}, 422),
        ({"payment_id": None}, 422),
    ],
)
def test_webhook_with_bad_references_or_fields_is_refused(
    service: CoreBankingService, initial_loans: Dict[str, List[Dict[str, Any]]], changes: Dict[str, Any], status: int
) -> None:
    loan = initial_loans["61-120"][1]
    payload = {**webhook_payload(loan, f"pay_bad_{abs(hash(repr(changes)))}"), **changes}
    response = post_webhook(service, payload)
    assert response.status_code == status, response.text
    assert response.json()["detail"]
    assert not [p for p in payments_of(service, loan["id"]) if p["external_id"].startswith("pay_bad")]


def test_webhook_for_another_customers_loan_is_a_conflict(
    service: CoreBankingService, initial_loans: Dict[str, List[Dict[str, Any]]]
) -> None:
    loan = initial_loans["61-120"][1]
    other = next(l for l in initial_loans["61-120"] if l["customer_id"] != loan["customer_id"])
    response = post_webhook(service, webhook_payload(loan, "pay_wrong_owner", customer_id=other["customer_id"]))
    assert response.status_code == 409


def test_webhook_malformed_bodies(service: CoreBankingService) -> None:
    assert post_webhook(service, b"{not json").status_code == 400
    assert post_webhook(service, b"[1, 2]").status_code == 400
    assert post_webhook(service, {"event": "payment.completed"}).status_code == 422
    ignored = post_webhook(service, {"event": "payment.refunded", "payment_id": "pay_r"})
    assert ignored.status_code == 200 and ignored.json()["status"] == "ignored"


def test_payment_plans_are_validated_and_one_is_active_at_a_time(service: CoreBankingService) -> None:
    (lucia,) = loans_of(service, "41528367")
    path = f"/loans/{lucia['id']}/payment-plans"
    total = D(lucia["total_overdue"])
    assert service.post(path, {"installments_count": 0}).status_code == 422
    assert service.post(path, {"installments_count": 37}).status_code == 422
    assert service.post(path, {"installments_count": 6, "down_payment": "-1"}).status_code == 422
    assert service.post(path, {"installments_count": 6, "discount": str(total)}).status_code == 422
    yesterday = (today_lima() - timedelta(days=1)).isoformat()
    assert service.post(path, {"installments_count": 6, "first_due_date": yesterday}).status_code == 422

    created = service.post(path, {"installments_count": 6, "down_payment": "100", "discount": "20.50"})
    assert created.status_code == 201, created.text
    plan = created.json()
    assert plan["status"] == "active" and D(plan["total_amount"]) == total
    assert D(plan["installment_amount"]) * 6 >= total - D("120.50") > D(plan["installment_amount"]) * 6 - D("0.06")
    assert service.post(path, {"installments_count": 3}).status_code == 409
    assert [p["id"] for p in service.get(path).json()] == [plan["id"]]

    (maria,) = loans_of(service, "10117410")
    current = service.post(f"/loans/{maria['id']}/payment-plans", {"installments_count": 3})
    assert current.status_code == 409 and "nothing overdue" in current.json()["detail"]
    assert service.get("/loans/999999/payment-plans").status_code == 404


def test_promises_are_validated_and_settled_by_payments(service: CoreBankingService) -> None:
    (rosa,) = loans_of(service, "40236715")
    path = f"/loans/{rosa['id']}/promises"
    today = today_lima()
    assert {p["status"] for p in service.get(path).json()} == {"kept"}
    assert service.post(path, {"amount": "0", "promised_date": today.isoformat()}).status_code == 422
    past = service.post(path, {"amount": "50", "promised_date": (today - timedelta(days=1)).isoformat()})
    assert past.status_code == 422 and "past" in past.json()["detail"]
    far = service.post(path, {"amount": "50", "promised_date": (today + timedelta(days=31)).isoformat()})
    assert far.status_code == 422
    huge = service.post(path, {"amount": "999999", "promised_date": today.isoformat()})
    assert huge.status_code == 422 and "outstanding balance" in huge.json()["detail"]

    minimum = service.get(f"/loans/{rosa['id']}/promise-terms").json()["min_amount"]
    made = service.post(path, {"amount": minimum, "promised_date": (today + timedelta(days=3)).isoformat()})
    assert made.status_code == 201, made.text
    assert made.json()["status"] == "pending"
    assert service.post(path, {"amount": "10", "promised_date": today.isoformat()}).status_code == 409

    paid = service.post(f"/loans/{rosa['id']}/payments", {"amount": minimum, "external_id": "promise-80"})
    assert paid.status_code == 201
    statuses = {p["id"]: p["status"] for p in service.get(path).json()}
    assert statuses[made.json()["id"]] == "kept"

    (jose,) = loans_of(service, "45879632")
    taken = service.post(f"/loans/{jose['id']}/promises", {"amount": "10", "promised_date": today.isoformat()})
    assert taken.status_code == 409 and "pending" in taken.json()["detail"]


def test_concurrent_promises_leave_one_pending(
    service: CoreBankingService, initial_loans: Dict[str, List[Dict[str, Any]]]
) -> None:
    loan = next(
        l for l in initial_loans["1-30"][2:]
        if all(p["status"] != "pending" for p in service.get(f"/loans/{l['id']}/promises").json())
    )
    minimum = service.get(f"/loans/{loan['id']}/promise-terms").json()["min_amount"]
    body = {"amount": minimum, "promised_date": today_lima().isoformat()}

    def promise(_: int) -> int:
        return requests.post(f"{service.url}/loans/{loan['id']}/promises", json=body, timeout=30).status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        assert Counter(pool.map(promise, range(6))) == Counter({201: 1, 409: 5})


def test_bureau_answers_per_document(service: CoreBankingService) -> None:
    first = service.get("/bureau/DNI/10117410").json()
    assert service.get("/bureau/DNI/10 117 410-2").json() == first
    assert first["rating"] in {"Normal", "CPP", "Deficiente", "Dudoso", "Pérdida"}
    assert re.fullmatch(r"\d+\.\d{2}", first["total_debt"])
    assert service.get("/bureau/DNI/123").status_code == 422
    assert service.get("/bureau/PASSPORT/123").status_code == 422


@pytest.mark.parametrize(
    "path",
    [
        "/customers/999999", "/customers/999999/loans", "/customers/999999/applications",
        "/customers/999999/consents", "/applications/999999", "/loans/999999", "/loans/999999/payments",
        "/loans/999999/promises", "/loans/999999/payment-plans",
    ],
)
def test_unknown_ids_are_404_with_a_reason(service: CoreBankingService, path: str) -> None:
    response = service.get(path)
    assert response.status_code == 404
    assert "999999" in response.json()["detail"]


def test_ids_beyond_the_database_range_are_refused_not_crashed(service: CoreBankingService) -> None:
    assert service.get(f"/loans/{10**30}").status_code == 422
    assert service.get("/customers/0").status_code == 422
    body = {"customer_id": 10**30, "product_code": "PYME", "amount": "5000", "term_months": 12,
            "monthly_income": "3000", "employment_type": "business_owner"}
    assert service.post("/applications", body).status_code == 422


def test_unexpected_errors_become_json_500(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Driven through ASGI in-process (no httpx here): an exception is a JSON 500, not a dropped connection."""
    app = create_app(f"sqlite:///{tmp_path / 'boom.db'}", "secret")

    def boom(*_args: Any) -> None:
        raise RuntimeError("kaput")

    monkeypatch.setattr(ops, "get_product", boom)
    status, body = asgi_get(app, "/products/PERSONAL")
    assert status == 500
    assert body == {"detail": "internal error; the request was not completed"}
    assert asgi_get(app, "/health") == (200, {"status": "ok"})


def asgi_get(app: Any, path: str) -> Tuple[int, Any]:
    messages: List[Dict[str, Any]] = []

    async def receive() -> Dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Dict[str, Any]) -> None:
        messages.append(message)

    async def call() -> None:
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
            "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"", "headers": [],
            "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
        }
        try:
            await app(scope, receive, send)
        except RuntimeError:
            pass  # Starlette re-raises after sending the 500 so that the server can log it

    asyncio.run(call())
    status = next(m["status"] for m in messages if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return status, json.loads(body)
