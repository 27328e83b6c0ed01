"""Loan arithmetic in Peruvian conventions: TEA to TEM, French schedules, delinquency and payment allocation.

Everything is ``Decimal``; money is rounded half-up to cents only where it is booked, so a schedule adds up
to its principal exactly. Functions take the day they compute for (``as_of``), so they are easy to test and
the service can pass "today in Lima".

Late interest follows Ley 31143: moratory interest only (no penalty fees), on the overdue *principal* only
(never on interest, which would capitalise it), simple interest from each due date at the product's moratory
TEA on a 360-day year.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from typing import List, Optional, Protocol, Sequence
from zoneinfo import ZoneInfo

LIMA = ZoneInfo("America/Lima")
CENT = Decimal("0.01")
ZERO = Decimal("0.00")
DAYS_PER_YEAR = 360
DAYS_PER_MONTH = 30
# Payment days stay within 1..28 so that every month has the day and schedules can be rebuilt exactly.
LAST_PAYMENT_DAY = 28


def to_money(value: Decimal) -> Decimal:
    return Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)


def ceil_money(value: Decimal) -> Decimal:
    return Decimal(value).quantize(CENT, rounding=ROUND_CEILING)


def today_lima(now: Optional[datetime] = None) -> date:
    """The calendar day in Lima; days past due are counted in the lender's time zone, not the server's."""
    return (now or datetime.now(LIMA)).astimezone(LIMA).date()


def period_rate(tea: Decimal, days: int) -> Decimal:
    """Effective rate for ``days`` days: (1 + TEA)^(days/360) − 1."""
    return (Decimal(1) + tea) ** (Decimal(days) / Decimal(DAYS_PER_YEAR)) - 1


def monthly_rate(tea: Decimal) -> Decimal:
    """TEM = (1 + TEA)^(30/360) − 1, never TEA/12."""
    return period_rate(tea, DAYS_PER_MONTH)


def french_installment(principal: Decimal, tea: Decimal, term_months: int) -> Decimal:
    """Fixed installment C = P·i / (1 − (1 + i)^−n), rounded to cents."""
    if term_months < 1:
        raise ValueError("term_months must be at least 1")
    rate = monthly_rate(tea)
    if rate == 0:
        return to_money(principal / term_months)
    return to_money(principal * rate / (1 - (1 + rate) ** -term_months))


def add_months(day: date, months: int) -> date:
    """Same day ``months`` later (or earlier), clamped to the month's last day."""
    month_index = day.year * 12 + day.month - 1 + months
    year, month = divmod(month_index, 12)
    month += 1
    next_month_first = date(year + (month == 12), month % 12 + 1, 1)
    return date(year, month, min(day.day, (next_month_first - timedelta(days=1)).day))


def payment_day_on_or_before(day: date) -> date:
    return day if day.day <= LAST_PAYMENT_DAY else day.replace(day=LAST_PAYMENT_DAY)


def payment_day_on_or_after(day: date) -> date:
    return day if day.day <= LAST_PAYMENT_DAY else add_months(day.replace(day=1), 1)


@dataclass(frozen=True)
class ScheduledInstallment:
    number: int
    due_date: date
    principal: Decimal
    interest: Decimal

    @property
    def amount(self) -> Decimal:
        return self.principal + self.interest


def french_schedule(
    principal: Decimal, tea: Decimal, term_months: int, first_due_date: date
) -> List[ScheduledInstallment]:
    """Monthly French schedule with the fixed installment from ``french_installment``.

    The balance is carried unrounded (as a spreadsheet would) and each row's interest is rounded to cents;
    the last installment takes every rounding difference: its principal is whatever is left, so principals
    sum to ``principal`` exactly, and its amount is the unrounded balance plus interest, rounded once.
    """
    principal = to_money(principal)
    rate = monthly_rate(tea)
    installment = french_installment(principal, tea, term_months)
    balance = principal
    booked_principal = ZERO
    schedule = []
    for number in range(1, term_months + 1):
        exact_interest = balance * rate
        if number < term_months:
            interest = to_money(exact_interest)
            part = installment - interest
            balance += exact_interest - installment
        else:
            part = principal - booked_principal
            interest = to_money(balance + exact_interest) - part
        booked_principal += part
        schedule.append(ScheduledInstallment(number, add_months(first_due_date, number - 1), part, interest))
    return schedule


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
