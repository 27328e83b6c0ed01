"""The lender's collections policy: identity-verification limits and the negotiation matrix by days-past-due
bucket, read from a YAML file the operations team edits.

Like the credit policy (``credia.credit.policy``), the file is validated completely when it is loaded, so a
typo stops core banking at start-up with a message that names the file, the bucket and the field, instead of
surfacing as a wrong offer to a customer. Rates are fractions written in quotes ("0.10" is 10 %).
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Union

from pydantic import Field, StrictBool, ValidationError, conint, validator

from credia import settings
from credia.credit.policy import Amount, PolicyError, PolicyModel, read_policy_file
from credia.money import parse_decimal

# The overdue buckets of ``credia.core_banking.loans.delinquency_bucket``; a loan that is current has none.
BUCKETS = ("1-30", "31-60", "61-120", ">120")
# Sanity bounds of the system of record (``credia.core_banking.operations``): plans and promises beyond them
# are refused whatever the policy says, so the policy may not promise more.
MAX_PLAN_INSTALLMENTS = 36
MAX_PROMISE_DAYS = 30
ONE = Decimal(1)


class UnknownBucket(KeyError):
    """No rules for this bucket: the loan is current, or the name is not a bucket."""

    def __init__(self, bucket: str) -> None:
        super().__init__(bucket)
        self.bucket = bucket

    def __str__(self) -> str:
        return f"no collections rules for bucket {self.bucket!r} (buckets: {', '.join(BUCKETS)})"


class Fraction(Decimal):
    """A share of the debt written as a quoted decimal fraction ("0.10" is 10 %), from 0 to 1."""

    @classmethod
    def __get_validators__(cls) -> Iterator[Callable[[Any], Decimal]]:
        yield cls.validate

    @classmethod
    def validate(cls, value: Any) -> Decimal:
        if not isinstance(value, str):
            raise ValueError(f'write it as a fraction in quotes, such as "0.10" for 10 % (found {value!r})')
        number = parse_decimal(value)
        if number < 0:
            raise ValueError("must not be negative")
        if number > ONE:
            raise ValueError(f'must be a fraction from "0" to "1" ("0.10" is 10 %), found "{value}"')
        return number


def _below_one(cls: Any, value: Decimal) -> Decimal:
    if value >= ONE:
        raise ValueError("must be less than 1 (100 % of the debt)")
    return value


class VerificationRules(PolicyModel):
    max_failures: conint(ge=1, le=10)  # type: ignore[valid-type]
    lock_minutes: conint(ge=1, le=1440)  # type: ignore[valid-type]
    code_ttl_minutes: conint(ge=1, le=60)  # type: ignore[valid-type]
    code_length: conint(ge=4, le=10)  # type: ignore[valid-type]


class BucketRules(PolicyModel):
    """What may be agreed on a loan in one days-past-due bucket."""

    max_installments: conint(ge=1, le=MAX_PLAN_INSTALLMENTS)  # type: ignore[valid-type]
    offered_installments: List[conint(ge=1, le=MAX_PLAN_INSTALLMENTS)]  # type: ignore[valid-type]
    min_down_payment_rate: Fraction
    min_installment_amount: Amount
    max_settlement_discount_rate: Fraction
    offer_validity_days: conint(ge=1, le=60)  # type: ignore[valid-type]
    promise_max_days: conint(ge=0, le=MAX_PROMISE_DAYS)  # type: ignore[valid-type]
    promise_min_rate: Fraction
    # Required but nullable: the file must say "no amount limit" on purpose.
    human_approval_above: Optional[Amount] = Field(...)
    human_approval_always: StrictBool

    _below_one = validator("min_down_payment_rate", "max_settlement_discount_rate", allow_reuse=True)(_below_one)

    @validator("min_installment_amount")
    def _positive(cls, value: Decimal) -> Decimal:
        if value <= 0:
            raise ValueError("must be greater than zero")
        return value

    @validator("offered_installments")
    def _options_within_maximum(cls, value: List[int], values: Dict[str, Any]) -> List[int]:
        if not value:
            raise ValueError("list at least one number of installments")
        duplicates = sorted({count for count in value if value.count(count) > 1})
        if duplicates:
            raise ValueError(f"{duplicates[0]} appears more than once")
        maximum = values.get("max_installments")
        beyond = [count for count in value if maximum is not None and count > maximum]
        if beyond:
            raise ValueError(f"{beyond[0]} is more than max_installments ({maximum})")
        return sorted(value)


class CollectionsPolicy(PolicyModel):
    verification: VerificationRules
    buckets: Dict[str, BucketRules]

    @validator("buckets", pre=True)
    def _known_buckets(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            raise ValueError(f"give one section per bucket: {', '.join(BUCKETS)}")
        unknown = [str(key) for key in value if key not in BUCKETS]
        if unknown:
            raise ValueError(f"unknown bucket {unknown[0]!r} (buckets: {', '.join(BUCKETS)})")
        missing = [bucket for bucket in BUCKETS if bucket not in value]
        if missing:
            raise ValueError(f"bucket {missing[0]!r} is missing (every bucket needs rules: {', '.join(BUCKETS)})")
        return value

    def bucket(self, name: str) -> BucketRules:
        try:
            return self.buckets[name]
        except KeyError:
            raise UnknownBucket(name) from None


def load_policy(path: Union[Path, str, None] = None) -> CollectionsPolicy:
    """Read and validate the policy at ``path`` (default: ``CREDIA_COLLECTIONS_POLICY`` or
    ``policies/collections.yml``); raise ``PolicyError`` saying what is wrong and where."""
    path = Path(path) if path is not None else settings.collections_policy_path()
    return parse_policy(read_policy_file(path, "collections policy", "CREDIA_COLLECTIONS_POLICY"), str(path))


def parse_policy(data: Any, source: str = "collections policy") -> CollectionsPolicy:
    """Validate already-parsed policy data; ``source`` names it in error messages."""
    if not isinstance(data, dict):
        raise PolicyError(f"{source}: expected the sections 'verification' and 'buckets' at the top of the file")
    try:
        return CollectionsPolicy.parse_obj(data)
    except ValidationError as exc:
        raise PolicyError(f"{source}: " + "; ".join(_describe(error) for error in exc.errors())) from None


def _describe(error: Dict[str, Any]) -> str:
    """One error as "bucket 31-60, field offered_installments: 24 is more than max_installments (6)"."""
    loc: Sequence[Any] = [part for part in error["loc"] if part != "__root__"]
    where = []
    if len(loc) >= 2 and loc[0] == "buckets":
        where.append(f"bucket {loc[1]}")
        loc = loc[2:]
    if loc:
        where.append("field " + ".".join(str(part) for part in loc))
    message = "missing" if error["type"] == "value_error.missing" else error["msg"]
    return f"{', '.join(where)}: {message}" if where else message
