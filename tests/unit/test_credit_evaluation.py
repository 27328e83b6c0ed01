"""Pre-evaluation: every outcome and reason, and the boundaries of each rule (exactly at a limit passes)."""

from __future__ import annotations

import copy
import re
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, Callable, Dict, List, Optional

import pytest
import yaml

from credia import settings
from credia.credit import maths
from credia.credit.evaluation import (
    CreditFacts,
    CreditRequest,
    Evaluation,
    Outcome,
    OutOfRange,
    make_offer,
    max_installment,
    pre_evaluate,
)
from credia.credit.policy import CreditPolicy, EmploymentType, UnknownProduct, load_policy, parse_policy
from credia.money import format_money

D = Decimal
TODAY = date(2025, 3, 14)
POLICY = load_policy()
RAW: Dict[str, Any] = yaml.safe_load((settings.PROJECT_ROOT / "policies" / "credit.yml").read_text(encoding="utf-8"))
EVALUATIONS: List[Evaluation] = []  # every evaluation of this module, for the test on the customer's texts


def request(**changes: Any) -> CreditRequest:
    base = CreditRequest(
        product_code="PERSONAL",
        amount=D("3000"),
        term_months=12,
        monthly_income=D("2500"),
        employment_type=EmploymentType.EMPLOYEE,
        employment_tenure_months=24,
        date_of_birth=date(1990, 5, 20),
    )
    return replace(base, **changes)


def facts(**changes: Any) -> CreditFacts:
    return replace(CreditFacts(today=TODAY, bureau_rating="Normal", bureau_score=800, days_past_due=0), **changes)


def evaluate(policy: CreditPolicy = POLICY, **changes: Any) -> Evaluation:
    fact_fields = {"bureau_rating", "bureau_score", "days_past_due"}
    result = pre_evaluate(
        request(**{k: v for k, v in changes.items() if k not in fact_fields}),
        facts(**{k: v for k, v in changes.items() if k in fact_fields}),
        policy,
    )
    EVALUATIONS.append(result)
    return result


def codes(evaluation: Evaluation) -> List[str]:
    return [reason.code for reason in evaluation.reasons]


def policy_with(change: Callable[[Dict[str, Any]], None]) -> CreditPolicy:
    data = copy.deepcopy(RAW)
    change(data)
    return parse_policy(data, "test policy")


def personal(**changes: Any) -> Callable[[Dict[str, Any]], None]:
    return lambda data: data["products"][0].update(changes)


def installment(product: str, amount: str, term: int) -> Decimal:
    rules = POLICY.product(product)
    return maths.french_installment(D(amount), rules.tea, term, rules.fees.insurance_monthly)


# --- pre-approved ------------------------------------------------------------------------------------------


def test_a_clean_affordable_request_is_pre_approved_with_a_full_offer() -> None:
    result = evaluate()

    assert (result.outcome, result.reasons) == (Outcome.PRE_APPROVED, ())
    offer = result.offer
    assert offer is not None
    assert (offer.product_code, offer.amount, offer.term_months, offer.tea) == ("PERSONAL", D("3000.00"), 12, D("0.45"))
    assert offer.installment == installment("PERSONAL", "3000", 12)
    assert offer.tcea == D("0.4630")  # TEA 45 % plus 0.077 % a month of desgravamen
    assert offer.first_due_date == date(2025, 4, 14) and offer.last_due_date == date(2026, 3, 14)
    assert offer.total_to_pay == offer.amount + offer.total_interest + offer.total_insurance
    assert offer.as_json()["installment"] == str(offer.installment)
    assert offer.as_json()["first_due_date"] == "2025-04-14"


@pytest.fixture(scope="module")
def half_income_policy() -> CreditPolicy:
    """PERSONAL with one ratio of 50 %: an income of exactly twice the installment is exactly at the cap."""
    return policy_with(personal(installment_to_income={"default": "50 %"}))


