"""The cadence: which reminders are due on which day for installments, promises to pay and plan installments."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Dict, List, Optional, Tuple

from credia.reminders.cadence import (
    InstallmentFacts,
    LoanFacts,
    PlanFacts,
    PlanRow,
    PromiseFacts,
    Step,
    due_steps,
)
from credia.reminders.policy import load_policy

CADENCE = load_policy(lender_path=None).cadence
DUE = date(2026, 12, 10)


def installment(number: int, due: date, paid: str = "0.00", paid_on: Optional[date] = None) -> InstallmentFacts:
    return InstallmentFacts(number, due, Decimal("100.00"), Decimal(paid), Decimal("1.50"), paid_on)


def loan(*installments: InstallmentFacts, **fields: object) -> LoanFacts:
    return LoanFacts(9, 1, "PEN", False, tuple(installments), **fields)  # type: ignore[arg-type]


def calendar(facts: LoanFacts, first: date, last: date) -> Dict[date, List[Tuple[str, str, Optional[str]]]]:
    """Day by day, the steps that may go out (subject, step, blocked)."""
    days: Dict[date, List[Tuple[str, str, Optional[str]]]] = {}
    day = first
    while day <= last:
        steps = due_steps(facts, day, CADENCE)
        if steps:
            days[day] = [(step.subject, step.step, step.blocked) for step in steps]
        day += timedelta(days=1)
    return days


def first_days(facts: LoanFacts, first: date, last: date) -> Dict[str, date]:
    """The first day each step may go out."""
    seen: Dict[str, date] = {}
    for day, steps in calendar(facts, first, last).items():
        for _subject, step, _blocked in steps:
            seen.setdefault(step, day)
    return seen


def test_an_unpaid_installment_3_days_before_on_the_day_and_1_3_7_15_30_after() -> None:
    starts = first_days(loan(installment(1, DUE)), DUE - timedelta(days=10), DUE + timedelta(days=40))
    offsets = {step: (day - DUE).days for step, day in starts.items()}
    assert offsets == {
        "before_due:3": -3, "due_today": 0, "overdue:1": 1, "overdue:3": 3, "overdue:7": 7, "overdue:15": 15,
        "overdue:30": 30,
    }


def test_a_step_catches_up_at_most_two_days_and_never_into_the_next_step() -> None:
    days = calendar(loan(installment(1, DUE)), DUE - timedelta(days=10), DUE + timedelta(days=40))
    window = {step: [] for _subjects in days.values() for _s, step, _b in _subjects}  # type: ignore[var-annotated]
    for day, steps in days.items():
        for _subject, step, _blocked in steps:
            window[step].append((day - DUE).days)
    assert window["before_due:3"] == [-3, -2, -1]  # never on the due date itself
    assert window["due_today"] == [0]
    assert window["overdue:1"] == [1, 2]
    assert window["overdue:3"] == [3, 4, 5]
    assert window["overdue:30"] == [30, 31, 32]


def test_overdue_reminders_follow_the_oldest_unpaid_installment_not_each_one() -> None:
    facts = loan(installment(1, DUE), installment(2, DUE + timedelta(days=31)))
    day = DUE + timedelta(days=31 + 7)  # 38 days after the first, 7 after the second
    steps = due_steps(facts, day, CADENCE)
    assert [(step.subject, step.step) for step in steps] == []  # the second is not reminded while the first is
    overdue, due_today = due_steps(facts, DUE + timedelta(days=31), CADENCE)  # the most pressing first
    assert (overdue.subject, overdue.step, overdue.due_amount) == ("installment:1", "overdue:30", Decimal("101.50"))
    assert (due_today.subject, due_today.kind, due_today.due_amount) == ("installment:2", "due_today", Decimal("100"))


def test_an_installment_paid_on_time_has_no_overdue_reminders_and_an_early_payment_is_a_paid_skip() -> None:
    paid = loan(installment(1, DUE, paid="100.00", paid_on=DUE - timedelta(days=5)))
    days = calendar(paid, DUE - timedelta(days=10), DUE + timedelta(days=40))
    assert {step for steps in days.values() for _s, step, _b in steps} == {"before_due:3", "due_today"}
    assert {blocked for steps in days.values() for _s, _step, blocked in steps} == {"paid"}


def promise(status: str, promised: date, created: date, promise_id: int = 5) -> PromiseFacts:
    return PromiseFacts(promise_id, Decimal("80.00"), promised, status, created)


def test_a_promise_is_reminded_the_day_before_and_a_broken_one_the_day_after() -> None:
    promised = DUE
    overdue = installment(1, promised - timedelta(days=8))  # overdue:7 falls on the eve of the promise
    pending = loan(overdue, promises=(promise("pending", promised, promised - timedelta(days=6)),))
    [eve] = [step for step in due_steps(pending, promised - timedelta(days=1), CADENCE) if step.kind.startswith("p")]
    assert (eve.kind, eve.due_date, eve.due_amount) == ("promise_tomorrow", promised, Decimal("80.00"))
    assert eve.blocked is None
    [covered] = [s for s in due_steps(pending, promised - timedelta(days=1), CADENCE) if s.kind == "overdue"]
    assert covered.blocked == "promise_pending"
    made_the_day_before = loan(overdue, promises=(promise("pending", promised, promised - timedelta(days=1)),))
    assert not [s for s in due_steps(made_the_day_before, promised - timedelta(days=1), CADENCE)
                if s.kind == "promise_tomorrow"]

    broken = loan(overdue, promises=(promise("broken", promised, promised - timedelta(days=6)),))
    after = [s for s in due_steps(broken, promised + timedelta(days=1), CADENCE) if s.kind == "promise_broken"]
    assert [(s.step_date, s.last_day, s.blocked) for s in after] == [
        (promised + timedelta(days=1), promised + timedelta(days=3), None)
    ]
    renewed = loan(overdue, promises=(promise("broken", promised, promised - timedelta(days=6)),
                                      promise("pending", promised + timedelta(days=5), promised, promise_id=6)))
    [again] = [s for s in due_steps(renewed, promised + timedelta(days=1), CADENCE) if s.kind == "promise_broken"]
    assert again.blocked == "promise_pending"


def test_plan_installments_two_days_before_and_on_the_day_until_paid() -> None:
    agreed = date(2026, 11, 1)
    rows = (PlanRow(0, agreed, Decimal("50.00")), PlanRow(1, DUE, Decimal("120.00")),
            PlanRow(2, DUE + timedelta(days=30), Decimal("120.00")))

    def plan(paid: str) -> LoanFacts:
        return loan(installment(1, date(2026, 10, 15)),
                    plan=PlanFacts(3, "active", agreed, rows, Decimal(paid)))

    steps: List[Step] = [s for s in due_steps(plan("50.00"), DUE - timedelta(days=2), CADENCE)
                         if s.kind == "plan_installment"]
    assert [(s.subject, s.step, s.due_amount, s.blocked) for s in steps] == [
        ("plan:3:1", "plan_installment:-2", Decimal("120.00"), None)
    ]
    [on_day] = [s for s in due_steps(plan("100.00"), DUE, CADENCE) if s.kind == "plan_installment"]
    assert (on_day.step, on_day.due_amount, on_day.last_day) == ("plan_installment:0", Decimal("70.00"), DUE)
    [paid] = [s for s in due_steps(plan("170.00"), DUE, CADENCE) if s.kind == "plan_installment"]
    assert paid.blocked == "paid"
    # The loan's own overdue installment is covered by the plan.
    assert [s.blocked for s in due_steps(plan("0"), date(2026, 11, 14), CADENCE) if s.kind == "overdue"] == ["in_plan"]


def test_an_open_dispute_holds_every_reminder_of_the_loan() -> None:
    facts = LoanFacts(9, 1, "PEN", True, (installment(1, DUE),))
    assert {step.blocked for step in due_steps(facts, DUE, CADENCE)} == {"disputed"}
