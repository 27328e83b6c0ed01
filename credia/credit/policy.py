"""The lender's credit policy: products and pre-evaluation rules, read from a YAML file a risk analyst edits.

The file is validated completely when it is loaded, so a typo stops the service at start-up with a message
that names the file, the product and the field, instead of surfacing as a wrong offer later. Rates are
written as percentages ("45 %") because a bare 0.45 or 45 is too easy to get wrong by a factor of 100.
"""

from __future__ import annotations

import enum
import unicodedata
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import yaml
from pydantic import BaseModel, Extra, ValidationError, conint, constr, root_validator, validator

from credia import settings
from credia.money import parse_decimal

HUNDRED = Decimal(100)
ONE = Decimal(1)


class PolicyError(Exception):
    """The policy file cannot be used; the message says which file, product and field, and why."""


class UnknownProduct(KeyError):
    """No product with this code in the policy."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code

    def __str__(self) -> str:
        return f"product {self.code!r} not found"


class EmploymentType(str, enum.Enum):
    EMPLOYEE = "employee"
    SELF_EMPLOYED = "self_employed"
    BUSINESS_OWNER = "business_owner"
    RETIRED = "retired"


# SBS debtor categories, best first (by days past due: Normal ≤ 8, CPP 9–30, Deficiente 31–60, Dudoso 61–120,
# Pérdida > 120).
BUREAU_RATINGS: Tuple[str, ...] = ("Normal", "CPP", "Deficiente", "Dudoso", "Pérdida")


def _fold(text: str) -> str:
    """Lower case without accents, so "Perdida" in the file means "Pérdida"."""
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)).casefold()


_RATINGS_BY_FOLD = {_fold(rating): rating for rating in BUREAU_RATINGS}


class Percent(Decimal):
    """A rate written as a percentage in the file ("45 %", "0.077 %"), held as a fraction (0.45, 0.00077)."""

    @classmethod
    def __get_validators__(cls) -> Iterator[Callable[[Any], Decimal]]:
        yield cls.validate

    @classmethod
    def validate(cls, value: Any) -> Decimal:
        if not isinstance(value, str) or not value.strip().endswith("%"):
            raise ValueError(f'write it as a percentage such as "45 %" (found {value!r})')
        number = parse_decimal(value.strip()[:-1])
        if number < 0:
            raise ValueError("must not be negative")
        return number / HUNDRED


class Amount(Decimal):
    """An amount of money in the product's currency, zero or more, with at most two decimals."""

    @classmethod
    def __get_validators__(cls) -> Iterator[Callable[[Any], Decimal]]:
        yield cls.validate

    @classmethod
    def validate(cls, value: Any) -> Decimal:
        amount = parse_decimal(value)
        if amount < 0:
            raise ValueError("must not be negative")
        if amount != amount.quantize(Decimal("0.01")):
            raise ValueError("must have at most 2 decimal places")
        return amount.quantize(Decimal("0.01"))


class PolicyModel(BaseModel):
    class Config:
        extra = Extra.forbid  # a misspelt key is an error, never a silently ignored rule
        allow_mutation = False


def _at_most_one(name: str) -> Callable[[Any, Decimal], Decimal]:
    def check(cls: Any, value: Decimal) -> Decimal:
        if value > ONE:
            raise ValueError(f"{name} must not exceed 100 %")
        return value

    return check


def _ordered(low: str, high: str, strict: bool = False) -> Callable[[Any, Dict[str, Any]], Dict[str, Any]]:
    """A root check that ``low`` is not above ``high`` (strict: is below it); skipped when either failed."""

    def check(cls: Any, values: Dict[str, Any]) -> Dict[str, Any]:
        first, second = values.get(low), values.get(high)
        if first is None or second is None:
            return values
        if strict and first >= second:
            raise ValueError(f"{low} ({first}) must be less than {high} ({second})")
        if not strict and first > second:
            raise ValueError(f"{low} ({first}) must not be greater than {high} ({second})")
        return values

    return check


class AmountRange(PolicyModel):
    min: Amount
    max: Amount

    _check_order = root_validator(allow_reuse=True, skip_on_failure=True)(_ordered("min", "max"))

    @validator("min")
    def _positive(cls, value: Decimal) -> Decimal:
        if value <= 0:
            raise ValueError("must be greater than zero")
        return value


class TermRange(PolicyModel):
    min: conint(ge=1, le=360)  # type: ignore[valid-type]
    max: conint(ge=1, le=360)  # type: ignore[valid-type]

    _check_order = root_validator(allow_reuse=True, skip_on_failure=True)(_ordered("min", "max"))


