"""Which reminders are due on a day: the cadence of ``policies/reminders.yml`` applied to a loan's installments,
promises to pay and payment plan, as read from core banking.

Each reminder is a *step*, keyed by (loan, subject, step) where the subject is an installment, a promise or a
plan installment and the step a point of the cadence ("overdue:7"). A step may go out from its day up to
``catch_up_days`` later, never once the next step of the same subject is due (nor, before a due date, on the due
date itself). A step that must not go out for a reason of the loan itself carries it in ``blocked``: paid,
disputed (an open dispute holds collection contact), in_plan (a payment plan took the installment over) or
promise_pending (a live promise covers it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import List, Optional, Sequence, Tuple

from credia.reminders.policy import Cadence

BEFORE_DUE = "before_due"
DUE_TODAY = "due_today"
OVERDUE = "overdue"
PROMISE_TOMORROW = "promise_tomorrow"
PROMISE_BROKEN = "promise_broken"
PLAN_INSTALLMENT = "plan_installment"
# Within one customer's run the most pressing reminder goes first (it is the one a daily cap lets through).
PRIORITY = {
    PROMISE_BROKEN: 0,
    PROMISE_TOMORROW: 1,
    OVERDUE: 2,
    PLAN_INSTALLMENT: 3,
    DUE_TODAY: 4,
    BEFORE_DUE: 5,
}
PAID = "paid"
DISPUTED = "disputed"
IN_PLAN = "in_plan"
PROMISE_PENDING = "promise_pending"
ZERO = Decimal("0.00")
DAY = timedelta(days=1)


@dataclass(frozen=True)
class InstallmentFacts:
    number: int
    due_date: date
    amount: Decimal
    paid_amount: Decimal
    late_interest: Decimal
    paid_on: Optional[date]

    @property
    def paid(self) -> bool:
        return self.paid_amount >= self.amount

    @property
    def unpaid(self) -> Decimal:
        return max(self.amount - self.paid_amount, ZERO)


@dataclass(frozen=True)
class PromiseFacts:
    id: int
    amount: Decimal
    promised_date: date
    status: str  # pending, kept or broken, as core banking settled it
    created_on: date


@dataclass(frozen=True)
class PlanRow:
    number: int
    due_date: date
    amount: Decimal


@dataclass(frozen=True)
class PlanFacts:
    """The loan's open plan; ``paid_since`` is what was paid on the loan since it was agreed."""

    id: int
    status: str  # active or pending_approval
    created_on: date
    rows: Tuple[PlanRow, ...]
    paid_since: Decimal


@dataclass(frozen=True)
class LoanFacts:
    id: int
    customer_id: int
    currency: str
    collections_hold: bool
    installments: Tuple[InstallmentFacts, ...]
    promises: Tuple[PromiseFacts, ...] = ()
    plan: Optional[PlanFacts] = None
    paid_off: bool = False


@dataclass(frozen=True)
class Step:
    loan_id: int
    customer_id: int
    subject: str
    step: str
    kind: str
    due_date: date
    due_amount: Decimal
    currency: str
    step_date: date
    last_day: date
    blocked: Optional[str]

    @property
    def key(self) -> Tuple[int, str, str]:
        return self.loan_id, self.subject, self.step

    @property
    def priority(self) -> int:
        return PRIORITY[self.kind]


def due_steps(loan: LoanFacts, today: date, cadence: Cadence) -> List[Step]:
    """Every step of the loan that may go out on ``today`` (the customer's local day), most pressing first;
    none for a paid-off loan."""
    if loan.paid_off:
        return []
    steps = _installment_steps(loan, today, cadence) + _promise_steps(loan, today, cadence)
    steps += _plan_steps(loan, today, cadence)
    return sorted(steps, key=lambda step: (step.priority, step.due_date, step.subject))


def _windows(offsets: Sequence[int], due: date, catch_up: int, stop_at_due: bool) -> List[Tuple[int, date, date]]:
    """(offset, first day, last day) of each step: up to ``catch_up`` days late, never into the next step."""
    ordered = sorted(set(offsets))
    windows = []
    for index, offset in enumerate(ordered):
        first = due + timedelta(days=offset)
        last = first + timedelta(days=catch_up)
        if index + 1 < len(ordered):
            last = min(last, due + timedelta(days=ordered[index + 1]) - DAY)
        if offset < 0:
            last = min(last, due - DAY)
        if stop_at_due:
            last = min(last, due)
        windows.append((offset, first, last))
    return windows


