"""Collections actions against the real core-banking service: verification, disclosure and negotiation."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from actions.collections import ActionCollectionsGoal, ActionConfirmPlan, ValidatePromiseForm, offer_text
from actions.verification import ValidateVerificationForm, locked_minutes_left, verified_customer_id
from credia.money import format_money
from credia.processes import free_port
from tests.unit.conftest import CoreBankingService

JOSE = ("45879632", "02/11/1979")  # demo customer 2: about 12 days past due
MARIA = ("10117410", "14/03/1985")  # demo customer 1: up to date


def tracker(slots: dict[str, Any], text: str = "", intent: str = "inform", entities: list | None = None,
            form: str | None = "verification_form") -> Tracker:
    latest = {"text": text, "intent": {"name": intent, "confidence": 1.0}, "entities": entities or []}
    loop = {"name": form} if form else {}
    return Tracker("cobranza-1", {"requested_slot": None, **slots}, latest, [], False, None, loop, "action_listen")


async def answer(slots: dict[str, Any], text: str) -> tuple[dict[str, Any], str]:
    dispatcher = CollectingDispatcher()
    result = await ValidateVerificationForm().validate_verify_answer(text, dispatcher, tracker(slots, text), {})
    return result, "\n".join(m.get("text") or m.get("response") or "" for m in dispatcher.messages)


@pytest.fixture(autouse=True)
def _core_banking_url(core_banking: CoreBankingService, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORE_BANKING_URL", core_banking.url)


async def test_document_and_date_of_birth_verify_the_customer() -> None:
    result, said = await answer({"verify_document": JOSE[0]}, JOSE[1])
    assert result["identity_verified"] is True and result["verify_answer"] == "verified"
    assert result["verified_customer_id"] and "Verifiqué su identidad" in said
    slots = {"identity_verified": True, "verified_customer_id": result["verified_customer_id"]}
    assert verified_customer_id(tracker(slots)) == int(result["verified_customer_id"])
    assert verified_customer_id(tracker({**slots, "identity_verified": False})) is None


async def test_an_unknown_document_is_answered_like_a_wrong_date() -> None:
    wrong, said_wrong = await answer({"verify_document": MARIA[0]}, "01/01/1980")
    unknown, said_unknown = await answer({"verify_document": "71000002"}, "01/01/1980")
    assert wrong == unknown == {"verify_answer": None, "verification_failures": 1.0, "verification_challenge": None}
    assert said_wrong.replace(MARIA[0], "X") == said_unknown.replace("71000002", "X")


async def test_the_third_failure_locks_verification_and_offers_a_person() -> None:
    slots: dict[str, Any] = {"verify_document": "71000006"}
    for failures in (1.0, 2.0):
        result, said = await answer(slots, "02/02/1982")
        assert result["verification_failures"] == failures and "no coinciden" in said
        slots.update(result)
    result, said = await answer(slots, "02/02/1982")
    assert result["verify_answer"] == "locked" and "bloqueé la verificación" in said and "asesor" in said
    assert locked_minutes_left(tracker({**slots, **result})) == 30


async def test_a_locked_conversation_never_reaches_core_banking(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORE_BANKING_URL", f"http://127.0.0.1:{free_port()}")
    slots = {"verify_document": JOSE[0], "verification_locked_until": "2999-01-01T00:00:00+00:00"}
    result, said = await answer(slots, JOSE[1])
    assert result == {"verify_answer": "locked"} and "bloqueé" in said


async def test_a_one_time_code_sent_by_sms_verifies(core_banking: CoreBankingService) -> None:
    asked, said = await answer({"verify_document": MARIA[0]}, "no recuerdo, mándeme un código")
    assert asked["verify_answer"] is None and asked["verification_challenge"] and "código" in said
    [sms] = core_banking.get("/mock/sms", document_number=MARIA[0]).json()[:1]
    code = next(word for word in sms["text"].split() if word.strip(".").isdigit()).strip(".")
    result, _ = await answer({"verify_document": MARIA[0], **asked}, f"mi código es {code}")
    assert result["identity_verified"] is True


async def test_nothing_is_read_or_said_about_a_debt_before_verification(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORE_BANKING_URL", f"http://127.0.0.1:{free_port()}")
    dispatcher = CollectingDispatcher()
    slots = {"collections_goal": "debt", "identity_verified": False, "verified_customer_id": "2"}
    events = await ActionCollectionsGoal().run(dispatcher, tracker(slots, form=None), {})
    said = "\n".join(m.get("text") or "" for m in dispatcher.messages)
    assert "No pude verificar su identidad" in said and "S/" not in said
    assert {"event": "slot", "timestamp": None, "name": "collections_goal", "value": "none"} in events


async def test_the_debt_shows_what_is_overdue_in_soles(core_banking: CoreBankingService) -> None:
    [customer] = core_banking.get("/customers", document_type="DNI", document_number=JOSE[0]).json()
    [loan] = core_banking.get(f"/customers/{customer['id']}/loans").json()
    dispatcher = CollectingDispatcher()
    slots = {"collections_goal": "debt", "identity_verified": True, "verified_customer_id": str(customer["id"])}
    await ActionCollectionsGoal().run(dispatcher, tracker(slots, form=None), {})
    [message] = dispatcher.messages
    assert format_money(Decimal(loan["total_overdue"])) in message["text"]
    assert f"{loan['days_past_due']} días de atraso" in message["text"]
    assert [b["payload"] for b in message["buttons"]] == ["/pay_now", "/request_payment_plan", "/promise_to_pay"]


def test_an_option_is_chosen_by_button_installments_number_or_ordinal() -> None:
    offers = [
        {"id": "OF-AAAAAA", "kind": "settlement", "installments_count": 0},
        {"id": "OF-BBBBBB", "kind": "installments", "installments_count": 3},
        {"id": "OF-CCCCCC", "kind": "installments", "installments_count": 6},
    ]

    def chosen(text: str, entities: list | None = None) -> str | None:
        offer = ActionConfirmPlan.chosen(tracker({}, text, "choose_plan", entities, form=None), offers)
        return offer["id"] if offer else None

    assert chosen("/choose_plan", [{"entity": "plan_offer", "value": "OF-BBBBBB"}]) == "OF-BBBBBB"
    assert chosen("/choose_plan", [{"entity": "plan_offer", "value": "OF-ZZZZZZ"}]) is None
    assert chosen("la de 3 cuotas") == "OF-BBBBBB"
    assert chosen("prefiero 6 cuotas") == "OF-CCCCCC"
    assert chosen("la de 12 cuotas") is None
    assert chosen("el pago único con descuento") == "OF-AAAAAA"
    assert chosen("la opción 3") == "OF-CCCCCC"
    assert chosen("me quedo con la segunda") == "OF-BBBBBB"
    assert chosen("la opción 7") is None


def test_an_offer_reads_as_stored() -> None:
    offer = {
        "kind": "installments", "down_payment": "120.00", "installments_count": 3, "installment_amount": "360.00",
        "first_due_date": "2027-01-04", "discount": "0.00", "total_to_pay": "1200.00", "valid_until": "2026-12-07",
    }
    text = offer_text(offer, "PEN")
    assert format_money(Decimal("120")) in text and "3 cuotas mensuales" in text
    assert format_money(Decimal("360")) in text and "4 de enero" in text


async def test_a_promise_outside_the_policy_is_explained() -> None:
    terms = {"earliest_date": "2026-12-04", "latest_date": "2026-12-14", "min_amount": "150.00",
             "max_amount": "2000.00", "currency": "PEN"}
    validator, dispatcher = ValidatePromiseForm(), CollectingDispatcher()
    slots = {"promise_terms": terms}
    late = await validator.validate_promise_date("2026-12-20", dispatcher, tracker(slots, form="promise_form"), {})
    ok = await validator.validate_promise_date("2026-12-11", dispatcher, tracker(slots, form="promise_form"), {})
    low = await validator.validate_promise_amount("100", dispatcher, tracker(slots, form="promise_form"), {})
    fine = await validator.validate_promise_amount("150", dispatcher, tracker(slots, form="promise_form"), {})
    assert late == {"promise_date": None} and ok == {"promise_date": "2026-12-11"}
    assert low == {"promise_amount": None} and fine == {"promise_amount": "150"}
    said = "\n".join(m["text"] for m in dispatcher.messages)
    assert "lunes 14 de diciembre" in said and format_money(Decimal("150")) in said
