"""Demo data: the credit products of the policy file and 64 customers with applications, loans in every
days-past-due bucket, payments, promises to pay and payment plans.

Everything is placed before ``as_of`` (the day the service seeds itself, in Lima), except installments and
promises still to come, and drawn from a ``random.Random`` with a fixed seed, so the same day always gives
the same data. The first eight customers
are written by hand for documentation and demos (``demo_customers()``); the rest are generated. Data goes
in through ``credia.core_banking.operations``, so the seed obeys the same rules as the API.
"""

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Dict, List, Optional, Sequence, Tuple

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from credia.core_banking import operations as ops
from credia.core_banking.loans import LIMA, delinquency_bucket
from credia.core_banking.models import (
    ApplicationDocument,
    ApplicationStatus,
    Base,
    ConsentChannel,
    CreditApplication,
    CreditProduct,
    Customer,
    DocumentType,
    EmploymentType,
    Loan,
    PaymentSource,
)
from credia.credit.maths import add_months, payment_day_on_or_after, payment_day_on_or_before
from credia.credit.policy import CreditPolicy, load_policy
from credia.db import make_session_factory

SEED = 20240611
D = Decimal

# New customers (not in the seed) whose mock bureau report has each rating, for demos and end-to-end tests of
# the application journey: with a clean request, Normal is pre-approved, CPP is referred to an advisor, and
# the other three are declined. The bureau is deterministic per document (``credia.core_banking.bureau``).
BUREAU_SAMPLE_DNIS: Dict[str, str] = {
    "Normal": "71000002",
    "CPP": "71000006",
    "Deficiente": "71000022",
    "Dudoso": "71000005",
    "Pérdida": "71000012",
}


@dataclass(frozen=True)
class LoanSpec:
    """A loan placed in time by ``due_offset``: days from ``as_of`` to the due date of the first unpaid
    installment (negative: overdue by that many days), or of the last installment when paid off."""

    product: str
    principal: Decimal
    term: int
    installments_paid: int
    due_offset: int
    partial_payment: bool = False
    promises: Tuple[str, ...] = ()  # "kept" (needs partial_payment), "broken", "pending"
    plan: bool = False
    from_application: bool = True

    @property
    def paid_off(self) -> bool:
        return self.installments_paid == self.term

    @property
    def expected_bucket(self) -> str:
        """Bucket on ``as_of``; payment days kept in 1..28 may add up to 3 days, never crossing a bucket."""
        return "paid_off" if self.paid_off else delinquency_bucket(max(-self.due_offset, 0))


@dataclass(frozen=True)
class ApplicationSpec:
    product: str
    amount: Decimal
    term: int
    status: ApplicationStatus
    days_ago: int


@dataclass(frozen=True)
class CustomerSpec:
    document_number: str
    first_name: str
    last_name: str
    date_of_birth: date
    phone: str
    email: str
    monthly_income: Decimal
    employment: EmploymentType
    consents: Dict[ConsentChannel, bool]
    revoked: Tuple[ConsentChannel, ...] = ()
    loans: Tuple[LoanSpec, ...] = ()
    applications: Tuple[ApplicationSpec, ...] = ()
    summary: str = ""
    document_type: DocumentType = DocumentType.DNI


@dataclass(frozen=True)
class DemoCustomer:
    """A hand-written customer for READMEs and demos; ``summary`` says what the customer has on ``as_of``."""

    document_type: str
    document_number: str
    full_name: str
    date_of_birth: date
    phone: str
    summary: str
    loan_buckets: Tuple[str, ...] = field(default_factory=tuple)


ALL = {channel: True for channel in ConsentChannel}
_W, _S, _E, _V, _WEB = (
    ConsentChannel.WHATSAPP,
    ConsentChannel.SMS,
    ConsentChannel.EMAIL,
    ConsentChannel.VOICE,
    ConsentChannel.WEB,
)

