"""Loan servicing in Peruvian conventions: delinquency, late interest and payment allocation.

Rates, installments and schedules live in ``credia.credit.maths`` (one place for loan maths, shared with the
credit pre-evaluation); they are imported here for the service and its existing callers. Functions take the
day they compute for (``as_of``), so they are easy to test and the service can pass "today in Lima".

Late interest follows Ley 31143: moratory interest only (no penalty fees), on the overdue *principal* only
(never on interest, which would capitalise it), simple interest from each due date at the product's moratory
TEA on a 360-day year.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import List, Optional, Protocol, Sequence
from zoneinfo import ZoneInfo

from credia.credit.maths import (  # noqa: F401 (re-exported for the service's callers and tests)
    CENT,
    ZERO,
    add_months,
    french_installment,
    french_schedule,
    monthly_rate,
    period_rate,
    to_money,
)

LIMA = ZoneInfo("America/Lima")


def today_lima(now: Optional[datetime] = None) -> date:
    """The calendar day in Lima; days past due are counted in the lender's time zone, not the server's."""
    return (now or datetime.now(LIMA)).astimezone(LIMA).date()


class InstallmentState(Protocol):
    """What the delinquency and allocation functions read and write (the ORM ``Installment`` fits)."""

    number: int
    due_date: date
    principal: Decimal
    interest: Decimal
    amount: Decimal
    principal_paid: Decimal
    interest_paid: Decimal
    late_interest_accrued: Decimal
    late_interest_paid: Decimal
    accrued_until: Optional[date]
    paid_on: Optional[date]


def is_settled(installment: InstallmentState) -> bool:
    return installment.principal_paid + installment.interest_paid >= installment.amount


def installment_status(installment: InstallmentState, as_of: date) -> str:
    """``paid``, ``overdue`` (unpaid after its due date) or ``pending``; partial payments show in paid_amount."""
    if is_settled(installment):
        return "paid"
    return "overdue" if installment.due_date < as_of else "pending"


def _accrual_start(installment: InstallmentState) -> date:
    if installment.accrued_until is None:
        return installment.due_date
    return max(installment.due_date, installment.accrued_until)


def _accrue(installment: InstallmentState, moratory_tea: Decimal, until: date) -> Decimal:
    """Late interest on the unpaid principal from the last accrual (or the due date) to ``until``."""
    days = (until - _accrual_start(installment)).days
    unpaid_principal = installment.principal - installment.principal_paid
    if days <= 0 or unpaid_principal <= 0:
        return ZERO
    return to_money(unpaid_principal * period_rate(moratory_tea, days))


def late_interest_due(installment: InstallmentState, moratory_tea: Decimal, as_of: date) -> Decimal:
    accrued = installment.late_interest_accrued + _accrue(installment, moratory_tea, as_of)
    return accrued - installment.late_interest_paid


def delinquency_bucket(days_past_due: int) -> str:
    """Collections bucket: ``current``, ``1-30``, ``31-60``, ``61-120`` or ``>120``."""
    if days_past_due <= 0:
        return "current"
    if days_past_due <= 30:
        return "1-30"
    if days_past_due <= 60:
        return "31-60"
    if days_past_due <= 120:
        return "61-120"
    return ">120"


@dataclass(frozen=True)
class LoanPosition:
    """A loan's state on ``as_of``: what is overdue, what is next, and what would settle it."""

    as_of: date
    status: str
    days_past_due: int
    bucket: str
    installments_paid: int
    installments_overdue: int
    amount_overdue: Decimal
    late_interest: Decimal
    next_due_date: Optional[date]
    next_due_amount: Optional[Decimal]
    outstanding_principal: Decimal
    outstanding_balance: Decimal

    @property
    def total_overdue(self) -> Decimal:
        return self.amount_overdue + self.late_interest


def loan_position(installments: Sequence[InstallmentState], moratory_tea: Decimal, as_of: date) -> LoanPosition:
    unpaid = [i for i in sorted(installments, key=lambda i: i.number) if not is_settled(i)]
    overdue = [i for i in unpaid if i.due_date < as_of]
    upcoming = [i for i in unpaid if i.due_date >= as_of]
    late_interest = sum((late_interest_due(i, moratory_tea, as_of) for i in unpaid), ZERO)
    days_past_due = (as_of - overdue[0].due_date).days if overdue else 0
    return LoanPosition(
        as_of=as_of,
        status="active" if unpaid else "paid_off",
        days_past_due=days_past_due,
        bucket=delinquency_bucket(days_past_due),
        installments_paid=len(installments) - len(unpaid),
        installments_overdue=len(overdue),
        amount_overdue=sum((i.amount - i.principal_paid - i.interest_paid for i in overdue), ZERO),
        late_interest=late_interest,
        next_due_date=upcoming[0].due_date if upcoming else None,
        next_due_amount=(upcoming[0].amount - upcoming[0].principal_paid - upcoming[0].interest_paid)
        if upcoming
        else None,
        outstanding_principal=sum((i.principal - i.principal_paid for i in unpaid), ZERO),
        outstanding_balance=sum((i.amount - i.principal_paid - i.interest_paid for i in unpaid), ZERO)
        + late_interest,
    )


@dataclass(frozen=True)
class Allocation:
    installment_number: int
    late_interest: Decimal
    interest: Decimal
    principal: Decimal


def allocate_payment(
    installments: Sequence[InstallmentState], moratory_tea: Decimal, amount: Decimal, on_date: date
) -> List[Allocation]:
    """Apply ``amount`` to the oldest unpaid installments first, and within each to late interest, then
    interest, then principal (Código Civil art. 1257). Money beyond what is due pays the next installments
    as they are ("adelanto de cuotas"), without recomputing their interest.

    Mutates the installments; the caller must have checked that ``amount`` does not exceed the balance.
    """
    if amount <= 0:
        raise ValueError("amount must be positive")
    remaining = amount
    allocations = []
    for installment in sorted(installments, key=lambda i: i.number):
        if remaining <= 0:
            break
        if is_settled(installment):
            continue
        if on_date > _accrual_start(installment):
            installment.late_interest_accrued += _accrue(installment, moratory_tea, on_date)
            installment.accrued_until = on_date
        parts = []
        for owed in (
            installment.late_interest_accrued - installment.late_interest_paid,
            installment.interest - installment.interest_paid,
            installment.principal - installment.principal_paid,
        ):
            part = min(max(owed, ZERO), remaining)
            parts.append(part)
            remaining -= part
        late, interest, principal = parts
        installment.late_interest_paid += late
        installment.interest_paid += interest
        installment.principal_paid += principal
        if is_settled(installment):
            installment.paid_on = on_date
        allocations.append(Allocation(installment.number, late, interest, principal))
    if remaining > 0:
        raise ValueError(f"amount exceeds the loan balance by {remaining}")
    return allocations
