"""Loan maths in Peruvian conventions, in one place for every process: TEA to TEM, the fixed (French)
installment, schedules, and the TCEA an offer must show (SBS Res. 3274-2017).

Everything is ``Decimal``; money is rounded half-up to cents only where it is booked, so a schedule adds up
to its principal exactly. The desgravamen insurance is charged on the outstanding balance and built into a
fixed installment (the installment is computed at TEM + insurance rate, as Peruvian schedules show it), so
the customer pays the same amount every month while the insurance part falls with the balance.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal, localcontext
from typing import List, Sequence

CENT = Decimal("0.01")
ZERO = Decimal("0.00")
DAYS_PER_YEAR = 360
DAYS_PER_MONTH = 30
# Payment days stay within 1..28 so that every month has the day and schedules can be rebuilt exactly.
LAST_PAYMENT_DAY = 28
# TCEA is shown with two decimals in percent: 0.4000 is 40.00 %.
TCEA_QUANTUM = Decimal("0.0001")


def to_money(value: Decimal) -> Decimal:
    return Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)


def ceil_money(value: Decimal) -> Decimal:
    return Decimal(value).quantize(CENT, rounding=ROUND_CEILING)


def period_rate(tea: Decimal, days: int) -> Decimal:
    """Effective rate for ``days`` days: (1 + TEA)^(days/360) − 1."""
    return (Decimal(1) + tea) ** (Decimal(days) / Decimal(DAYS_PER_YEAR)) - 1


def monthly_rate(tea: Decimal) -> Decimal:
    """TEM = (1 + TEA)^(30/360) − 1, never TEA/12."""
    return period_rate(tea, DAYS_PER_MONTH)


def installment_factor(tea: Decimal, term_months: int, insurance_rate: Decimal = ZERO) -> Decimal:
    """Unrounded installment per unit of principal: i / (1 − (1 + i)^−n) with i = TEM + insurance rate.

    The installment is linear in the principal, so dividing what a customer can pay by this factor gives
    the largest principal they can afford.
    """
    if term_months < 1:
        raise ValueError("term_months must be at least 1")
    rate = monthly_rate(tea) + insurance_rate
    if rate == 0:
        return Decimal(1) / term_months
    return rate / (1 - (1 + rate) ** -term_months)


def french_installment(
    principal: Decimal, tea: Decimal, term_months: int, insurance_rate: Decimal = ZERO
) -> Decimal:
    """Fixed installment C = P·i / (1 − (1 + i)^−n) with i = TEM + monthly insurance rate, rounded to cents."""
    return to_money(principal * installment_factor(tea, term_months, insurance_rate))


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


def first_due_date(disbursed_on: date) -> date:
    """A month after the disbursement, on a payment day (1..28): the same rule for offers and booked loans."""
    return payment_day_on_or_before(add_months(disbursed_on, 1))


@dataclass(frozen=True)
class ScheduledInstallment:
    number: int
    due_date: date
    principal: Decimal
    interest: Decimal
    insurance: Decimal = ZERO

    @property
    def amount(self) -> Decimal:
        return self.principal + self.interest + self.insurance


def french_schedule(
    principal: Decimal, tea: Decimal, term_months: int, first_due: date, insurance_rate: Decimal = ZERO
) -> List[ScheduledInstallment]:
    """Monthly French schedule with the fixed installment from ``french_installment``.

    The balance is carried unrounded (as a spreadsheet would) and each row's interest and insurance are
    rounded to cents; the last installment takes every rounding difference: its principal is whatever is
    left, so principals sum to ``principal`` exactly, and its amount is the unrounded balance plus interest
    and insurance, rounded once.
    """
    principal = to_money(principal)
    rate = monthly_rate(tea)
    installment = french_installment(principal, tea, term_months, insurance_rate)
    balance = principal
    booked_principal = ZERO
    schedule = []
    for number in range(1, term_months + 1):
        exact_interest = balance * rate
        exact_insurance = balance * insurance_rate
        insurance = to_money(exact_insurance)
        if number < term_months:
            interest = to_money(exact_interest)
            part = installment - interest - insurance
            balance += exact_interest + exact_insurance - installment
        else:
            part = principal - booked_principal
            interest = to_money(balance + exact_interest + exact_insurance) - part - insurance
        booked_principal += part
        schedule.append(
            ScheduledInstallment(number, add_months(first_due, number - 1), part, interest, insurance)
        )
    return schedule


def monthly_irr(received: Decimal, payments: Sequence[Decimal]) -> Decimal:
    """The monthly rate r at which ``received`` today equals the ``payments`` due at the end of months 1..n.

    Bisection at 40 digits: the present value falls as r grows, so the root is bracketed and found without
    the convergence traps of Newton's method on odd cash flows.
    """
    if received <= 0 or not payments or any(payment < 0 for payment in payments):
        raise ValueError("need a positive amount received and non-negative payments")
    with localcontext() as context:
        context.prec = 40

        def surplus(rate: Decimal) -> Decimal:
            discount = 1 / (1 + rate)
            factor, value = Decimal(1), Decimal(0)
            for payment in payments:
                factor *= discount
                value += payment * factor
            return value - received

        low, high = Decimal("-0.99"), Decimal(1)
        while surplus(high) > 0:
            high *= 2
        for _ in range(200):
            middle = (low + high) / 2
            if surplus(middle) > 0:
                low = middle
            else:
                high = middle
            if high - low < Decimal("1e-24"):
                break
        return (low + high) / 2


def tcea(received: Decimal, payments: Sequence[Decimal]) -> Decimal:
    """Tasa de costo efectivo anual: (1 + r)^12 − 1 for the monthly IRR r, as a fraction to 0.01 %."""
    with localcontext() as context:
        context.prec = 40
        yearly = (1 + monthly_irr(received, payments)) ** 12 - 1
    return yearly.quantize(TCEA_QUANTUM, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class LoanQuote:
    """What a customer is offered: the fixed installment, every cost, and the TCEA that sums them up.

    The origination fee is deducted from what is disbursed, so ``total_to_pay`` (every installment, with its
    interest and insurance) is what the customer pays back and ``net_disbursed`` what they receive.
    """

    amount: Decimal
    term_months: int
    tea: Decimal
    installment: Decimal
    origination_fee: Decimal
    net_disbursed: Decimal
    total_interest: Decimal
    total_insurance: Decimal
    total_to_pay: Decimal
    tcea: Decimal
    first_due_date: date
    last_due_date: date
    schedule: List[ScheduledInstallment]


def quote(
    amount: Decimal,
    tea: Decimal,
    term_months: int,
    disbursed_on: date,
    origination_fee_rate: Decimal = ZERO,
    insurance_rate: Decimal = ZERO,
) -> LoanQuote:
    """Quote a loan disbursed on ``disbursed_on``; the TCEA is the IRR of net amount received vs installments."""
    amount = to_money(amount)
    schedule = french_schedule(amount, tea, term_months, first_due_date(disbursed_on), insurance_rate)
    fee = to_money(amount * origination_fee_rate)
    payments = [row.amount for row in schedule]
    return LoanQuote(
        amount=amount,
        term_months=term_months,
        tea=tea,
        installment=schedule[0].amount,
        origination_fee=fee,
        net_disbursed=amount - fee,
        total_interest=sum((row.interest for row in schedule), ZERO),
        total_insurance=sum((row.insurance for row in schedule), ZERO),
        total_to_pay=sum(payments, ZERO),
        tcea=tcea(amount - fee, payments),
        first_due_date=schedule[0].due_date,
        last_due_date=schedule[-1].due_date,
        schedule=schedule,
    )
