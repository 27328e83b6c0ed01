"""Payment-plan maths for collections: the offers a bucket's rules allow on an overdue debt, and the plan that
fits what a customer says they can pay each month.

Pure functions of the debt (a loan's total overdue: unpaid installments plus late interest), the bucket's rules
and the day, so core banking stores exactly what was computed and tests can check every rule for any debt.
Rounding always favours the rules: a down payment is rounded up, a discount down, and installments up with the
last one taking the difference, so a schedule adds up to the amount to pay to the cent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import List, Optional, Tuple

from credia.collections.policy import BucketRules
from credia.credit.maths import CENT, ZERO, add_months, ceil_money

SETTLEMENT = "settlement"
INSTALLMENTS = "installments"
# Why a counter-offer cannot be met, as machine codes the assistant turns into words.
BELOW_MINIMUM_INSTALLMENT = "below_minimum_installment"
EXCEEDS_MAX_INSTALLMENTS = "exceeds_max_installments"
# Customers choose better among few options; a settlement takes one of the slots.
MAX_OFFERS = 3


@dataclass(frozen=True)
class ScheduledPayment:
    """One payment of a plan; number 0 is the payment due the day the plan is agreed."""

    number: int
    due_date: date
    amount: Decimal


@dataclass(frozen=True)
class PlanOption:
    """A plan as offered: ``total_to_pay`` is ``debt - discount``, and the schedule adds up to it exactly."""

    kind: str
    debt: Decimal
    discount: Decimal
    down_payment: Decimal
    installments_count: int
    installment_amount: Decimal
    total_to_pay: Decimal
    first_due_date: date
    valid_until: date
    needs_approval: bool
    schedule: Tuple[ScheduledPayment, ...]


@dataclass(frozen=True)
class CounterOffer:
    """The plan for a monthly amount, or why there is none (``required_installments`` when there are too few)."""

    plan: Optional[PlanOption]
    reason: Optional[str] = None
    required_installments: Optional[int] = None

    @property
    def feasible(self) -> bool:
        return self.plan is not None


def needs_approval(debt: Decimal, rules: BucketRules) -> bool:
    above = rules.human_approval_above
    return rules.human_approval_always or (above is not None and debt > above)


def down_payment(debt: Decimal, rules: BucketRules) -> Decimal:
    """The bucket's minimum down payment, rounded up to the cent so it is never below the rate."""
    return ceil_money(rules.min_down_payment_rate * debt)


def split_installments(amount: Decimal, count: int) -> List[Decimal]:
    """``count`` equal installments rounded up to the cent; the last one is what is left, so they add up to
    ``amount``. The last may be zero or negative when ``amount`` is a few cents: callers check it."""
    if count == 0:
        return []
    regular = ceil_money(amount / count)
    return [regular] * (count - 1) + [amount - regular * (count - 1)]


def payment_schedule(
    down: Decimal, amount: Decimal, count: int, today: date, first_due: date
) -> Tuple[ScheduledPayment, ...]:
    """The down payment due today (when there is one), then ``amount`` in ``count`` monthly installments."""
    rows = [ScheduledPayment(0, today, down)] if down > 0 else []
    rows += [
        ScheduledPayment(number, add_months(first_due, number - 1), value)
        for number, value in enumerate(split_installments(amount, count), start=1)
    ]
    return tuple(rows)


def settlement(debt: Decimal, rules: BucketRules, today: date) -> PlanOption:
    """The whole debt less the bucket's largest discount (rounded down to the cent), in one payment today."""
    discount = (rules.max_settlement_discount_rate * debt).quantize(CENT, rounding=ROUND_FLOOR)
    total = debt - discount
    return PlanOption(
        kind=SETTLEMENT,
        debt=debt,
        discount=discount,
        down_payment=total,
        installments_count=0,
        installment_amount=ZERO,
        total_to_pay=total,
        first_due_date=today,
        valid_until=today + timedelta(days=rules.offer_validity_days),
        needs_approval=needs_approval(debt, rules),
        schedule=(ScheduledPayment(0, today, total),),
    )


def installment_plan(debt: Decimal, rules: BucketRules, today: date, installments: int) -> PlanOption:
    """The minimum down payment today and the rest in ``installments`` monthly installments, the first a month
    from today; no installments when the down payment already covers the debt (a debt of a few cents)."""
    down = down_payment(debt, rules)
    rest = debt - down
    count = installments if rest > 0 else 0
    schedule = payment_schedule(down, rest, count, today, add_months(today, 1))
    first = schedule[-count] if count else None
    return PlanOption(
        kind=INSTALLMENTS,
        debt=debt,
        discount=ZERO,
        down_payment=down,
        installments_count=count,
        installment_amount=first.amount if first else ZERO,
        total_to_pay=debt,
        first_due_date=first.due_date if first else today,
        valid_until=today + timedelta(days=rules.offer_validity_days),
        needs_approval=needs_approval(debt, rules),
        schedule=schedule,
    )


def respects_minimum_installment(plan: PlanOption, rules: BucketRules) -> bool:
    """Every installment reaches the bucket's minimum; a single installment of the whole rest always does,
    because splitting a small debt further cannot help."""
    installments = [row.amount for row in plan.schedule if row.number > 0]
    return len(installments) <= 1 or min(installments) >= rules.min_installment_amount


def plan_options(debt: Decimal, rules: BucketRules, today: date) -> List[PlanOption]:
    """At most ``MAX_OFFERS`` offers: the settlement when the bucket allows a discount, then the longest of the
    offered plans (the lowest installments), each shortened if its installments would fall below the minimum."""
    options = [settlement(debt, rules, today)] if rules.max_settlement_discount_rate > 0 else []
    counts = sorted(rules.offered_installments, reverse=True)[: MAX_OFFERS - len(options)]
    seen = set()
    for count in sorted(counts):
        plan = _longest_within_minimum(debt, rules, today, count)
        if plan.installments_count not in seen:
            seen.add(plan.installments_count)
            options.append(plan)
    return options


def _longest_within_minimum(debt: Decimal, rules: BucketRules, today: date, installments: int) -> PlanOption:
    for count in range(installments, 1, -1):
        plan = installment_plan(debt, rules, today, count)
        if respects_minimum_installment(plan, rules):
            return plan
    return installment_plan(debt, rules, today, 1)


def plan_for_monthly_amount(debt: Decimal, rules: BucketRules, today: date, monthly_amount: Decimal) -> CounterOffer:
    """The plan with the fewest installments whose installment is at most ``monthly_amount``, within the
    bucket's rules; otherwise why not: below the minimum installment, or more installments than allowed."""
    for count in range(1, rules.max_installments + 1):
        plan = installment_plan(debt, rules, today, count)
        if plan.installment_amount <= monthly_amount and respects_minimum_installment(plan, rules):
            return CounterOffer(plan)
    if monthly_amount < rules.min_installment_amount:
        return CounterOffer(None, BELOW_MINIMUM_INSTALLMENT)
    rest = debt - down_payment(debt, rules)
    required = int((rest / monthly_amount).to_integral_value(rounding=ROUND_CEILING))
    if required > rules.max_installments:
        return CounterOffer(None, EXCEEDS_MAX_INSTALLMENTS, required)
    # Fewer installments would be above the amount and that many would be below the minimum.
    return CounterOffer(None, BELOW_MINIMUM_INSTALLMENT)