def test_exactly_at_the_cap_is_affordable_a_cent_less_is_not(half_income_policy: CreditPolicy) -> None:
    cap = installment("PERSONAL", "20000", 12)

    at_cap = evaluate(half_income_policy, amount=D("20000"), monthly_income=cap * 2)
    below = evaluate(half_income_policy, amount=D("20000"), monthly_income=cap * 2 - D("0.02"))

    assert at_cap.outcome is Outcome.PRE_APPROVED
    assert below.outcome is Outcome.COUNTER_OFFER
    assert below.offer is not None and below.offer.amount == D("19900.00")


@pytest.mark.parametrize(
    ("income", "ratio"), [("1499.99", "0.20"), ("1500.00", "0.30"), ("8000.00", "0.30"), ("8000.01", "0.40")]
)
def test_the_cap_follows_the_income_band(income: str, ratio: str) -> None:
    rules = POLICY.product("PERSONAL")
    assert max_installment(rules, D(income)) == maths.to_money(D(income) * D(ratio))


# --- counter-offers ----------------------------------------------------------------------------------------


def test_counter_offer_is_the_largest_affordable_amount_at_the_requested_term() -> None:
    result = evaluate(amount=D("10000"), monthly_income=D("1800"))  # cap: 30 % of 1,800 = 540

    assert result.outcome is Outcome.COUNTER_OFFER
    assert codes(result) == ["amount_adjusted"]
    assert "S/\xa0540.00" in result.reasons[0].message
    offer = result.offer
    assert offer is not None and (offer.amount, offer.term_months) == (D("5300.00"), 12)
    assert installment("PERSONAL", "5300", 12) <= D("540") < installment("PERSONAL", "5400", 12)
    assert offer.installment <= D("540") and offer.tcea == D("0.4630")


def test_counter_offer_is_the_shortest_longer_term_when_less_money_is_not_possible() -> None:
    # S/ 15,000 is VEHICULAR's minimum, so only a longer term can help; cap 35 % of 3,000 = 1,050.
    result = evaluate(product_code="VEHICULAR", amount=D("15000"), monthly_income=D("3000"))

    assert result.outcome is Outcome.COUNTER_OFFER
    assert codes(result) == ["term_extended"]
    offer = result.offer
    assert offer is not None and offer.amount == D("15000.00")
    term = offer.term_months
    assert installment("VEHICULAR", "15000", term) <= D("1050") < installment("VEHICULAR", "15000", term - 1)
    assert term <= 12 + POLICY.rules.counter_offer.max_term_extension_months


@pytest.mark.parametrize(("step", "amount", "term"), [("100", "5300.00", 24), ("1000", "5500.00", 25)])
def test_the_counter_offer_closest_to_the_request_wins(step: str, amount: str, term: int) -> None:
    """Income fits S/ 5,500 in 25 months: with steps of 100 the amount option (5,300, −3.6 %) is closer than
    one more month (+4.2 %); with steps of 1,000 it is 5,000 (−9.1 %) and the longer term wins."""

    def change(data: Dict[str, Any]) -> None:
        personal(installment_to_income={"default": "25 %"})(data)
        data["rules"]["counter_offer"]["round_down_to"] = step

    income = installment("PERSONAL", "5500", 25) * 4
    result = evaluate(policy_with(change), amount=D("5500"), term_months=24, monthly_income=income)

    assert result.outcome is Outcome.COUNTER_OFFER
    assert result.offer is not None and (result.offer.amount, result.offer.term_months) == (D(amount), term)


def test_no_counter_offer_below_the_minimum_share_declines_with_what_would_fit() -> None:
    # 48 months is PERSONAL's maximum and what fits is about a third of S/ 30,000 (the floor is half).
    result = evaluate(amount=D("30000"), term_months=48, monthly_income=D("1500"))

    assert (result.outcome, codes(result), result.offer) == (Outcome.DECLINED, ["payment_capacity"], None)
    largest = max(
        D(hundreds * 100) for hundreds in range(10, 300) if installment("PERSONAL", str(hundreds * 100), 48) <= 450
    )
    expected = f"Con su ingreso actual puede solicitar hasta {format_money(largest)} a 48 meses."
    assert result.reasons[0].alternative == expected
    assert "30%" in result.reasons[0].message


