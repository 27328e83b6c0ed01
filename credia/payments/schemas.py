"""Request and response bodies of the payments API (pydantic v1).

Money travels as a decimal string ("123.45") so no client ever rounds it through a float; on input a JSON
number is accepted too, read through its shortest text form.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from pydantic import BaseModel, Extra, Field, conint, constr, validator

from credia.money import parse_decimal
from credia.payments.models import DeliveryStatus, LinkStatus


@dataclass(frozen=True)
class Currency:
    """What the service accepts per currency; the maximum is about PEN 1,000,000 in each currency."""

    code: str
    minor_units: int
    max_amount: Decimal

    @property
    def quantum(self) -> Decimal:
        return Decimal(1).scaleb(-self.minor_units)


CURRENCIES: Dict[str, Currency] = {
    currency.code: currency
    for currency in (
        Currency("PEN", 2, Decimal("1000000")),
        Currency("USD", 2, Decimal("300000")),
        Currency("MXN", 2, Decimal("5000000")),
        Currency("COP", 2, Decimal("1000000000")),
        # The Chilean peso has no minor unit in use (ISO 4217 exponent 0).
        Currency("CLP", 0, Decimal("250000000")),
    )
}
DEFAULT_CURRENCY = "PEN"
DEFAULT_EXPIRES_IN_MINUTES = 60 * 24
MAX_EXPIRES_IN_MINUTES = 60 * 24 * 30
MAX_METADATA_KEYS = 10


def format_amount(amount: Decimal, currency: str) -> str:
    """Serialise money with exactly the currency's minor units ("150.00"; "1500" for CLP)."""
    return str(amount.quantize(CURRENCIES[currency].quantum))


if TYPE_CHECKING:
    Identifier = str
    MetadataKey = str
    MetadataValue = str
    ShortText = str
    ExpiryMinutes = int
else:
    Identifier = constr(strip_whitespace=True, min_length=1, max_length=64)
    MetadataKey = constr(strip_whitespace=True, min_length=1, max_length=40)
    MetadataValue = constr(max_length=200)
    ShortText = constr(strip_whitespace=True, max_length=140)
    ExpiryMinutes = conint(ge=1, le=MAX_EXPIRES_IN_MINUTES)


class LinkCreate(BaseModel):
    """Body of ``POST /links``; ``currency`` is declared first so the amount is checked against it."""

    currency: str = Field(DEFAULT_CURRENCY, description="ISO 4217 code: " + ", ".join(CURRENCIES), example="PEN")
    amount: Decimal = Field(
        ...,
        description="Positive amount as a decimal string (or number) with at most the currency's minor units.",
        example="150.00",
    )
    reference: Identifier = Field(..., description="Lender's reference, e.g. installment or agreement number.")
    customer_id: Identifier = Field(..., description="Lender's customer id.")
    loan_id: Optional[Identifier] = Field(None, description="Loan the payment applies to, if any.")
    description: ShortText = Field("", description="Text shown to the customer on the checkout page (Spanish).")
    expires_in_minutes: ExpiryMinutes = Field(
        DEFAULT_EXPIRES_IN_MINUTES, description="Minutes until the link expires (1 to 43,200)."
    )
    metadata: Dict[MetadataKey, MetadataValue] = Field(
        default_factory=dict,
        description=f"Up to {MAX_METADATA_KEYS} string pairs of your own, echoed in the link and its webhooks.",
        example={"conversation_id": "web-4f2a"},
    )

    class Config:
        extra = Extra.forbid

    @validator("currency", pre=True)
    def _known_currency(cls, value: Any) -> str:
        code = value.strip().upper() if isinstance(value, str) else value
        if code not in CURRENCIES:
            raise ValueError(f"unsupported currency {value!r}; use one of {', '.join(CURRENCIES)}")
        return code

    @validator("metadata")
    def _few_metadata_keys(cls, metadata: Dict[str, str]) -> Dict[str, str]:
        if len(metadata) > MAX_METADATA_KEYS:
            raise ValueError(f"at most {MAX_METADATA_KEYS} keys")
        return metadata

    @validator("amount", pre=True)
    def _parse_amount(cls, value: Any) -> Decimal:
        return parse_decimal(value)

    @validator("amount")
    def _amount_within_policy(cls, amount: Decimal, values: Dict[str, Any]) -> Decimal:
        if amount <= 0:
            raise ValueError("must be greater than zero")
        currency = CURRENCIES.get(values.get("currency", ""))
        if currency is None:
            return amount  # the currency error is reported on its own field
        if amount > currency.max_amount:
            raise ValueError(f"must not exceed {currency.max_amount} {currency.code}")
        quantized = amount.quantize(currency.quantum)
        if quantized != amount:
            if currency.minor_units == 0:
                raise ValueError(f"must be a whole number for {currency.code}")
            raise ValueError(f"must have at most {currency.minor_units} decimal places for {currency.code}")
        return quantized


class LinkOut(BaseModel):
    id: str = Field(..., example="lnk_3f2a9c0d1e4b5a6978c1d2e3")
    url: str = Field(..., description="Checkout page to send to the customer.")
    amount: str = Field(..., description="Decimal string.", example="150.00")
    currency: str
    reference: str
    customer_id: str
    loan_id: Optional[str]
    description: str
    metadata: Dict[str, str]
    status: LinkStatus = Field(..., description="`expired` is computed: a pending link past `expires_at`.")
    payment_id: Optional[str] = Field(None, description="Set once paid.")
    expires_at: datetime
    created_at: datetime
    paid_at: Optional[datetime]


class NotificationOut(BaseModel):
    id: int
    event: str
    target: str = Field(..., description="Who receives it: core_banking, then the assistant when configured.")
    payment_id: str
    status: DeliveryStatus = Field(..., description="`failed` after a 4xx or after the last attempt.")
    attempts: int
    last_status_code: Optional[int] = Field(None, description="HTTP status of the last answer, if any.")
    last_error: Optional[str]
    last_attempt_at: Optional[datetime]
    next_attempt_at: Optional[datetime] = Field(None, description="Only while pending.")
    delivered_at: Optional[datetime]
    created_at: datetime


class ErrorOut(BaseModel):
    detail: str
    errors: Optional[List[Dict[str, Any]]] = Field(None, description="Per-field errors, for validation failures.")


class HealthOut(BaseModel):
    status: str = Field(..., example="ok")