DEMO: Tuple[CustomerSpec, ...] = (
    CustomerSpec(
        "10117410", "María Elena", "Quispe Mamani", date(1985, 3, 14), "+51987654321",
        "maria.quispe@example.com", D("4200"), EmploymentType.EMPLOYEE, {**ALL, _V: False},
        loans=(LoanSpec("PERSONAL", D("10000"), 12, 3, due_offset=10),),
        summary="Préstamo Personal S/ 10,000 in 12 months, up to date (3 paid, next due in about 10 days).",
    ),
    CustomerSpec(
        "45879632", "José Luis", "Huamán Flores", date(1979, 11, 2), "+51912345678",
        "jose.huaman@example.com", D("6500"), EmploymentType.EMPLOYEE, ALL,
        loans=(LoanSpec("VEHICULAR", D("45000"), 48, 10, due_offset=-12, promises=("pending",)),),
        summary="Crédito Vehicular about 12 days past due (bucket 1-30) with a pending promise to pay.",
    ),
    CustomerSpec(
        "40236715", "Rosa", "Condori Apaza", date(1990, 7, 21), "+51934567812",
        "rosa.condori@example.com", D("2800"), EmploymentType.SELF_EMPLOYED, ALL, revoked=(_W,),
        loans=(LoanSpec("PERSONAL", D("6000"), 24, 5, due_offset=-45, partial_payment=True, promises=("kept",)),),
        summary="Préstamo Personal about 45 days past due (31-60) after a partial payment and a kept promise; "
        "withdrew WhatsApp consent.",
    ),
    CustomerSpec(
        "09876543", "Carlos Alberto", "Mendoza Rojas", date(1972, 1, 30), "+51956781234",
        "carlos.mendoza@example.com", D("9000"), EmploymentType.BUSINESS_OWNER, ALL,
        loans=(LoanSpec("PYME", D("30000"), 24, 8, due_offset=-90, promises=("broken",), plan=True),),
        summary="Crédito Negocio Pyme about 90 days past due (61-120), a broken promise and an active payment plan.",
    ),
    CustomerSpec(
        "41528367", "Lucía", "Torres Vargas", date(1988, 5, 9), "+51978123456",
        "lucia.torres@example.com", D("2500"), EmploymentType.EMPLOYEE, {**ALL, _S: False},
        loans=(LoanSpec("PERSONAL", D("4000"), 18, 2, due_offset=-150, promises=("broken",)),),
        summary="Préstamo Personal about 150 days past due (>120) with a broken promise; no payment plan yet.",
    ),
    CustomerSpec(
        "46210987", "Jorge", "Ramírez Castillo", date(1995, 9, 17), "+51923456781",
        "jorge.ramirez@example.com", D("3500"), EmploymentType.EMPLOYEE, ALL,
        applications=(ApplicationSpec("PERSONAL", D("8000"), 24, ApplicationStatus.IN_REVIEW, 2),),
        summary="No loans; a Préstamo Personal application (S/ 8,000, 24 months) in review.",
    ),
    CustomerSpec(
        "42771354", "Ana Cecilia", "Chávez Gutiérrez", date(1983, 12, 3), "+51945678123",
        "ana.chavez@example.com", D("5200"), EmploymentType.EMPLOYEE, ALL,
        loans=(
            LoanSpec("PERSONAL", D("5000"), 12, 12, due_offset=-60, from_application=False),
            LoanSpec("CONVENIO", D("20000"), 36, 14, due_offset=5),
        ),
        applications=(ApplicationSpec("VEHICULAR", D("60000"), 60, ApplicationStatus.APPROVED, 3),),
        summary="Two loans (Préstamo Personal paid off; Préstamo por Convenio up to date) and an approved "
        "Crédito Vehicular application awaiting disbursement.",
    ),
    CustomerSpec(
        "70451236", "Pedro", "Sánchez Díaz", date(2000, 2, 25), "+51967812345",
        "pedro.sanchez@example.com", D("1800"), EmploymentType.SELF_EMPLOYED, {_W: True, _WEB: True},
        summary="New customer: no loans and no applications (for the application journey).",
    ),
)