class Fees(PolicyModel):
    origination: Percent = Decimal(0)
    insurance_monthly: Percent = Decimal(0)

    @validator("origination", "insurance_monthly")
    def _below_hundred(cls, value: Decimal) -> Decimal:
        if value >= ONE:
            raise ValueError("must be less than 100 %")
        return value


class AgeLimits(PolicyModel):
    min: conint(ge=18, le=100)  # type: ignore[valid-type]
    max_at_maturity: conint(ge=18, le=110)  # type: ignore[valid-type]

    _check_order = root_validator(allow_reuse=True, skip_on_failure=True)(_ordered("min", "max_at_maturity", True))


class LowIncomeBand(PolicyModel):
    below: Amount
    ratio: Percent

    _ratio = validator("ratio", allow_reuse=True)(_at_most_one("ratio"))


class HighIncomeBand(PolicyModel):
    above: Amount
    ratio: Percent

    _ratio = validator("ratio", allow_reuse=True)(_at_most_one("ratio"))


class InstallmentToIncome(PolicyModel):
    default: Percent
    low_income: Optional[LowIncomeBand] = None
    high_income: Optional[HighIncomeBand] = None

    _ratio = validator("default", allow_reuse=True)(_at_most_one("default"))

    @validator("default")
    def _positive(cls, value: Decimal) -> Decimal:
        if value == 0:
            raise ValueError("must be greater than 0 %")
        return value

    @root_validator(skip_on_failure=True)
    def _bands_apart(cls, values: Dict[str, Any]) -> Dict[str, Any]:
        low, high = values.get("low_income"), values.get("high_income")
        if low is not None and high is not None and low.below > high.above:
            raise ValueError(
                f"low_income.below ({low.below}) must not be greater than high_income.above ({high.above})"
            )
        return values

    def ratio_for(self, income: Decimal) -> Decimal:
        """The largest installment ÷ income for a net monthly income: low band, high band or the default."""
        if self.low_income is not None and income < self.low_income.below:
            return self.low_income.ratio
        if self.high_income is not None and income > self.high_income.above:
            return self.high_income.ratio
        return self.default


class RequiredDocument(PolicyModel):
    code: constr(regex=r"^[a-z][a-z0-9_]{0,39}$")  # type: ignore[valid-type]
    label: constr(strip_whitespace=True, min_length=1, max_length=160)  # type: ignore[valid-type]


class Product(PolicyModel):
    code: constr(regex=r"^[A-Z][A-Z0-9_]{1,19}$")  # type: ignore[valid-type]
    name: constr(strip_whitespace=True, min_length=1, max_length=80)  # type: ignore[valid-type]
    description: constr(strip_whitespace=True, max_length=500) = ""  # type: ignore[valid-type]
    currency: constr(regex=r"^[A-Z]{3}$")  # type: ignore[valid-type]
    tea: Percent
    moratory_tea: Percent
    amount: AmountRange
    term_months: TermRange
    fees: Fees = Fees()
    min_monthly_income: Amount
    age: AgeLimits
    employment: Dict[EmploymentType, conint(ge=0, le=600)]  # type: ignore[valid-type]
    installment_to_income: InstallmentToIncome
    required_documents: List[RequiredDocument]
    requirements: List[constr(strip_whitespace=True, min_length=1, max_length=200)] = []  # type: ignore[valid-type]

    @validator("employment", pre=True)
    def _known_employment(cls, value: Any) -> Any:
        if not isinstance(value, dict) or not value:
            raise ValueError("list at least one employment type with its minimum tenure in months")
        known = {member.value for member in EmploymentType}
        for key in value:
            if key not in known:
                raise ValueError(f"unknown employment type {key!r} (known: {', '.join(sorted(known))})")
        return value

    @validator("required_documents")
    def _unique_documents(cls, value: List[RequiredDocument]) -> List[RequiredDocument]:
        if not value:
            raise ValueError("list at least one document")
        codes = [document.code for document in value]
        duplicates = sorted({code for code in codes if codes.count(code) > 1})
        if duplicates:
            raise ValueError(f"document code {duplicates[0]!r} appears more than once")
        return value


class BureauRules(PolicyModel):
    decline_ratings: List[str]
    refer_ratings: List[str]
    refer_score_below: Optional[conint(ge=0, le=1000)] = None  # type: ignore[valid-type]

    @validator("decline_ratings", "refer_ratings", each_item=True)
    def _known_rating(cls, value: str) -> str:
        rating = _RATINGS_BY_FOLD.get(_fold(str(value)))
        if rating is None:
            raise ValueError(f"unknown bureau rating {value!r} (known: {', '.join(BUREAU_RATINGS)})")
        return rating

    @root_validator(skip_on_failure=True)
    def _disjoint(cls, values: Dict[str, Any]) -> Dict[str, Any]:
        both = sorted(set(values["decline_ratings"]) & set(values["refer_ratings"]))
        if both:
            raise ValueError(f"rating {both[0]!r} cannot both decline and refer")
        return values


