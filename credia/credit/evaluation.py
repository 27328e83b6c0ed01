"""Pre-evaluation of a credit application against the lender's policy.

``pre_evaluate`` is a pure function of the request, the facts about the customer (bureau, arrears with the
lender, today) and the policy, so every outcome can be tested and explained. The order is fixed: what makes
a case ineligible declines it; then anything an advisor must look at refers it; only a clean case is checked
for affordability and gets an offer, or a computed counter-offer, or a decline when nothing fits.

Reasons carry a code for systems and a short Spanish text for the customer. They speak only of the product's
published requirements and of the customer's credit and income, never of who the customer is.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_FLOOR, Decimal
from typing import Any, Dict, List, Optional, Tuple

from credia.credit import maths
from credia.credit.policy import CreditPolicy, EmploymentType, Product
from credia.money import format_money, format_rate


class Outcome(str, enum.Enum):
    PRE_APPROVED = "pre_approved"
    COUNTER_OFFER = "counter_offer"
    REFERRED = "referred"
    DECLINED = "declined"


class OutOfRange(ValueError):
    """Amount or term outside the product's limits: the request is invalid, not a credit decision."""


@dataclass(frozen=True)
class CreditRequest:
    """What the applicant asks for and declares."""

    product_code: str
    amount: Decimal
    term_months: int
    monthly_income: Decimal
    employment_type: EmploymentType
    employment_tenure_months: int
    date_of_birth: date


@dataclass(frozen=True)
class CreditFacts:
    """What the lender knows on ``today``: the bureau's answer (None when the bureau has no record) and the
    worst days past due on the customer's loans with the lender."""

    today: date
    bureau_rating: Optional[str] = None
    bureau_score: Optional[int] = None
    days_past_due: int = 0


@dataclass(frozen=True)
class Reason:
    code: str
    message: str
    alternative: Optional[str] = None

    def as_json(self) -> Dict[str, Any]:
        return {"code": self.code, "message": self.message, "alternative": self.alternative}


@dataclass(frozen=True)
class Offer:
    """A loan the customer can take as it stands, with the figures SBS requires next to the installment."""

    product_code: str
    product_name: str
    currency: str
    amount: Decimal
    term_months: int
    tea: Decimal
    tcea: Decimal
    installment: Decimal
    origination_fee: Decimal
    net_disbursed: Decimal
    total_interest: Decimal
    total_insurance: Decimal
    total_to_pay: Decimal
    first_due_date: date
    last_due_date: date

    def as_json(self) -> Dict[str, Any]:
        """Money and rates as decimal strings, dates as ISO 8601: what is stored and sent."""
        return {
            name: value.isoformat() if isinstance(value, date) else str(value) if isinstance(value, Decimal) else value
            for name, value in vars(self).items()
        }


@dataclass(frozen=True)
class Evaluation:
    outcome: Outcome
    reasons: Tuple[Reason, ...] = ()
    offer: Optional[Offer] = None


def check_range(product: Product, amount: Decimal, term_months: int) -> None:
    """Refuse an amount or term the product does not offer, saying the limits."""
    if not product.amount.min <= amount <= product.amount.max:
        raise OutOfRange(
            f"amount must be between {format_money(product.amount.min, product.currency)} and "
            f"{format_money(product.amount.max, product.currency)} for {product.code}"
        )
    if not product.term_months.min <= term_months <= product.term_months.max:
        raise OutOfRange(
            f"term must be between {product.term_months.min} and {product.term_months.max} months for {product.code}"
        )


def make_offer(product: Product, amount: Decimal, term_months: int, today: date) -> Offer:
    """The full offer for a loan disbursed today; also what a simulation shows."""
    check_range(product, amount, term_months)
    quote = maths.quote(
        amount, product.tea, term_months, today, product.fees.origination, product.fees.insurance_monthly
    )
    return Offer(
        product_code=product.code,
        product_name=product.name,
        currency=product.currency,
        amount=quote.amount,
        term_months=term_months,
        tea=product.tea,
        tcea=quote.tcea,
        installment=quote.installment,
        origination_fee=quote.origination_fee,
        net_disbursed=quote.net_disbursed,
        total_interest=quote.total_interest,
        total_insurance=quote.total_insurance,
        total_to_pay=quote.total_to_pay,
        first_due_date=quote.first_due_date,
        last_due_date=quote.last_due_date,
    )


def age_on(born: date, day: date) -> int:
    """Completed years on ``day``."""
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


def age_at_maturity(born: date, today: date, term_months: int) -> int:
    """Completed years on the day the last installment of a loan disbursed today falls due."""
    return age_on(born, maths.add_months(maths.first_due_date(today), term_months - 1))


def max_installment(product: Product, monthly_income: Decimal) -> Decimal:
    """The largest monthly installment the policy lets this income carry."""
    return maths.to_money(monthly_income * product.installment_to_income.ratio_for(monthly_income))


