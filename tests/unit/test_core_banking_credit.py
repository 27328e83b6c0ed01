"""The credit-application journey on the real core-banking process: simulations, applications pre-evaluated
against the policy, the mock bureau and the customer's arrears, counter-offers, status look-ups that never
tell anything about someone else, and documents.

Demo identities (see ``credia.core_banking.seed``): Pedro 70451236 is a registered customer without loans;
the ``BUREAU_SAMPLE_DNIS`` are new customers whose bureau report has each rating.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any, Dict, List, Optional

import pytest
import requests
from sqlalchemy import select

from credia.core_banking.loans import today_lima
from credia.core_banking.models import ProcessingConsent
from credia.core_banking.seed import BUREAU_SAMPLE_DNIS
from credia.credit.evaluation import make_offer
from credia.credit.maths import first_due_date
from credia.credit.policy import load_policy
from credia.db import make_engine, make_session_factory
from tests.unit.conftest import CoreBankingService

D = Decimal
CODE = re.compile(r"^SOL-[23456789ABCDEFGHJKMNPQRSTUVWXYZ]{6}$")
NO_MATCH = {"detail": "no application matches the details given"}
PEDRO = ("70451236", "2000-02-25")


@pytest.fixture(scope="module")
def service(core_banking: CoreBankingService) -> CoreBankingService:
    return core_banking


def body(document_number: str, date_of_birth: str, **changes: Any) -> Dict[str, Any]:
    return {
        "product_code": "PERSONAL",
        "amount": "3000",
        "term_months": 12,
        "monthly_income": "2500",
        "employment_type": "employee",
        "employment_tenure_months": 24,
        "document_number": document_number,
        "date_of_birth": date_of_birth,
        "phone": "+51 955 123 456",
        "email": "solicitante@example.com",
        "channel": "whatsapp",
        "consent": {"granted": True, "source": "chat:test"},
        **changes,
    }


def submit(service: CoreBankingService, payload: Dict[str, Any], key: Optional[str] = None) -> requests.Response:
    return service.post("/applications", payload, headers={"Idempotency-Key": key or uuid.uuid4().hex})


def submitted(service: CoreBankingService, payload: Dict[str, Any]) -> Dict[str, Any]:
    response = submit(service, payload)
    assert response.status_code == 201, response.text
    return response.json()


def lookup(service: CoreBankingService, **params: str) -> requests.Response:
    return service.get("/applications/lookup", **params)


# --- simulations and products ------------------------------------------------------------------------------


def test_simulation_gives_installment_tea_tcea_total_and_first_due_date(service: CoreBankingService) -> None:
    response = service.post("/simulations", {"product_code": "personal", "amount": 10000, "term_months": 12})
    assert response.status_code == 200, response.text
    simulation = response.json()

    expected = make_offer(load_policy().product("PERSONAL"), D("10000"), 12, today_lima())
    assert simulation["installment"] == str(expected.installment)
    assert simulation["total_to_pay"] == str(expected.total_to_pay)
    assert (simulation["tea"], D(simulation["tcea"])) == ("0.45", D("0.4630"))
    assert simulation["first_due_date"] == first_due_date(today_lima()).isoformat()
    assert all(isinstance(simulation[field], str) for field in ("amount", "installment", "tcea", "net_disbursed"))


@pytest.mark.parametrize(
    ("payload", "status", "detail"),
    [
        ({"product_code": "PERSONAL", "amount": "999", "term_months": 12}, 422, "between S/"),
        ({"product_code": "PERSONAL", "amount": "5000", "term_months": 60}, 422, "between 6 and 48 months"),
        ({"product_code": "PERSONAL", "amount": "abc", "term_months": 12}, 422, "amount"),
        ({"product_code": "PERSONAL", "amount": "5000", "term_months": 12, "rate": "1"}, 422, "rate"),
        ({"product_code": "HIPOTECARIO", "amount": "5000", "term_months": 12}, 404, "HIPOTECARIO"),
    ],
)
def test_simulation_refuses_what_the_product_does_not_offer(
    service: CoreBankingService, payload: Dict[str, Any], status: int, detail: str
) -> None:
    response = service.post("/simulations", payload)
    assert response.status_code == status
    assert detail in response.json()["detail"]


def test_products_carry_the_policy_rules(service: CoreBankingService) -> None:
    pyme = service.get("/products/PYME").json()
    assert (pyme["origination_fee_rate"], pyme["insurance_monthly_rate"], pyme["min_monthly_income"]) == (
        "0.02", "0.00085", "2000.00"
    )
    assert pyme["employment"] == {"business_owner": 12, "self_employed": 12}
    assert pyme["installment_to_income"] == {
        "default": "0.4", "low_income": None, "high_income": {"above": "15000.00", "ratio": "0.45"}
    }
    assert [document["kind"] for document in pyme["required_documents"]][0] == "dni"


# --- applications: one per outcome -------------------------------------------------------------------------


def test_a_new_customer_is_registered_and_pre_approved(service: CoreBankingService) -> None:
    application = submitted(service, body(BUREAU_SAMPLE_DNIS["Normal"], "1991-07-15"))

    assert CODE.match(application["code"])
    assert (application["status"], application["outcome"], application["reasons"]) == ("approved", "pre_approved", [])
    offer = application["offer"]
    assert (offer["amount"], offer["term_months"], offer["tea"]) == ("3000.00", 12, "0.45")
    assert {"installment", "tcea", "total_to_pay", "first_due_date"} <= set(offer)
    assert [(d["kind"], d["received"]) for d in application["required_documents"]] == [
        ("dni", False), ("income_proof", False), ("utility_bill", False)
    ]
    assert [(h["from_status"], h["status"]) for h in application["history"]] == [
        (None, "received"), ("received", "approved")
    ]
    assert (application["channel"], application["employment_tenure_months"]) == ("whatsapp", 24)
    assert (application["phone"], application["email"]) == ("+51955123456", "solicitante@example.com")

    (customer,) = service.get("/customers", document_type="DNI", document_number=BUREAU_SAMPLE_DNIS["Normal"]).json()
    assert (customer["first_name"], customer["full_name"], customer["phone"]) == (None, "", "+51955123456")
    with make_session_factory(make_engine(service.database_url))() as session:
        consent = session.execute(
            select(ProcessingConsent).where(ProcessingConsent.application_id == application["id"])
        ).scalar_one()
    assert (consent.customer_id, consent.granted, consent.source) == (customer["id"], True, "chat:test")


def test_a_counter_offer_is_accepted(service: CoreBankingService) -> None:
    # Pedro earns S/ 1,800: at most S/ 540 a month, so S/ 10,000 in 12 months becomes S/ 5,300.
    application = submitted(
        service, body(*PEDRO, amount="10000", monthly_income="1800", employment_type="self_employed")
    )
    assert (application["status"], application["outcome"]) == ("received", "counter_offer")
    assert [reason["code"] for reason in application["reasons"]] == ["amount_adjusted"]
    assert (application["offer"]["amount"], application["offer"]["term_months"]) == ("5300.00", 12)
    assert application["amount"] == "10000.00"  # what was asked, until the customer accepts

    accepted = service.post(f"/applications/{application['id']}/accept-offer")
    assert accepted.status_code == 200, accepted.text
    result = accepted.json()
    assert (result["status"], result["amount"], result["term_months"]) == ("approved", "5300.00", 12)
    assert result["history"][-1]["from_status"] == "received" and result["history"][-1]["status"] == "approved"
    again = service.post(f"/applications/{application['id']}/accept-offer")
    assert again.status_code == 200 and again.json()["history"] == result["history"]

    pre_approved = submitted(service, body(*PEDRO, product_code="VEHICULAR", amount="15000", term_months=60,
                                           monthly_income="3000", employment_type="self_employed"))
    assert pre_approved["outcome"] == "pre_approved"
    refused = service.post(f"/applications/{pre_approved['id']}/accept-offer")
    assert refused.status_code == 409 and "no counter-offer" in refused.json()["detail"]
    assert service.post("/applications/999999/accept-offer").status_code == 404


@pytest.mark.parametrize(("dni", "birth"), [("42771354", "1983-12-03"), (BUREAU_SAMPLE_DNIS["CPP"], "1985-01-20")])
def test_a_cpp_rating_is_referred_to_an_advisor(service: CoreBankingService, dni: str, birth: str) -> None:
    application = submitted(service, body(dni, birth, monthly_income="5200"))
    assert (application["status"], application["outcome"], application["offer"]) == ("referred", "referred", None)
    assert [reason["code"] for reason in application["reasons"]] == ["bureau_rating_review"]
    assert application["reasons"][0]["message"]


@pytest.mark.parametrize("rating", ["Deficiente", "Dudoso", "Pérdida"])
def test_a_bad_bureau_rating_is_declined(service: CoreBankingService, rating: str) -> None:
    application = submitted(service, body(BUREAU_SAMPLE_DNIS[rating], "1987-09-30"))
    assert (application["status"], application["outcome"], application["offer"]) == ("rejected", "declined", None)
    (reason,) = application["reasons"]
    assert reason["code"] == "bureau_rating" and reason["message"] and reason["alternative"]
    assert [(h["from_status"], h["status"]) for h in application["history"]] == [
        (None, "received"), ("received", "rejected")
    ]


def test_serious_arrears_with_the_lender_are_declined(service: CoreBankingService) -> None:
    application = submitted(service, body("41528367", "1988-05-09"))  # Lucía, about 150 days past due
    assert application["outcome"] == "declined"
    assert [reason["code"] for reason in application["reasons"]] == ["arrears_with_lender"]


@pytest.mark.parametrize(
    ("dni", "birth", "changes", "outcome", "reasons"),
    [
        ("10117410", "1985-03-14", {"monthly_income": "4200"}, "pre_approved", []),  # María, up to date
        ("09876543", "1972-01-30", {"monthly_income": "9000"}, "declined", ["arrears_with_lender"]),  # Carlos
        ("45879632", "1979-11-02", {"monthly_income": "6500"}, "declined", ["bureau_rating"]),  # José, Pérdida
        ("40236715", "1990-07-21", {"monthly_income": "2800"}, "declined", ["bureau_rating", "arrears_with_lender"]),
    ],
)
def test_demo_customers_give_the_outcomes_the_readme_lists(
    service: CoreBankingService, dni: str, birth: str, changes: Dict[str, Any], outcome: str, reasons: List[str]
) -> None:
    application = submitted(service, body(dni, birth, **changes))
    assert application["outcome"] == outcome
    assert [reason["code"] for reason in application["reasons"]] == reasons


def test_one_open_application_per_product(service: CoreBankingService) -> None:
    response = submit(service, body("46210987", "1995-09-17"))  # Jorge's PERSONAL application is in review
    assert response.status_code == 409 and "in progress" in response.json()["detail"]


# --- what is refused ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("consent", "detail"),
    [(None, "required"), ({"granted": False, "source": "chat:x"}, "did not agree"), ({"granted": "yes"}, "granted")],
)
def test_without_consent_nothing_is_stored(service: CoreBankingService, consent: Any, detail: str) -> None:
    payload = body("73000014", "1993-03-03")
    if consent is None:
        del payload["consent"]
    else:
        payload["consent"] = consent
    response = submit(service, payload)
    assert response.status_code == 422
    assert "consent" in response.json()["detail"] and detail in response.json()["detail"]
    assert service.get("/customers", document_type="DNI", document_number="73000014").json() == []


def test_a_known_document_with_another_birth_date_is_refused_without_details(service: CoreBankingService) -> None:
    path = f"/customers/{customer_id(service, '10117410')}/applications"
    before = service.get(path).json()
    response = submit(service, body("10117410", "1985-03-15"))  # María was born on the 14th
    assert response.status_code == 409
    assert response.json() == {"detail": "the details given do not match our records for this document"}
    assert service.get(path).json() == before


@pytest.mark.parametrize(
    ("changes", "detail"),
    [
        ({"phone": None}, "phone: required to register a new customer"),
        ({"date_of_birth": None}, "date_of_birth"),
        ({"employment_tenure_months": None}, "employment_tenure_months"),
        ({"customer_id": 1}, "not both"),
        ({"document_number": "1234"}, "document_number"),
        ({"amount": "60000"}, "amount must be between"),
        ({"employment_type": "astronaut"}, "employment_type"),
        ({"channel": "wh@tsapp"}, "channel"),
    ],
)
def test_invalid_applications_say_why(service: CoreBankingService, changes: Dict[str, Any], detail: str) -> None:
    payload = {key: value for key, value in {**body("73000022", "1990-01-01"), **changes}.items() if value is not None}
    response = submit(service, payload)
    assert response.status_code == 422, response.text
    assert detail in response.json()["detail"]


def test_an_application_without_any_applicant_is_refused(service: CoreBankingService) -> None:
    payload = body("73000022", "1990-01-01")
    del payload["document_number"], payload["consent"]
    response = submit(service, payload)
    assert response.status_code == 422 and "give customer_id" in response.json()["detail"]


# --- idempotency -------------------------------------------------------------------------------------------


def test_a_retried_submission_returns_the_same_application(service: CoreBankingService) -> None:
    payload = body(BUREAU_SAMPLE_DNIS["Normal"], "1991-07-15", product_code="CONVENIO", amount="2000")
    first = submit(service, payload, key="retry-1")
    assert first.status_code == 201, first.text
    again = submit(service, {**payload, "amount": 2000}, key="retry-1")  # the same request, spelt differently
    assert again.status_code == 200 and again.json() == first.json()

    other = submit(service, {**payload, "amount": "2500"}, key="retry-1")
    assert other.status_code == 409 and "Idempotency-Key" in other.json()["detail"]


def test_concurrent_retries_create_one_application(service: CoreBankingService) -> None:
    payload = body("73000030", "1992-11-11", amount="2000")

    def send(_: int) -> requests.Response:
        return requests.post(
            f"{service.url}/applications", json=payload, headers={"Idempotency-Key": "race-1"}, timeout=30
        )

    with ThreadPoolExecutor(max_workers=6) as pool:
        responses = list(pool.map(send, range(6)))
    assert Counter(response.status_code for response in responses) == Counter({201: 1, 200: 5})
    assert len({response.json()["id"] for response in responses}) == 1
    assert len(lookup(service, document_number="73000030", date_of_birth="1992-11-11").json()) == 1


# --- status look-up ----------------------------------------------------------------------------------------


def test_lookup_by_code_and_document_or_by_document_and_birth_date(service: CoreBankingService) -> None:
    application = submitted(service, body(*PEDRO, product_code="CONVENIO", amount="2000",
                                          employment_type="employee", monthly_income="1800"))
    code = application["code"]

    typed = code.lower().replace("-", " ")
    (found,) = lookup(service, code=typed, document_number="70451236").json()
    assert (found["id"], found["code"], found["status"], found["product_name"]) == (
        application["id"], code, application["status"], "Préstamo por Convenio"
    )
    assert (found["amount"], found["term_months"], found["currency"]) == ("2000.00", 12, "PEN")
    assert "monthly_income" not in found and all("note" not in event for event in found["history"])
    assert found["history"][0]["status"] == "received"

    every = lookup(service, document_number="70-451-236", date_of_birth=PEDRO[1]).json()
    assert every[0]["id"] == application["id"] and len(every) >= 2
    assert [a["id"] for a in every] == sorted((a["id"] for a in every), reverse=True)


def test_lookup_never_tells_about_someone_else(service: CoreBankingService) -> None:
    maria = submitted(service, body("10117410", "1985-03-14", product_code="CONVENIO", amount="2000"))
    attempts = [
        {"code": maria["code"], "document_number": "70451236"},  # a real code with someone else's document
        {"code": "SOL-ZZZZZZ", "document_number": "10117410"},  # a code that does not exist
        {"code": maria["code"], "document_number": "10117410", "date_of_birth": "1985-03-15"},
        {"document_number": "10117410", "date_of_birth": "1985-03-15"},  # the wrong date of birth
        {"document_number": "79999997", "date_of_birth": "1985-03-14"},  # nobody
        {"document_number": BUREAU_SAMPLE_DNIS["Deficiente"], "code": maria["code"]},
    ]
    for params in attempts:
        response = lookup(service, **params)
        assert (response.status_code, response.json()) == (404, NO_MATCH), params
    assert lookup(service, code=maria["code"], document_number="10117410").status_code == 200


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"code": "SOL-0O1IL0", "document_number": "10117410"}, "code"),
        ({"code": "SOL-ABC", "document_number": "10117410"}, "code"),
        ({"document_number": "10117410"}, "give code and document_number"),
        ({"code": "SOL-ABCDEF"}, "give code and document_number"),
        ({"document_number": "123", "date_of_birth": "1985-03-14"}, "document_number"),
    ],
)
def test_lookup_with_malformed_details_says_what_to_give(
    service: CoreBankingService, params: Dict[str, str], detail: str
) -> None:
    response = lookup(service, **params)
    assert response.status_code == 422 and detail in response.json()["detail"]


# --- documents ---------------------------------------------------------------------------------------------


def document(kind: str, **changes: Any) -> Dict[str, Any]:
    return {"kind": kind, "filename": f"{kind}.jpg", "content_type": "image/jpeg", "media_id": f"wamid.{kind}",
            **changes}


def test_documents_received_and_missing(service: CoreBankingService) -> None:
    application = submitted(service, body(BUREAU_SAMPLE_DNIS["Normal"], "1991-07-15", product_code="VEHICULAR",
                                          amount="20000", term_months=48, monthly_income="6000"))
    path = f"/applications/{application['id']}/documents"
    empty = service.get(path).json()
    assert (empty["complete"], empty["received"]) == (False, [])
    assert [item["kind"] for item in empty["missing"]] == ["dni", "income_proof", "vehicle_quote"]

    added = service.post(path, document("dni"))
    assert added.status_code == 201, added.text
    assert service.post(path, document("DNI", filename="dni-reverso.jpg")).status_code == 201  # the other side
    state = service.get(path).json()
    assert [(d["kind"], d["filename"], d["media_id"]) for d in state["received"]] == [
        ("dni", "dni.jpg", "wamid.dni"), ("dni", "dni-reverso.jpg", "wamid.DNI")
    ]
    assert state["received"][0]["label"] == "Foto de su DNI (ambas caras)"
    assert [item["kind"] for item in state["missing"]] == ["income_proof", "vehicle_quote"]

    pdf = {"content_type": "application/pdf", "media_id": None, "media_url": "https://files.example/p.pdf"}
    for kind in ("income_proof", "vehicle_quote"):
        assert service.post(path, {**document(kind), **pdf, "filename": f"{kind}.pdf"}).status_code == 201
    done = service.get(path).json()
    assert (done["complete"], done["missing"]) == (True, [])
    assert all(item["received"] for item in service.get(f"/applications/{application['id']}").json()[
        "required_documents"])


@pytest.mark.parametrize(
    ("changes", "detail"),
    [
        ({"kind": "passport"}, "kind must be one of dni, income_proof, utility_bill"),
        ({"media_url": "https://files.example/x.jpg"}, "media_url or media_id"),
        ({"media_id": None}, "media_url or media_id"),
        ({"media_id": None, "media_url": "ftp://files.example/x.jpg"}, "media_url"),
        ({"content_type": "application/x-msdownload"}, "content_type"),
        ({"filename": "../../etc/passwd"}, "filename"),
        ({"filename": ""}, "filename"),
    ],
)
def test_bad_documents_are_refused(service: CoreBankingService, changes: Dict[str, Any], detail: str) -> None:
    application = pedro_application(service)
    payload = {key: value for key, value in {**document("dni"), **changes}.items() if value is not None}
    response = service.post(f"/applications/{application['id']}/documents", payload)
    assert response.status_code == 422, response.text
    assert detail in response.json()["detail"]


def test_documents_of_closed_or_unknown_applications(service: CoreBankingService) -> None:
    declined = submitted(service, body(BUREAU_SAMPLE_DNIS["Dudoso"], "1987-09-30", product_code="CONVENIO"))
    response = service.post(f"/applications/{declined['id']}/documents", document("dni"))
    assert response.status_code == 409 and "rejected" in response.json()["detail"]
    assert service.get("/applications/999999/documents").status_code == 404
    assert service.post("/applications/999999/documents", document("dni")).status_code == 404


# --- seed and description ----------------------------------------------------------------------------------


def test_seeded_applications_have_codes_and_reviewed_ones_their_documents(service: CoreBankingService) -> None:
    applications = service.get(f"/customers/{customer_id(service, '46210987')}/applications").json()
    (in_review,) = [a for a in applications if a["status"] == "in_review"]
    assert CODE.match(in_review["code"])
    assert service.get(f"/applications/{in_review['id']}/documents").json()["complete"] is True
    codes: List[str] = [
        a["code"] for c in service.get("/customers", limit=500).json()
        for a in service.get(f"/customers/{c['id']}/applications").json()
    ]
    assert len(codes) == len(set(codes)) and all(CODE.match(code) for code in codes)


def test_openapi_describes_the_credit_endpoints(service: CoreBankingService) -> None:
    paths = service.get("/openapi.json").json()["paths"]
    assert {
        "/simulations", "/applications/lookup", "/applications/{application_id}/accept-offer",
        "/applications/{application_id}/documents",
    } <= set(paths)
    assert "Idempotency-Key" in {p["name"] for p in paths["/applications"]["post"]["parameters"]}


def customer_id(service: CoreBankingService, dni: str) -> int:
    (customer,) = service.get("/customers", document_type="DNI", document_number=dni).json()
    return customer["id"]


def pedro_application(service: CoreBankingService) -> Dict[str, Any]:
    """One of Pedro's open PERSONAL applications (the accepted counter-offer)."""
    applications = service.get(f"/customers/{customer_id(service, PEDRO[0])}/applications").json()
    personal = [a for a in applications if a["product_code"] == "PERSONAL"]
    if not personal:
        personal = [submitted(service, body(*PEDRO, amount="10000", monthly_income="1800",
                                            employment_type="self_employed"))]
    return personal[0]