class ArrearsRules(PolicyModel):
    refer_above_days: conint(ge=0, le=3650)  # type: ignore[valid-type]
    decline_above_days: conint(ge=0, le=3650)  # type: ignore[valid-type]

    _check_order = root_validator(allow_reuse=True, skip_on_failure=True)(
        _ordered("refer_above_days", "decline_above_days")
    )


class CounterOfferRules(PolicyModel):
    max_term_extension_months: conint(ge=0, le=120)  # type: ignore[valid-type]
    min_amount: Amount
    min_share_of_requested: Percent
    round_down_to: Amount

    _share = validator("min_share_of_requested", allow_reuse=True)(_at_most_one("min_share_of_requested"))

    @validator("round_down_to")
    def _positive(cls, value: Decimal) -> Decimal:
        if value <= 0:
            raise ValueError("must be greater than zero")
        return value


class Rules(PolicyModel):
    bureau: BureauRules
    arrears_with_us: ArrearsRules
    refer_amount_above: Amount
    counter_offer: CounterOfferRules


class CreditPolicy(PolicyModel):
    products: List[Product]
    rules: Rules

    @validator("products")
    def _unique_products(cls, value: List[Product]) -> List[Product]:
        if not value:
            raise ValueError("list at least one product")
        codes = [product.code for product in value]
        duplicates = sorted({code for code in codes if codes.count(code) > 1})
        if duplicates:
            raise ValueError(f"product code {duplicates[0]!r} appears more than once")
        currencies = sorted({product.currency for product in value})
        if len(currencies) > 1:
            raise ValueError(
                f"all products must share one currency, because the global amounts apply to all (found "
                f"{', '.join(currencies)})"
            )
        return value

    def product(self, code: str) -> Product:
        wanted = code.strip().upper()
        for product in self.products:
            if product.code == wanted:
                return product
        raise UnknownProduct(code)


class _StrictLoader(yaml.SafeLoader):
    """YAML that refuses a key written twice: PyYAML would silently keep the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> Dict[Any, Any]:
        seen = set()
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice in the same section", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_policy_file(path: Path, what: str, variable: str) -> Any:
    """The parsed YAML of a policy file; ``what`` names the policy and ``variable`` the setting that moves it,
    in the messages. Shared by every policy file so that each is read, and refused, the same way."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError(f"{path}: {what} file not found (set {variable})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{path}: cannot read the {what} ({exc})") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise PolicyError(f"{path}: not valid YAML{where}: {problem}") from None


def load_policy(path: Union[Path, str, None] = None) -> CreditPolicy:
    """Read and validate the policy at ``path`` (default: ``CREDIT_POLICY_PATH`` or ``policies/credit.yml``)."""
    path = Path(path) if path is not None else settings.credit_policy_path()
    return parse_policy(read_policy_file(path, "credit policy", "CREDIT_POLICY_PATH"), str(path))


def parse_policy(data: Any, source: str = "credit policy") -> CreditPolicy:
    """Validate already-parsed policy data; ``source`` names it in error messages."""
    if not isinstance(data, dict):
        raise PolicyError(f"{source}: expected the sections 'products' and 'rules' at the top of the file")
    try:
        return CreditPolicy.parse_obj(data)
    except ValidationError as exc:
        problems = [_describe(error, data) for error in exc.errors()]
        raise PolicyError(f"{source}: " + "; ".join(problems)) from None


def _describe(error: Dict[str, Any], data: Dict[str, Any]) -> str:
    """One error as "product PERSONAL, field amount: min (...) must not be greater than max (...)"."""
    loc: Sequence[Any] = [part for part in error["loc"] if part != "__root__"]
    where = []
    if len(loc) >= 2 and loc[0] == "products" and isinstance(loc[1], int):
        where.append(f"product {_product_name(data, loc[1])}")
        loc = loc[2:]
    if loc:
        where.append("field " + ".".join(str(part) for part in loc))
    message = "missing" if error["type"] == "value_error.missing" else error["msg"]
    return f"{', '.join(where)}: {message}" if where else message


def _product_name(data: Dict[str, Any], index: int) -> str:
    products = data.get("products")
    item = products[index] if isinstance(products, list) and index < len(products) else None
    code = item.get("code") if isinstance(item, dict) else None
    return str(code) if code else f"#{index + 1}"