# --- referred ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rating", "outcome", "reason"),
    [
        ("Normal", Outcome.PRE_APPROVED, None),
        (None, Outcome.PRE_APPROVED, None),
        ("CPP", Outcome.REFERRED, "bureau_rating_review"),
        ("Deficiente", Outcome.DECLINED, "bureau_rating"),
        ("Dudoso", Outcome.DECLINED, "bureau_rating"),
        ("Pérdida", Outcome.DECLINED, "bureau_rating"),
    ],
)
def test_each_bureau_rating(rating: Optional[str], outcome: Outcome, reason: Optional[str]) -> None:
    result = evaluate(bureau_rating=rating)
    assert result.outcome is outcome
    assert codes(result) == ([reason] if reason else [])
    if outcome is Outcome.DECLINED:
        assert result.offer is None and result.reasons[0].alternative


@pytest.mark.parametrize(("score", "outcome"), [(499, Outcome.REFERRED), (500, Outcome.PRE_APPROVED)])
def test_a_low_bureau_score_goes_to_an_advisor(score: int, outcome: Outcome) -> None:
    result = evaluate(bureau_score=score)
    assert result.outcome is outcome
    assert codes(result) == (["bureau_score_review"] if outcome is Outcome.REFERRED else [])


@pytest.mark.parametrize(
    ("days", "outcome", "reason"),
    [
        (0, Outcome.PRE_APPROVED, None),
        (1, Outcome.REFERRED, "arrears_review"),
        (30, Outcome.REFERRED, "arrears_review"),
        (31, Outcome.DECLINED, "arrears_with_lender"),
    ],
)
def test_arrears_with_the_lender(days: int, outcome: Outcome, reason: Optional[str]) -> None:
    result = evaluate(days_past_due=days)
    assert (result.outcome, codes(result)) == (outcome, [reason] if reason else [])


@pytest.mark.parametrize(("amount", "outcome"), [("100000.00", Outcome.PRE_APPROVED), ("100000.01", Outcome.REFERRED)])
def test_amounts_above_the_high_value_limit_go_to_an_advisor(amount: str, outcome: Outcome) -> None:
    result = evaluate(product_code="VEHICULAR", amount=D(amount), term_months=60, monthly_income=D("20000"))
    assert result.outcome is outcome
    assert codes(result) == (["high_value"] if outcome is Outcome.REFERRED else [])


@pytest.mark.parametrize(("tenure", "outcome"), [(6, Outcome.PRE_APPROVED), (5, Outcome.REFERRED)])
def test_a_short_tenure_goes_to_an_advisor(tenure: int, outcome: Outcome) -> None:
    result = evaluate(employment_tenure_months=tenure)  # PERSONAL asks employees for 6 months
    assert result.outcome is outcome
    if outcome is Outcome.REFERRED:
        assert codes(result) == ["short_tenure"] and "6 meses" in result.reasons[0].message


def test_every_reason_to_refer_is_listed_and_no_offer_is_made() -> None:
    result = evaluate(
        product_code="VEHICULAR", amount=D("120000"), term_months=60, monthly_income=D("20000"),
        employment_tenure_months=3, bureau_rating="CPP", days_past_due=4,
    )
    assert result.outcome is Outcome.REFERRED and result.offer is None
    assert codes(result) == ["bureau_rating_review", "arrears_review", "high_value", "short_tenure"]


# --- declined ----------------------------------------------------------------------------------------------


def test_knock_outs_win_over_referrals_and_list_only_themselves() -> None:
    result = evaluate(bureau_rating="Dudoso", days_past_due=45, employment_tenure_months=1)
    assert (result.outcome, codes(result)) == (Outcome.DECLINED, ["bureau_rating", "arrears_with_lender"])


@pytest.mark.parametrize(("income", "outcome"), [("1200.00", Outcome.PRE_APPROVED), ("1199.99", Outcome.DECLINED)])
def test_the_minimum_income(income: str, outcome: Outcome) -> None:
    result = evaluate(amount=D("1000"), monthly_income=D(income))
    assert result.outcome is outcome
    if outcome is Outcome.DECLINED:
        assert codes(result) == ["income_below_minimum"]
        assert "S/\xa01,200.00" in result.reasons[0].message