def _installment_steps(loan: LoanFacts, today: date, cadence: Cadence) -> List[Step]:
    rules = cadence.installments
    offsets = [-days for days in rules.days_before_due] + ([0] if rules.on_due_date else []) + rules.days_after_due
    oldest_unpaid = next((item for item in loan.installments if not item.paid), None)
    overdue_amount = sum(
        (item.unpaid + item.late_interest for item in loan.installments if not item.paid and item.due_date < today),
        ZERO,
    )
    steps = []
    for item in loan.installments:
        for offset, first, last in _windows(offsets, item.due_date, cadence.catch_up_days, stop_at_due=False):
            if not first <= today <= last:
                continue
            kind = BEFORE_DUE if offset < 0 else DUE_TODAY if offset == 0 else OVERDUE
            if kind == OVERDUE and (
                (item.paid and item.paid_on is not None and item.paid_on <= item.due_date)  # never overdue
                or (not item.paid and item is not oldest_unpaid)  # reminded with the oldest unpaid one
            ):
                continue
            step = DUE_TODAY if kind == DUE_TODAY else f"{kind}:{abs(offset)}"
            amount = overdue_amount if kind == OVERDUE else item.unpaid
            steps.append(
                Step(loan.id, loan.customer_id, f"installment:{item.number}", step, kind, item.due_date,
                     amount, loan.currency, first, last, _installment_block(loan, item))
            )
    return steps


def _installment_block(loan: LoanFacts, item: InstallmentFacts) -> Optional[str]:
    if item.paid:
        return PAID
    if loan.collections_hold:
        return DISPUTED
    if loan.plan is not None and loan.plan.created_on >= item.due_date:
        return IN_PLAN
    if any(p.status == "pending" and p.created_on >= item.due_date for p in loan.promises):
        return PROMISE_PENDING
    return None


def _promise_steps(loan: LoanFacts, today: date, cadence: Cadence) -> List[Step]:
    rules = cadence.promises
    overdue = any(not item.paid and item.due_date < today for item in loan.installments)
    steps = []
    for promise in loan.promises:
        subject = f"promise:{promise.id}"
        eve = promise.promised_date - DAY
        made_before = promise.created_on < eve  # not the very day it was made
        if rules.day_before_promised_date and today == eve and made_before and promise.status != "broken":
            blocked = PAID if promise.status == "kept" else DISPUTED if loan.collections_hold else None
            steps.append(
                Step(loan.id, loan.customer_id, subject, PROMISE_TOMORROW, PROMISE_TOMORROW,
                     promise.promised_date, promise.amount, loan.currency, eve, eve, blocked)
            )
        after = promise.promised_date + DAY
        last = after + timedelta(days=cadence.catch_up_days)
        if rules.day_after_broken and promise.status == "broken" and after <= today <= last:
            newer_pending = any(other.status == "pending" and other.id > promise.id for other in loan.promises)
            blocked = (
                PAID if not overdue
                else DISPUTED if loan.collections_hold
                else IN_PLAN if loan.plan is not None and loan.plan.created_on >= promise.created_on
                else PROMISE_PENDING if newer_pending
                else None
            )
            steps.append(
                Step(loan.id, loan.customer_id, subject, PROMISE_BROKEN, PROMISE_BROKEN, promise.promised_date,
                     promise.amount, loan.currency, after, last, blocked)
            )
    return steps


def _plan_steps(loan: LoanFacts, today: date, cadence: Cadence) -> List[Step]:
    plan = loan.plan
    rules = cadence.plan_installments
    if plan is None or plan.status != "active":
        return []
    offsets = [-days for days in rules.days_before_due] + ([0] if rules.on_due_date else [])
    steps = []
    before = ZERO
    for row in plan.rows:
        covered = min(max(plan.paid_since - before, ZERO), row.amount)
        before += row.amount
        if row.number == 0:
            continue  # the down payment, due the day the plan was agreed
        for offset, first, last in _windows(offsets, row.due_date, cadence.catch_up_days, stop_at_due=True):
            if not first <= today <= last or plan.created_on >= first:
                continue
            unpaid = row.amount - covered
            blocked = PAID if unpaid <= 0 else DISPUTED if loan.collections_hold else None
            steps.append(
                Step(loan.id, loan.customer_id, f"plan:{plan.id}:{row.number}", f"{PLAN_INSTALLMENT}:{offset}",
                     PLAN_INSTALLMENT, row.due_date, max(unpaid, ZERO), loan.currency, first, last, blocked)
            )
    return steps
