"""The credit form's validators and failure handling, without a Rasa server."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from actions.credit_form import (
    Invalid,
    ValidateCreditApplicationForm,
    check_amount,
    check_birth_date,
    check_document,
    check_email,
    check_income,
    check_phone,
    check_term,
    confirm_changes,
    reject,
)

PERSONAL = {
    "name": "Préstamo Personal", "min_amount": "1000.00", "max_amount": "50000.00", "min_term_months": 6,
    "max_term_months": 48, "min_age": 21, "max_age_at_maturity": 75,
}


def tracker(slots: dict[str, Any], text: str = "", intent: str = "inform", entities: list | None = None) -> Tracker:
    latest = {"text": text, "intent": {"name": intent, "confidence": 1.0}, "entities": entities or []}
    return Tracker(
        "cliente", {"requested_slot": None, **slots}, latest, [], False, None,
        {"name": "credit_application_form"}, "action_listen",
    )


def test_amount_within_the_product_range_and_a_reason_outside() -> None:
    assert check_amount("8000.00", PERSONAL) == 8000
    assert check_amount(["7000.00", "3000.00"], PERSONAL) == 7000
    with pytest.raises(Invalid, match="entre S/"):
        check_amount("900000.00", PERSONAL)
    with pytest.raises(Invalid, match="entender"):
        check_amount("mucho", PERSONAL)


def test_term_is_a_whole_number_of_months_in_range() -> None:
    assert check_term("24", PERSONAL) == 24
    assert check_term("24.00", PERSONAL) == 24
    for bad in ("60", "2", "12.5", "doce"):
        with pytest.raises(Invalid):
            check_term(bad, PERSONAL)


def test_income_must_be_plausible() -> None:
    assert check_income("3500.00") == 3500
    for bad in ("20", "90000000", "x"):
        with pytest.raises(Invalid):
            check_income(bad)


def test_age_now_and_at_the_end_of_the_term() -> None:
    today = date(2026, 12, 4)
    assert check_birth_date("1990-03-15", PERSONAL, 24, today) == date(1990, 3, 15)
    with pytest.raises(Invalid, match="al menos 21"):
        check_birth_date("2007-01-01", PERSONAL, 12, today)
    with pytest.raises(Invalid, match="no puede pasar de 75"):
        check_birth_date("1953-01-01", PERSONAL, 48, today)
    with pytest.raises(Invalid, match="no parece correcta"):
        check_birth_date("2030-01-01", PERSONAL, 12, today)


def test_documents_emails_and_phones() -> None:
    assert check_document("10117410-2") == "10117410"
    with pytest.raises(Invalid, match="DNI"):
        check_document("10117410-5")
    with pytest.raises(Invalid):
        check_document("1234")
    assert check_email("Ana.Rojas@Correo.pe") == "Ana.Rojas@correo.pe"
    with pytest.raises(Invalid):
        check_email("ana@")
    assert check_phone("+51987654321") == "+51987654321"
    with pytest.raises(Invalid):
        check_phone("+5114567890")


def test_second_failure_on_a_field_adds_an_example_and_a_person() -> None:
    dispatcher = CollectingDispatcher()
    error = Invalid("Monto fuera de rango.", "Por ejemplo: «5000».")
    first = reject("amount", error, dispatcher, tracker({}))
    assert first == {"amount": None, "form_failures": {"amount": 1}}
    second = reject("amount", error, dispatcher, tracker({"form_failures": first["form_failures"]}))
    assert second["form_failures"] == {"amount": 2}
    assert dispatcher.messages[0]["text"] == "Monto fuera de rango."
    assert "Por ejemplo" in dispatcher.messages[1]["text"] and "asesor" in dispatcher.messages[1]["text"]


async def test_personal_data_before_consent_is_not_kept() -> None:
    dispatcher = CollectingDispatcher()
    slots = {"product": "PERSONAL", "amount": "8000.00", "term_months": "18", "document_number": "10117410",
             "requested_slot": "personal_data_consent"}
    events = await ValidateCreditApplicationForm().run(
        dispatcher, tracker(slots, "10117410", entities=[{"entity": "document_number", "value": "10117410"}]), {}
    )
    assert {"event": "slot", "name": "document_number", "value": None, "timestamp": None} in events
    assert "autorización" in dispatcher.messages[-1]["text"]


def test_a_changed_earlier_answer_is_confirmed() -> None:
    dispatcher = CollectingDispatcher()
    events = [
        {"event": "slot", "name": "term_months", "value": "18"},
        {"event": "user", "text": "mejor a 24 meses"},
        {"event": "slot", "name": "term_months", "value": "24"},
    ]
    latest = {"text": "mejor a 24 meses", "intent": {"name": "inform"}, "entities": []}
    current = Tracker("cliente", {"term_months": "24", "requested_slot": "email"}, latest, events, False, None,
                      {"name": "credit_application_form"}, "")
    confirm_changes(dispatcher, current, [{"event": "slot", "name": "term_months", "value": "24"}])
    confirm_changes(dispatcher, current, [{"event": "slot", "name": "email", "value": "a@b.pe"}])
    assert [m["text"] for m in dispatcher.messages] == ["Listo, cambié el plazo a 24 meses."]


async def test_core_banking_down_while_validating_asks_again_politely(monkeypatch: pytest.MonkeyPatch) -> None:
    from credia.processes import free_port

    monkeypatch.setenv("CORE_BANKING_URL", f"http://127.0.0.1:{free_port()}")
    dispatcher = CollectingDispatcher()
    events = [{"event": "user", "text": "8 mil"}, {"event": "slot", "name": "amount", "value": "8000.00"}]
    domain = {"forms": {"credit_application_form": {"required_slots": ["product", "amount"]}},
              "slots": {"product": {"type": "text"}, "amount": {"type": "text"}}}
    latest = {"text": "8 mil", "intent": {"name": "inform"}, "entities": []}
    current = Tracker("cliente", {"product": "PERSONAL", "amount": "8000.00", "requested_slot": "amount"}, latest,
                      events, False, None, {"name": "credit_application_form"}, "")
    result = await ValidateCreditApplicationForm().run(dispatcher, current, domain)
    assert [m["response"] for m in dispatcher.messages] == ["utter_backend_unavailable"]
    assert result == [{"event": "slot", "name": "amount", "value": None, "timestamp": None}]


async def test_a_malformed_product_code_never_reaches_core_banking() -> None:
    from actions.credit_form import product_info

    for code in ("../customers/1", "personal?x=1", "", None):
        assert await product_info(code) is None