def test_an_employment_type_the_product_does_not_take_is_declined_with_other_products() -> None:
    result = evaluate(product_code="CONVENIO", employment_type=EmploymentType.SELF_EMPLOYED)
    assert (result.outcome, codes(result)) == (Outcome.DECLINED, ["employment_type_not_eligible"])
    alternative = result.reasons[0].alternative or ""
    assert "Préstamo Personal" in alternative and "Préstamo por Convenio" not in alternative


def test_minimum_age_on_the_day_of_the_application() -> None:
    twenty_one = TODAY.replace(year=TODAY.year - 21)
    assert evaluate(date_of_birth=twenty_one).outcome is Outcome.PRE_APPROVED
    younger = evaluate(date_of_birth=twenty_one + timedelta(days=1))
    assert (younger.outcome, codes(younger)) == (Outcome.DECLINED, ["age_requirement"])


def test_maximum_age_at_maturity_counts_completed_years_on_the_last_due_date() -> None:
    last_due = maths.add_months(maths.first_due_date(TODAY), 12 - 1)
    turns_76_after = last_due.replace(year=last_due.year - 76) + timedelta(days=1)

    assert evaluate(date_of_birth=turns_76_after, monthly_income=D("3000")).outcome is Outcome.PRE_APPROVED
    too_old = evaluate(date_of_birth=turns_76_after - timedelta(days=1), monthly_income=D("3000"))
    assert (too_old.outcome, codes(too_old)) == (Outcome.DECLINED, ["term_beyond_age_limit"])
    assert too_old.reasons[0].alternative == "Puede solicitarlo con un plazo de hasta 11 meses."


def test_a_longer_term_is_never_offered_beyond_the_age_limit() -> None:
    last_due = maths.add_months(maths.first_due_date(TODAY), 12 - 1)
    result = evaluate(
        product_code="VEHICULAR", amount=D("15000"), monthly_income=D("3000"),
        date_of_birth=last_due.replace(year=last_due.year - 76) + timedelta(days=1),
    )
    assert (result.outcome, codes(result)) == (Outcome.DECLINED, ["payment_capacity"])


# --- invalid requests and the customer's texts -------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"amount": D("999.99")}, "amount must be between"),
        ({"amount": D("50000.01")}, "amount must be between"),
        ({"term_months": 5}, "term must be between 6 and 48 months"),
        ({"term_months": 49}, "term must be between 6 and 48 months"),
    ],
)
def test_amount_and_term_outside_the_product_are_invalid_not_declined(changes: Dict[str, Any], message: str) -> None:
    with pytest.raises(OutOfRange, match=message):
        evaluate(**changes)
    with pytest.raises(OutOfRange):
        make_offer(POLICY.product("PERSONAL"), changes.get("amount", D("3000")), changes.get("term_months", 12), TODAY)


def test_an_unknown_product_is_refused() -> None:
    with pytest.raises(UnknownProduct):
        evaluate(product_code="HIPOTECARIO")


# Words about who someone is; a reason speaks of the product and of credit, never of these.
PROTECTED = ("sexo", "género", "genero", "mujer", "hombre", "estado civil", "casad", "soltera", "nacionalidad",
             "extranjer", "religi", "raza", "étnic", "etnia", "discapacidad", "embaraz", "edad", "origen", "distrito")


def test_reasons_are_coded_short_spanish_and_never_about_who_the_customer_is() -> None:
    reasons = [reason for evaluation in EVALUATIONS for reason in evaluation.reasons]
    assert {reason.code for reason in reasons} >= {
        "amount_adjusted", "term_extended", "payment_capacity", "bureau_rating", "bureau_rating_review",
        "bureau_score_review", "arrears_review", "arrears_with_lender", "high_value", "short_tenure",
        "income_below_minimum", "employment_type_not_eligible", "age_requirement", "term_beyond_age_limit",
    }
    for reason in reasons:
        assert re.fullmatch(r"[a-z_]+", reason.code)
        for text in filter(None, (reason.message, reason.alternative)):
            assert 10 < len(text) < 240, text
            assert not any(word in text.lower() for word in PROTECTED), text