FIRST_NAMES_F = (
    "María", "Rosa", "Juana", "Carmen", "Ana", "Luz", "Elena", "Gladys", "Milagros", "Patricia", "Flor",
    "Yolanda", "Sonia", "Karina", "Vanessa", "Jessica", "Lourdes", "Marleni", "Nancy", "Teresa", "Diana",
    "Fiorella", "Ruth", "Maribel",
)
FIRST_NAMES_M = (
    "José", "Juan", "Luis", "Carlos", "Jorge", "Miguel", "Pedro", "Víctor", "César", "Julio", "Raúl", "Walter",
    "Edwin", "Wilber", "Percy", "Hugo", "Óscar", "Renzo", "Diego", "Alonso", "Fredy", "Ronald", "Elmer", "Iván",
)
SURNAMES = (
    "Quispe", "Flores", "Sánchez", "Rodríguez", "García", "Huamán", "Mamani", "Chávez", "Rojas", "Díaz",
    "Torres", "Ramos", "Castillo", "Vásquez", "Mendoza", "Gonzales", "Pérez", "Espinoza", "Condori", "Vargas",
    "Cruz", "Gutiérrez", "Apaza", "Ccori", "Huanca", "Ticona", "Paredes", "Salazar", "Cárdenas", "Villanueva",
    "Ñahui", "Medina", "Aguilar", "Zapata", "Palomino", "Cáceres",
)
# Generated customers cycle through these profiles so every bucket and state appears whatever the seed.
PROFILES = (
    "current", "1-30", "application", "31-60", "61-120", "current", "none", ">120", "paid_off",
    "two_loans", "application", "1-30", "current", "31-60", "61-120", ">120",
)
OPEN_AND_CLOSED_STATUSES = (
    ApplicationStatus.RECEIVED,
    ApplicationStatus.IN_REVIEW,
    ApplicationStatus.REFERRED,
    ApplicationStatus.APPROVED,
    ApplicationStatus.REJECTED,
    ApplicationStatus.CANCELLED,
)
PATH_TO: Dict[ApplicationStatus, Tuple[ApplicationStatus, ...]] = {
    ApplicationStatus.RECEIVED: (),
    ApplicationStatus.IN_REVIEW: (ApplicationStatus.IN_REVIEW,),
    ApplicationStatus.REFERRED: (ApplicationStatus.IN_REVIEW, ApplicationStatus.REFERRED),
    ApplicationStatus.APPROVED: (ApplicationStatus.IN_REVIEW, ApplicationStatus.APPROVED),
    ApplicationStatus.REJECTED: (ApplicationStatus.IN_REVIEW, ApplicationStatus.REJECTED),
    ApplicationStatus.CANCELLED: (ApplicationStatus.CANCELLED,),
    ApplicationStatus.DISBURSED: (
        ApplicationStatus.IN_REVIEW,
        ApplicationStatus.APPROVED,
        ApplicationStatus.DISBURSED,
    ),
}
NOTES: Dict[ApplicationStatus, str] = {
    ApplicationStatus.IN_REVIEW: "Documentos completos; pasa a evaluación.",
    ApplicationStatus.REFERRED: "Ingreso independiente sin sustento suficiente; derivado a un asesor.",
    ApplicationStatus.APPROVED: "Aprobado según política de riesgos.",
    ApplicationStatus.REJECTED: "Cuota excede la capacidad de pago.",
    ApplicationStatus.CANCELLED: "Cancelado a pedido del cliente.",
    ApplicationStatus.DISBURSED: "Desembolso realizado en cuenta de ahorros.",
}
GENERATED_CUSTOMERS = 56
PAYMENT_CHANNELS = ("branch", "mobile_banking", "agent", "bank_transfer", "payment_link")


def demo_customers() -> List[DemoCustomer]:
    """The hand-written customers (ids 1 to 8 in a fresh database), for READMEs and manual tests."""
    return [
        DemoCustomer(
            document_type=spec.document_type.value,
            document_number=spec.document_number,
            full_name=f"{spec.first_name} {spec.last_name}",
            date_of_birth=spec.date_of_birth,
            phone=spec.phone,
            summary=spec.summary,
            loan_buckets=tuple(loan.expected_bucket for loan in spec.loans),
        )
        for spec in DEMO
    ]


def _at(day: date, hour: int = 10, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), LIMA)


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower().replace(" ", "")


