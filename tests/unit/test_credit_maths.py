"""Loan maths: the published example, a second case worked out independently, and TCEA with fees.

The expected figures were computed apart from ``credia.credit.maths`` (plain float formulas and a float
bisection for the IRR), so a mistake in the module cannot be copied into its own test.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from credia.credit.maths import (
    first_due_date,
    french_installment,
    french_schedule,
    installment_factor,
    monthly_irr,
    monthly_rate,
    quote,
    tcea,
)

D = Decimal
DISBURSED = date(2025, 3, 14)


def test_tem_is_compounded_from_tea() -> None:
    assert monthly_rate(D("0.40")).quantize(D("0.0000001")) == D("0.0284362")  # 2.84362 % (REFERENCE)


def test_published_example_installment_total_and_tcea() -> None:
    """S/ 10,000 at 40 % TEA over 12 months: C = 995.27, total 11,943.18; without fees TCEA = TEA."""
    offer = quote(D("10000"), D("0.40"), 12, DISBURSED)

    assert offer.installment == D("995.27")
    assert offer.total_to_pay == D("11943.18")
    assert offer.total_interest == D("1943.18")
    assert (offer.origination_fee, offer.total_insurance, offer.net_disbursed) == (D("0"), D("0"), D("10000.00"))
    assert offer.tcea == D("0.4000")


def test_second_case_computed_independently() -> None:
    """S/ 5,000 at 45 % TEA over 24 months: TEM = 1.45^(1/12) − 1 = 3.1448 %, C = 299.86 (float formula);
    rolling the balance with that installment leaves a last installment that brings the total to 7,196.68."""
    assert french_installment(D("5000"), D("0.45"), 24) == D("299.86")
    schedule = french_schedule(D("5000"), D("0.45"), 24, date(2025, 4, 14))
    assert sum(row.amount for row in schedule) == D("7196.68")
    assert sum(row.principal for row in schedule) == D("5000.00")
    assert quote(D("5000"), D("0.45"), 24, DISBURSED).tcea == D("0.4500")


def test_tcea_with_origination_fee_and_desgravamen() -> None:
    """S/ 10,000 at 40 % TEA, 12 months, 2 % fee deducted at disbursement, 0.08 % a month of the balance as
    insurance inside a fixed installment: C = 10,000·r/(1 − (1+r)^−12) with r = TEM + 0.08 % = 1,000.05;
    the customer receives 9,800 and pays 12,000.54; the float IRR of those flows gives a TCEA of 47.006 %."""
    offer = quote(D("10000"), D("0.40"), 12, DISBURSED, origination_fee_rate=D("0.02"), insurance_rate=D("0.0008"))

    assert offer.installment == D("1000.05")
    assert (offer.origination_fee, offer.net_disbursed) == (D("200.00"), D("9800.00"))
    assert offer.total_to_pay == D("12000.54")
    assert offer.total_to_pay == offer.amount + offer.total_interest + offer.total_insurance
    assert offer.tcea == D("0.4701")
    assert offer.tcea > offer.tea  # fees and insurance always cost something
    insurance = [row.insurance for row in offer.schedule]
    assert insurance[0] == D("8.00") and insurance == sorted(insurance, reverse=True)  # falls with the balance
    assert all(row.amount == D("1000.05") for row in offer.schedule[:-1])

    # The rate found discounts the flows back to the amount received.
    rate = monthly_irr(offer.net_disbursed, [row.amount for row in offer.schedule])
    present = sum(row.amount / (1 + rate) ** row.number for row in offer.schedule)
    assert abs(present - offer.net_disbursed) < D("1e-15")


def test_irr_of_an_exact_annuity_is_its_rate() -> None:
    rate = monthly_rate(D("0.30"))
    payment = D(1000) * installment_factor(D("0.30"), 36)
    assert abs(monthly_irr(D(1000), [payment] * 36) - rate) < D("1e-20")
    assert tcea(D(1000), [payment] * 36) == D("0.3000")


@pytest.mark.parametrize(("received", "payments"), [(D(0), [D(10)]), (D(100), []), (D(100), [D(120), D(-5)])])
def test_irr_refuses_flows_without_a_meaning(received: Decimal, payments: list) -> None:
    with pytest.raises(ValueError):
        monthly_irr(received, payments)


@pytest.mark.parametrize(
    ("disbursed", "first_due"),
    [
        (date(2025, 3, 14), date(2025, 4, 14)),
        (date(2025, 1, 29), date(2025, 2, 28)),
        (date(2025, 5, 31), date(2025, 6, 28)),
        (date(2025, 12, 5), date(2026, 1, 5)),
    ],
)
def test_first_due_date_is_a_month_later_on_a_payment_day(disbursed: date, first_due: date) -> None:
    assert first_due_date(disbursed) == first_due
    offer = quote(D("2000"), D("0.45"), 6, disbursed)
    assert offer.first_due_date == first_due and offer.schedule[-1].due_date == offer.last_due_date


@pytest.mark.parametrize(("principal", "term", "insurance"), [("1000", 1, "0.001"), ("123456.78", 60, "0.00085")])
def test_schedules_with_insurance_add_up(principal: str, term: int, insurance: str) -> None:
    schedule = french_schedule(D(principal), D("0.52"), term, date(2025, 1, 28), D(insurance))
    assert sum(row.principal for row in schedule) == D(principal)
    assert all(row.amount == row.principal + row.interest + row.insurance for row in schedule)
    assert all(row.principal > 0 and row.insurance >= 0 for row in schedule)
