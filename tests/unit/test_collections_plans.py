"""Payment-plan maths against the collections policy file: for any debt and bucket, every offer keeps to the
bucket's rules and adds up to the cent, and a counter-offer is the shortest plan within what the customer can
pay, refused only when no plan within the rules could meet it."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from credia.collections.plans import (
    BELOW_MINIMUM_INSTALLMENT,
    EXCEEDS_MAX_INSTALLMENTS,
    INSTALLMENTS,
    MAX_OFFERS,
    SETTLEMENT,
    PlanOption,
    installment_plan,
    plan_for_monthly_amount,
    plan_options,
    respects_minimum_installment,
)
from credia.collections.policy import BUCKETS, BucketRules, load_policy
from credia.credit.maths import add_months

D = Decimal
POLICY = load_policy()
TODAY = date(2025, 1, 31)

debts = st.decimals(min_value=D("1"), max_value=D("500000"), places=2, allow_nan=False, allow_infinity=False)
monthly_amounts = st.decimals(min_value=D("0.01"), max_value=D("100000"), places=2, allow_nan=False,
                              allow_infinity=False)
buckets = st.sampled_from(BUCKETS)
days = st.dates(min_value=date(2020, 1, 1), max_value=date(2035, 12, 31))
SETTINGS = settings(max_examples=400, deadline=None)


def fits(debt: Decimal, rules: BucketRules, today: date, count: int, monthly: Decimal) -> bool:
    plan = installment_plan(debt, rules, today, count)
    return plan.installment_amount <= monthly and respects_minimum_installment(plan, rules)


def assert_respects_bucket(plan: PlanOption, debt: Decimal, rules: BucketRules, today: date) -> None:
    installments = [row for row in plan.schedule if row.number > 0]
    assert plan.debt == debt
    assert plan.installments_count == len(installments) <= rules.max_installments
    assert plan.down_payment >= rules.min_down_payment_rate * debt
    assert plan.discount <= rules.max_settlement_discount_rate * debt
    assert plan.discount == 0 or plan.kind == SETTLEMENT
    assert plan.total_to_pay == debt - plan.discount
    assert sum(row.amount for row in plan.schedule) == plan.total_to_pay
    amounts = [row.amount for row in plan.schedule] + [plan.down_payment, plan.discount, plan.total_to_pay]
    assert all(row.amount > 0 for row in plan.schedule)
    assert all(amount.as_tuple().exponent == -2 for amount in amounts)
    dates = [row.due_date for row in plan.schedule]
    assert dates == sorted(set(dates)) and dates[0] >= today
    assert [row.number for row in installments] == list(range(1, len(installments) + 1))
    if plan.down_payment > 0:
        assert plan.schedule[0].number == 0 and plan.schedule[0].due_date == today
        assert plan.schedule[0].amount == plan.down_payment
    if installments:
        assert plan.installment_amount == installments[0].amount >= installments[-1].amount
        assert plan.first_due_date == installments[0].due_date == add_months(today, 1)
        if debt - plan.down_payment >= rules.min_installment_amount:
            assert all(row.amount >= rules.min_installment_amount for row in installments)
    assert plan.valid_until == today + timedelta(days=rules.offer_validity_days)
    above = rules.human_approval_above
    assert plan.needs_approval == (rules.human_approval_always or (above is not None and debt > above))


@SETTINGS
@given(debt=debts, bucket=buckets, today=days)
def test_every_offer_respects_its_bucket(debt: Decimal, bucket: str, today: date) -> None:
    rules = POLICY.bucket(bucket)
    offers = plan_options(debt, rules, today)

    assert 1 <= len(offers) <= MAX_OFFERS
    assert [offer.kind == SETTLEMENT for offer in offers][0] == (rules.max_settlement_discount_rate > 0)
    assert sum(offer.kind == SETTLEMENT for offer in offers) <= 1
    for offer in offers:
        assert_respects_bucket(offer, debt, rules, today)
    counts = [offer.installments_count for offer in offers if offer.kind == INSTALLMENTS]
    assert counts == sorted(set(counts))
    shown = sorted(rules.offered_installments)[-(MAX_OFFERS - (len(offers) - len(counts))):]
    for count in counts:
        # Either an offered plan, or the longest shorter one whose installments still reach the minimum.
        assert count in shown or not respects_minimum_installment(
            installment_plan(debt, rules, today, count + 1), rules
        )


@SETTINGS
@given(debt=debts, bucket=buckets, today=days, monthly=monthly_amounts)
def test_a_counter_offer_is_the_shortest_plan_within_the_monthly_amount(
    debt: Decimal, bucket: str, today: date, monthly: Decimal
) -> None:
    rules = POLICY.bucket(bucket)
    counter = plan_for_monthly_amount(debt, rules, today, monthly)

    if counter.feasible:
        plan = counter.plan
        assert plan is not None and plan.kind == INSTALLMENTS
        assert_respects_bucket(plan, debt, rules, today)
        assert plan.installment_amount <= monthly
        assert respects_minimum_installment(plan, rules)
        assert not any(fits(debt, rules, today, count, monthly) for count in range(1, plan.installments_count))
        assert (counter.reason, counter.required_installments) == (None, None)
        return
    # Infeasible only when truly so: no plan the bucket allows meets the amount and the minimum.
    assert not any(fits(debt, rules, today, count, monthly) for count in range(1, rules.max_installments + 1))
    if counter.reason == EXCEEDS_MAX_INSTALLMENTS:
        required = counter.required_installments
        assert monthly >= rules.min_installment_amount
        assert required is not None and required > rules.max_installments
        assert installment_plan(debt, rules, today, required).installment_amount <= monthly
        assert installment_plan(debt, rules, today, required - 1).installment_amount > monthly
    else:
        assert counter.reason == BELOW_MINIMUM_INSTALLMENT and counter.required_installments is None


def test_offers_in_the_31_60_bucket() -> None:
    offers = plan_options(D("1234.56"), POLICY.bucket("31-60"), TODAY)

    settlement, three, six = offers
    assert (settlement.kind, settlement.discount, settlement.total_to_pay) == (SETTLEMENT, D("123.45"), D("1111.11"))
    assert [(row.number, row.due_date, row.amount) for row in settlement.schedule] == [(0, TODAY, D("1111.11"))]
    assert (three.down_payment, three.installments_count, three.installment_amount) == (D("123.46"), 3, D("370.37"))
    assert [row.amount for row in three.schedule] == [D("123.46"), D("370.37"), D("370.37"), D("370.36")]
    assert [row.due_date for row in three.schedule] == [TODAY, date(2025, 2, 28), date(2025, 3, 28), date(2025, 4, 28)]
    assert (six.installments_count, six.installment_amount, six.valid_until) == (6, D("185.19"), date(2025, 2, 3))


def test_a_small_debt_gets_fewer_installments_rather_than_tiny_ones() -> None:
    rules = POLICY.bucket("1-30")
    assert [offer.installments_count for offer in plan_options(D("120.00"), rules, TODAY)] == [2]
    assert [offer.installments_count for offer in plan_options(D("40.00"), rules, TODAY)] == [1]


def test_approval_depends_on_the_bucket_and_the_debt() -> None:
    assert not plan_options(D("15000.00"), POLICY.bucket("61-120"), TODAY)[0].needs_approval
    assert all(offer.needs_approval for offer in plan_options(D("15000.01"), POLICY.bucket("61-120"), TODAY))
    assert all(offer.needs_approval for offer in plan_options(D("100.00"), POLICY.bucket(">120"), TODAY))
    assert not any(offer.needs_approval for offer in plan_options(D("99999.00"), POLICY.bucket("1-30"), TODAY))


@pytest.mark.parametrize(
    ("debt", "monthly", "count", "reason", "required"),
    [
        ("1234.56", "300.00", 4, None, None),
        ("1234.56", "1111.10", 1, None, None),
        ("1234.56", "100.00", None, EXCEEDS_MAX_INSTALLMENTS, 12),
        ("1234.56", "49.99", None, BELOW_MINIMUM_INSTALLMENT, None),
        # 270.00 after the down payment: 5 installments of 54.00 are too much, 6 of 45.00 below the minimum.
        ("300.00", "50.00", None, BELOW_MINIMUM_INSTALLMENT, None),
        ("300.00", "54.00", 5, None, None),
    ],
)
def test_counter_offers_in_the_31_60_bucket(
    debt: str, monthly: str, count: int | None, reason: str | None, required: int | None
) -> None:
    counter = plan_for_monthly_amount(D(debt), POLICY.bucket("31-60"), TODAY, D(monthly))
    assert (counter.reason, counter.required_installments) == (reason, required)
    assert (counter.plan.installments_count if counter.plan else None) == count