def _round_to(value: float, step: int) -> Decimal:
    return D(int(value // step * step))


def _generated_loan(rng: random.Random, bucket: str, income: Decimal) -> LoanSpec:
    product = rng.choice(("PERSONAL", "PERSONAL", "CONVENIO", "PYME", "VEHICULAR"))
    if product == "VEHICULAR":
        principal, term = _round_to(rng.uniform(18000, 90000), 500), rng.choice((24, 36, 48, 60))
    elif product == "PYME":
        principal, term = _round_to(rng.uniform(3000, 40000), 500), rng.choice((6, 12, 18, 24, 36))
    else:
        cap = max(float(income) * 4, 1500.0)
        principal, term = _round_to(rng.uniform(1000, min(cap, 30000)), 100), rng.choice((6, 12, 18, 24, 36))
    if bucket == "paid_off":
        from_application = rng.random() < 0.5
        return LoanSpec(product, principal, term, term, -rng.randint(20, 300), from_application=from_application)
    if bucket == "current":
        return LoanSpec(product, principal, term, rng.randint(0, term - 1), due_offset=rng.randint(1, 20))
    low, high = {"1-30": (3, 27), "31-60": (34, 57), "61-120": (64, 117), ">120": (125, 400)}[bucket]
    days = rng.randint(low, high)
    paid = rng.randint(0, max(0, term // 2 - 1))
    partial = days > 8 and rng.random() < 0.35
    promises: Tuple[str, ...] = ()
    roll = rng.random()
    if partial and roll < 0.5:
        promises = ("kept",)
    elif days > 15 and roll < 0.6:
        promises = ("broken",)
    if rng.random() < 0.35:
        promises += ("pending",)
    plan = bucket in ("61-120", ">120") and rng.random() < 0.4
    return LoanSpec(product, principal, term, paid, -days, partial, promises, plan)


def _generated_customers(rng: random.Random, as_of: date) -> List[CustomerSpec]:
    used_documents = {spec.document_number for spec in DEMO}
    used_phones = {spec.phone for spec in DEMO}
    specs = []
    status_cycle = 0
    for index in range(GENERATED_CUSTOMERS):
        female = rng.random() < 0.5
        first = rng.choice(FIRST_NAMES_F if female else FIRST_NAMES_M)
        last = f"{rng.choice(SURNAMES)} {rng.choice(SURNAMES)}"
        document = f"{rng.randint(10_000_000, 79_999_999)}"
        while document in used_documents:
            document = f"{rng.randint(10_000_000, 79_999_999)}"
        used_documents.add(document)
        phone = f"+519{rng.randint(0, 99_999_999):08d}"
        while phone in used_phones:
            phone = f"+519{rng.randint(0, 99_999_999):08d}"
        used_phones.add(phone)
        age = rng.randint(23, 62)
        birth = date(as_of.year - age, rng.randint(1, 12), rng.randint(1, 28))
        income = _round_to(rng.uniform(1200, 12000), 50)
        employment = rng.choice(tuple(EmploymentType))
        shares = (0.85, 0.6, 0.7, 0.5, 0.9)
        consents = {channel: rng.random() < share for channel, share in zip(ConsentChannel, shares)}
        revoked = (_W,) if consents[_W] and rng.random() < 0.1 else ()
        profile = PROFILES[index % len(PROFILES)]
        loans: Tuple[LoanSpec, ...] = ()
        applications: List[ApplicationSpec] = []
        if profile in ("current", "1-30", "31-60", "61-120", ">120", "paid_off"):
            loans = (_generated_loan(rng, profile, income),)
        elif profile == "two_loans":
            loans = (
                _generated_loan(rng, "current", income),
                _generated_loan(rng, rng.choice(("paid_off", "1-30", "31-60")), income),
            )
        if profile == "application" or (loans and rng.random() < 0.3):
            status = OPEN_AND_CLOSED_STATUSES[status_cycle % len(OPEN_AND_CLOSED_STATUSES)]
            status_cycle += 1
            taken = {loan.product for loan in loans}
            product = rng.choice([code for code in ("PERSONAL", "CONVENIO", "PYME") if code not in taken])
            closed = status in (ApplicationStatus.REJECTED, ApplicationStatus.CANCELLED)
            days_ago = rng.randint(10, 120) if closed else rng.randint(2, 20)
            amount = _round_to(rng.uniform(3000, 25000), 500)
            applications.append(ApplicationSpec(product, amount, rng.choice((12, 24, 36)), status, days_ago))
        specs.append(
            CustomerSpec(
                document, first, last, birth, phone,
                f"{_ascii(first.split()[0])}.{_ascii(last.split()[0])}{index + 1}@example.com",
                income, employment, consents, revoked, loans, tuple(applications),
            )
        )
    return specs


def _loan_dates(spec: LoanSpec, as_of: date) -> Tuple[date, date]:
    """(disbursement day, due day of the first unpaid or last installment) for a loan spec."""
    anchor = as_of + timedelta(days=spec.due_offset)
    anchor = payment_day_on_or_after(anchor) if spec.due_offset > 0 else payment_day_on_or_before(anchor)
    number = spec.term if spec.paid_off else spec.installments_paid + 1
    first_due = add_months(anchor, -(number - 1))
    return add_months(first_due, -1), anchor


@dataclass
class _Context:
    """What every seeded row draws on: the policy's products, and a generator of repeatable codes kept apart
    from the data generator, so adding codes did not change the demo customers."""

    policy: CreditPolicy
    products: Dict[str, CreditProduct]
    codes: random.Random


def _seed_application(
    session: Session, context: _Context, customer: Customer, product: CreditProduct, spec: CustomerSpec,
    amount: Decimal, term: int, status: ApplicationStatus, start: datetime, end: Optional[datetime] = None,
) -> CreditApplication:
    """Create an application and walk it to ``status``; steps spread between ``start`` and ``end``.

    Applications that reached review have every required document, as the review note says.
    """
    application = ops.create_application(
        session, customer, product, amount, term, spec.monthly_income, spec.employment.value, start,
        code=ops.new_application_code(session, context.codes),
    )
    steps = PATH_TO[status]
    if ApplicationStatus.IN_REVIEW in steps:
        for document in context.policy.product(product.code).required_documents:
            application.documents.append(
                ApplicationDocument(
                    kind=document.code, filename=f"{document.code}.pdf", content_type="application/pdf",
                    media_id=f"seed-{application.code}-{document.code}", received_at=start,
                )
            )
    for position, target in enumerate(steps, start=1):
        if end is not None and position == len(steps):
            at = end
        else:
            at = start + timedelta(hours=8 * position)
        ops.transition_application(session, application, target, NOTES[target], at)
    return application


def _seed_loan(
    session: Session, rng: random.Random, context: _Context, customer: Customer, spec: CustomerSpec,
    loan_spec: LoanSpec, as_of: date, sequence: List[int],
) -> None:
    product = context.products[loan_spec.product]
    disbursed_on, anchor = _loan_dates(loan_spec, as_of)
    disbursed_at = _at(disbursed_on, 11)
    if loan_spec.from_application:
        application = _seed_application(
            session, context, customer, product, spec, loan_spec.principal, loan_spec.term,
            ApplicationStatus.DISBURSED,
            _at(disbursed_on - timedelta(days=4), 9), disbursed_at,
        )
        loan = application.loan
    else:
        loan = ops.create_loan(
            session, customer.id, product, loan_spec.principal, loan_spec.term, disbursed_on, disbursed_at
        )

    def pay(amount: Decimal, day: date) -> None:
        sequence[0] += 1
        paid_at = _at(day, rng.randint(8, 19), rng.randint(0, 59))
        channel = rng.choice(PAYMENT_CHANNELS)
        external_id = f"seed-{sequence[0]:05d}"
        payment = ops.new_payment(loan, amount, external_id, channel, PaymentSource.SEED, paid_at, paid_at)
        session.add(payment)
        ops.apply_payment(payment, loan, loan.installments, day)

    for installment in loan.installments[: loan_spec.installments_paid]:
        day = max(installment.due_date - timedelta(days=rng.randint(0, 5)), disbursed_on + timedelta(days=1))
        pay(installment.amount, min(day, as_of - timedelta(days=1)))
    if "kept" in loan_spec.promises:
        ops.create_promise(
            session, loan, _partial_amount(loan), anchor + timedelta(days=4), anchor + timedelta(days=1),
            _at(anchor + timedelta(days=1), 16),
        )
    if loan_spec.partial_payment:
        pay(_partial_amount(loan), anchor + timedelta(days=3))
    if "broken" in loan_spec.promises:
        promised = anchor + timedelta(days=12)
        ops.create_promise(
            session, loan, loan.installments[loan_spec.installments_paid].amount, promised,
            anchor + timedelta(days=7), _at(anchor + timedelta(days=7), 15),
        )
    if "pending" in loan_spec.promises:
        made = as_of - timedelta(days=2)
        state = ops.position(loan, made)
        ops.create_promise(
            session, loan, min(state.total_overdue, state.outstanding_balance), as_of + timedelta(days=5), made,
            _at(made, 12),
        )
    if loan_spec.plan:
        made = as_of - timedelta(days=1)
        total = ops.position(loan, made).total_overdue
        ops.create_payment_plan(
            session, loan, rng.choice((6, 12, 18)), _round_to(float(total) * 0.1, 10),
            _round_to(float(ops.position(loan, made).late_interest) * 0.5, 1), None, made, _at(made, 17),
        )
    ops.refresh_promises(session, loan, as_of, _at(as_of - timedelta(days=1), 23, 59))


def _partial_amount(loan: Loan) -> Decimal:
    """About 40 % of the oldest unpaid installment, in whole soles: leaves it unpaid but shows a payment."""
    oldest = next(item for item in loan.installments if item.paid_amount < item.amount)
    return D(int(oldest.amount * D("0.4")))


def _customer_since(spec: CustomerSpec, as_of: date, rng: random.Random) -> date:
    starts = [_loan_dates(loan, as_of)[0] - timedelta(days=5) for loan in spec.loans]
    starts += [as_of - timedelta(days=app.days_ago) for app in spec.applications]
    earliest = min(starts, default=as_of - timedelta(days=1))
    return earliest - timedelta(days=rng.randint(1, 400))


def seed(session: Session, as_of: date, rng_seed: int = SEED, policy: Optional[CreditPolicy] = None) -> None:
    """Insert the policy's products and the customers; the same ``as_of``, ``rng_seed`` and policy always give
    the same rows. Demo loans and applications use products that the default policy file defines."""
    rng = random.Random(rng_seed)
    policy = policy or load_policy()
    ops.sync_products(session, policy)
    products = {product.code: product for product in session.execute(select(CreditProduct)).scalars()}
    context = _Context(policy, products, random.Random(f"{rng_seed}:application-codes"))
    sequence = [0]
    for spec in (*DEMO, *_generated_customers(rng, as_of)):
        since = _customer_since(spec, as_of, rng)
        customer = Customer(
            document_type=spec.document_type.value, document_number=spec.document_number,
            first_name=spec.first_name, last_name=spec.last_name, date_of_birth=spec.date_of_birth,
            phone=spec.phone, email=spec.email, country="PE", created_at=_at(since, 9),
        )
        ops.add_customer(session, customer)
        for channel, granted in spec.consents.items():
            ops.record_consent(session, customer, channel, granted, "branch_onboarding", _at(since, 9, 5))
        for channel in spec.revoked:
            day = max(since, as_of - timedelta(days=rng.randint(2, 60)))
            ops.record_consent(session, customer, channel, False, "whatsapp_opt_out", _at(day, 18))
        for loan_spec in spec.loans:
            _seed_loan(session, rng, context, customer, spec, loan_spec, as_of, sequence)
        for app in spec.applications:
            start = _at(as_of - timedelta(days=app.days_ago), 10)
            product = products[app.product]
            _seed_application(session, context, customer, product, spec, app.amount, app.term, app.status, start)
    session.flush()


def seed_if_empty(engine: Engine, as_of: date, policy: Optional[CreditPolicy] = None) -> bool:
    """Create the tables and seed them when there is no customer yet; return whether it seeded."""
    Base.metadata.create_all(engine)
    with make_session_factory(engine)() as session:
        if session.execute(select(func.count(Customer.id))).scalar_one():
            return False
        seed(session, as_of, policy=policy)
        session.commit()
    return True


def demo_rows(customers: Sequence[DemoCustomer]) -> List[str]:
    """Markdown table for a README: ``python -m credia.core_banking.seed`` prints it."""
    rows = ["| document | name | date of birth | phone | what they have |", "| --- | --- | --- | --- | --- |"]
    rows += [
        f"| {c.document_type} {c.document_number} | {c.full_name} | {c.date_of_birth.isoformat()} | {c.phone} "
        f"| {c.summary} |"
        for c in customers
    ]
    return rows


def bureau_sample_rows() -> List[str]:
    """Markdown table of the new-customer DNIs per bureau rating, for the application journey."""
    rows = ["| DNI | bureau rating |", "| --- | --- |"]
    return rows + [f"| {dni} | {rating} |" for rating, dni in BUREAU_SAMPLE_DNIS.items()]


if __name__ == "__main__":
    print("\n".join([*demo_rows(demo_customers()), "", *bureau_sample_rows()]))