def pre_evaluate(request: CreditRequest, facts: CreditFacts, policy: CreditPolicy) -> Evaluation:
    """Decide a request: declined, referred to an advisor, pre-approved, or a counter-offer.

    Raises ``UnknownProduct`` for a product not in the policy and ``OutOfRange`` for an amount or term the
    product does not offer.
    """
    product = policy.product(request.product_code)
    check_range(product, request.amount, request.term_months)
    declines = _ineligible(request, facts, product, policy) + _bad_record(facts, policy)
    if declines:
        return Evaluation(Outcome.DECLINED, tuple(declines))
    referrals = _needs_advisor(request, facts, product, policy)
    if referrals:
        return Evaluation(Outcome.REFERRED, tuple(referrals))
    cap = max_installment(product, request.monthly_income)
    offer = make_offer(product, request.amount, request.term_months, facts.today)
    if offer.installment <= cap:
        return Evaluation(Outcome.PRE_APPROVED, (), offer)
    counter = _counter_offer(request, facts, product, policy, cap)
    if counter is not None:
        code, changed = ("amount_adjusted", "monto") if counter.amount != request.amount else ("term_extended", "plazo")
        reason = Reason(
            code,
            f"La cuota de lo solicitado supera la cuota máxima que su ingreso permite "
            f"({format_money(cap, product.currency)} al mes); por eso le proponemos otro {changed}.",
        )
        return Evaluation(Outcome.COUNTER_OFFER, (reason,), counter)
    return Evaluation(Outcome.DECLINED, (_capacity_reason(request, product, policy, cap),))


# --- the rules ---------------------------------------------------------------------------------------------


def _ineligible(request: CreditRequest, facts: CreditFacts, product: Product, policy: CreditPolicy) -> List[Reason]:
    """The product's published requirements: employment type, minimum income, age limits."""
    reasons = []
    if request.employment_type not in product.employment:
        reasons.append(
            Reason(
                "employment_type_not_eligible",
                f"El {product.name} no está disponible para su tipo de actividad laboral.",
                _other_products(request, facts, product, policy),
            )
        )
    if request.monthly_income < product.min_monthly_income:
        reasons.append(
            Reason(
                "income_below_minimum",
                f"El {product.name} requiere un ingreso neto mensual desde "
                f"{format_money(product.min_monthly_income, product.currency)}.",
                _other_products(request, facts, product, policy),
            )
        )
    if age_on(request.date_of_birth, facts.today) < product.age.min:
        reasons.append(
            Reason(
                "age_requirement",
                f"El {product.name} se otorga desde los {product.age.min} años.",
                f"Puede volver a solicitarlo desde los {product.age.min} años.",
            )
        )
    elif age_at_maturity(request.date_of_birth, facts.today, request.term_months) > product.age.max_at_maturity:
        longest = _longest_term_within_age(request, facts, product)
        reasons.append(
            Reason(
                "term_beyond_age_limit",
                "El plazo solicitado supera el plazo máximo que este producto permite en su caso.",
                f"Puede solicitarlo con un plazo de hasta {longest} meses."
                if longest is not None
                else "Un asesor puede orientarle sobre otras opciones.",
            )
        )
    return reasons


def _bad_record(facts: CreditFacts, policy: CreditPolicy) -> List[Reason]:
    """Knock-outs from the customer's credit record: bureau rating, serious arrears with the lender."""
    reasons = []
    if facts.bureau_rating in policy.rules.bureau.decline_ratings:
        reasons.append(
            Reason(
                "bureau_rating",
                "Por ahora no podemos aprobar su solicitud por su calificación en el sistema financiero.",
                "Puede volver a solicitarlo cuando su calificación mejore; puede consultar gratis su reporte de "
                "deudas en la SBS.",
            )
        )
    if facts.days_past_due > policy.rules.arrears_with_us.decline_above_days:
        reasons.append(
            Reason(
                "arrears_with_lender",
                f"Tiene cuotas con más de {policy.rules.arrears_with_us.decline_above_days} días de atraso en sus "
                "créditos con nosotros.",
                "Cuando se ponga al día puede volver a solicitarlo; también podemos ayudarle con un plan de pagos.",
            )
        )
    return reasons


def _needs_advisor(
    request: CreditRequest, facts: CreditFacts, product: Product, policy: CreditPolicy
) -> List[Reason]:
    """What an automatic decision should not settle: a watch-list rating, recent arrears, large amounts,
    a short time in the current job."""
    rules = policy.rules
    reasons = []
    if facts.bureau_rating in rules.bureau.refer_ratings:
        reasons.append(
            Reason("bureau_rating_review", "Un asesor revisará su calificación en el sistema financiero.")
        )
    elif (
        rules.bureau.refer_score_below is not None
        and facts.bureau_score is not None
        and facts.bureau_score < rules.bureau.refer_score_below
    ):
        reasons.append(Reason("bureau_score_review", "Un asesor revisará su historial crediticio."))
    if facts.days_past_due > rules.arrears_with_us.refer_above_days:
        reasons.append(
            Reason("arrears_review", "Tiene una cuota vencida con nosotros; un asesor revisará su solicitud.")
        )
    if request.amount > rules.refer_amount_above:
        reasons.append(
            Reason(
                "high_value",
                f"Los montos mayores a {format_money(rules.refer_amount_above, product.currency)} los revisa "
                "un asesor.",
            )
        )
    minimum_tenure = product.employment.get(request.employment_type, 0)
    if request.employment_tenure_months < minimum_tenure:
        reasons.append(
            Reason(
                "short_tenure",
                f"El {product.name} pide al menos {minimum_tenure} meses en su trabajo o negocio actual; un "
                "asesor revisará su caso.",
            )
        )
    return reasons


def _counter_offer(
    request: CreditRequest, facts: CreditFacts, product: Product, policy: CreditPolicy, cap: Decimal
) -> Optional[Offer]:
    """The affordable offer closest to the request: less money at the same term, or the same money over the
    shortest longer term, whichever changes the request by the smaller share (a tie keeps the amount)."""
    rules = policy.rules.counter_offer
    floor = max(product.amount.min, rules.min_amount, request.amount * rules.min_share_of_requested)
    amount = _largest_affordable_amount(product, request.term_months, cap, request.amount, rules.round_down_to)
    term = _shortest_affordable_term(request, facts, product, policy, cap)
    candidates = []
    if amount is not None and amount >= floor:
        candidates.append(((request.amount - amount) / request.amount, 1, amount, request.term_months))
    if term is not None:
        candidates.append((Decimal(term - request.term_months) / request.term_months, 0, request.amount, term))
    if not candidates:
        return None
    _change, _tie_break, best_amount, best_term = min(candidates)
    return make_offer(product, best_amount, best_term, facts.today)


def _largest_affordable_amount(
    product: Product, term: int, cap: Decimal, ceiling: Decimal, step: Decimal
) -> Optional[Decimal]:
    """The largest multiple of ``step`` up to ``ceiling`` whose installment fits ``cap``, within the product.

    The installment is linear in the amount, so ``cap / factor`` is the bound; rounding of the installment to
    cents can push it a step over, hence the check.
    """
    factor = maths.installment_factor(product.tea, term, product.fees.insurance_monthly)
    amount = (min(cap / factor, ceiling) / step).to_integral_value(rounding=ROUND_FLOOR) * step
    while amount >= product.amount.min:
        if maths.french_installment(amount, product.tea, term, product.fees.insurance_monthly) <= cap:
            return maths.to_money(amount)
        amount -= step
    return None


def _shortest_affordable_term(
    request: CreditRequest, facts: CreditFacts, product: Product, policy: CreditPolicy, cap: Decimal
) -> Optional[int]:
    longest = min(product.term_months.max, request.term_months + policy.rules.counter_offer.max_term_extension_months)
    for term in range(request.term_months + 1, longest + 1):
        if age_at_maturity(request.date_of_birth, facts.today, term) > product.age.max_at_maturity:
            return None
        installment = maths.french_installment(request.amount, product.tea, term, product.fees.insurance_monthly)
        if installment <= cap:
            return term
    return None


def _longest_term_within_age(request: CreditRequest, facts: CreditFacts, product: Product) -> Optional[int]:
    for term in range(request.term_months - 1, product.term_months.min - 1, -1):
        if age_at_maturity(request.date_of_birth, facts.today, term) <= product.age.max_at_maturity:
            return term
    return None


def _capacity_reason(request: CreditRequest, product: Product, policy: CreditPolicy, cap: Decimal) -> Reason:
    """Nothing close enough is affordable: say the installment the income allows and what would fit."""
    rules = policy.rules.counter_offer
    affordable = _largest_affordable_amount(product, request.term_months, cap, request.amount, rules.round_down_to)
    if affordable is not None and affordable >= rules.min_amount:
        alternative = (
            f"Con su ingreso actual puede solicitar hasta {format_money(affordable, product.currency)} a "
            f"{request.term_months} meses."
        )
    else:
        alternative = "Puede volver a solicitarlo cuando su ingreso sea mayor, o consultar otro producto."
    ratio = product.installment_to_income.ratio_for(request.monthly_income)
    return Reason(
        "payment_capacity",
        f"La cuota superaría el {format_rate(ratio)} de su ingreso mensual, que es lo máximo que podemos "
        f"aprobar ({format_money(cap, product.currency)} al mes).",
        alternative,
    )


def _other_products(request: CreditRequest, facts: CreditFacts, product: Product, policy: CreditPolicy) -> str:
    """Products whose employment, income and age requirements the applicant meets, as a Spanish suggestion."""
    fitting = [
        other.name
        for other in policy.products
        if other.code != product.code
        and request.employment_type in other.employment
        and request.monthly_income >= other.min_monthly_income
        and age_on(request.date_of_birth, facts.today) >= other.age.min
    ]
    if not fitting:
        return "Puede volver a solicitarlo cuando su situación cambie, o conversar con un asesor."
    return f"Puede consultar otras opciones: {', '.join(fitting)}."
