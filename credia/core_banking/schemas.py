"""Request and response bodies of the core-banking API (pydantic v1).

Money and rates travel as decimal strings ("1234.50", "0.45") so no client rounds them through a float; on
input a JSON number is accepted too, read through its shortest text form. Inputs forbid unknown fields so a
typo is reported instead of silently ignored; the payments webhook allows them so the sender can add fields.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any, Callable, Dict, Iterator, List, Optional

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, ConstrainedInt, Extra, Field, StrictBool, conint, constr, validator

from credia.core_banking.documents import DOCUMENT_COUNTRIES, InvalidDocument, normalise_document
from credia.core_banking.loans import CENT, today_lima
from credia.core_banking.models import (
    ApplicationStatus,
    ConsentChannel,
    Country,
    DocumentType,
    EmploymentType,
    PlanStatus,
    PromiseStatus,
)
from credia.money import parse_decimal

MAX_AMOUNT = Decimal("1000000000")

MIN_CUSTOMER_AGE = 18
MAX_CUSTOMER_AGE = 110


def _decimal_text(value: Decimal) -> str:
    return format(value, "f")


def _utc_text(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat()


class Money(Decimal):
    """An amount of money, zero or more, with at most two decimals; serialised as "1234.50"."""

    @classmethod
    def __get_validators__(cls) -> Iterator[Callable[[Any], Decimal]]:
        yield cls.validate

    @classmethod
    def __modify_schema__(cls, field_schema: Dict[str, Any]) -> None:
        field_schema.update(
            type="string",
            pattern=r"^\d+(\.\d{1,2})?$",
            example="1234.50",
            description="Decimal string (a JSON number is accepted on input).",
        )

    @classmethod
    def validate(cls, value: Any) -> Decimal:
        amount = parse_decimal(value)
        if amount < 0:
            raise ValueError("must not be negative")
        if amount > MAX_AMOUNT:
            raise ValueError(f"must not exceed {MAX_AMOUNT}")
        if amount != amount.quantize(CENT):
            raise ValueError("must have at most 2 decimal places")
        return amount.quantize(CENT)


class PositiveMoney(Money):
    """An amount of money greater than zero."""

    @classmethod
    def validate(cls, value: Any) -> Decimal:
        amount = super().validate(value)
        if amount == 0:
            raise ValueError("must be greater than zero")
        return amount


class Rate(Decimal):
    """A rate as a fraction (0.45 is 45 %); serialised as a decimal string."""

    @classmethod
    def __get_validators__(cls) -> Iterator[Callable[[Any], Decimal]]:
        yield cls.validate

    @classmethod
    def __modify_schema__(cls, field_schema: Dict[str, Any]) -> None:
        field_schema.update(type="string", pattern=r"^\d+(\.\d+)?$", example="0.45")

    @classmethod
    def validate(cls, value: Any) -> Decimal:
        rate = parse_decimal(value)
        return rate.normalize() if rate else Decimal(0)


class Id(ConstrainedInt):
    """A row id; ids are INTEGER columns, so a larger number is refused before it reaches the driver."""

    ge = 1
    le = 2_147_483_647


class Schema(BaseModel):
    class Config:
        json_encoders = {Decimal: _decimal_text, datetime: _utc_text}
        orm_mode = True


class InputSchema(Schema):
    class Config:
        extra = Extra.forbid


Name = constr(strip_whitespace=True, min_length=1, max_length=80)
Text = constr(strip_whitespace=True, min_length=1, max_length=50)


class ErrorOut(Schema):
    detail: str = Field(..., description="Why the request failed, in one sentence.")
    errors: Optional[List[Dict[str, Any]]] = Field(None, description="Per-field errors, for 422.")


class HealthOut(Schema):
    status: str = Field(..., example="ok")


class ProductOut(Schema):
    code: str = Field(..., example="PERSONAL")
    name: str = Field(..., example="Préstamo Personal")
    description: str
    currency: str = Field(..., example="PEN")
    min_amount: Money
    max_amount: Money
    min_term_months: int
    max_term_months: int
    tea: Rate = Field(..., description="Tasa efectiva anual; TEM = (1 + TEA)^(30/360) − 1.")
    moratory_tea: Rate = Field(..., description="Late interest (TEA) on overdue principal; no penalty fees.")
    min_age: int
    max_age_at_maturity: int
    max_installment_to_income: Rate = Field(..., description="Largest installment ÷ net monthly income.")
    requirements: List[str] = Field(..., description="Requirements in Spanish, to show to the customer.")


class CustomerCreate(InputSchema):
    # Country first: the document and phone validators read it.
    country: Country = Country.PE
    document_type: DocumentType
    document_number: constr(strip_whitespace=True, min_length=1, max_length=30) = Field(  # type: ignore[valid-type]
        ..., description="Spaces, dots and dashes are ignored; a DNI may carry its check character.",
        example="10117410",
    )
    first_name: Name = Field(..., example="María")  # type: ignore[valid-type]
    last_name: Name = Field(..., example="Quispe Mamani")  # type: ignore[valid-type]
    date_of_birth: date
    phone: constr(strip_whitespace=True, min_length=1, max_length=30) = Field(  # type: ignore[valid-type]
        ..., description="E.164, or a national number of the customer's country.", example="+51987654321"
    )
    email: Optional[constr(strip_whitespace=True, max_length=254)] = None  # type: ignore[valid-type]

    @validator("document_type")
    def _document_of_country(cls, value: DocumentType, values: Dict[str, Any]) -> DocumentType:
        country = values.get("country")
        if country is not None and country not in DOCUMENT_COUNTRIES[value]:
            raise ValueError(f"a {value.value} is not a document of country {country.value}")
        return value

    @validator("document_number")
    def _valid_document(cls, value: str, values: Dict[str, Any]) -> str:
        document_type = values.get("document_type")
        if document_type is None:
            return value  # the type's own error is reported
        try:
            return normalise_document(document_type, value)
        except InvalidDocument as exc:
            raise ValueError(str(exc)) from None

    @validator("first_name", "last_name")
    def _name_letters(cls, value: str) -> str:
        if not all(char.isalpha() or char in " '-." for char in value):
            raise ValueError("may contain only letters, spaces, apostrophes, dots and dashes")
        return value

    @validator("date_of_birth")
    def _adult(cls, value: date) -> date:
        today = today_lima()
        age = today.year - value.year - ((today.month, today.day) < (value.month, value.day))
        if not MIN_CUSTOMER_AGE <= age <= MAX_CUSTOMER_AGE:
            raise ValueError(f"customer must be between {MIN_CUSTOMER_AGE} and {MAX_CUSTOMER_AGE} years old")
        return value

    @validator("phone")
    def _e164(cls, value: str, values: Dict[str, Any]) -> str:
        country = values.get("country", Country.PE)
        try:
            phone = phonenumbers.parse(value, country.value)
        except phonenumbers.NumberParseException:
            raise ValueError("is not a phone number") from None
        if not phonenumbers.is_valid_number(phone):
            raise ValueError("is not a valid number (use E.164, e.g. +51987654321)")
        return phonenumbers.format_number(phone, phonenumbers.PhoneNumberFormat.E164)

    @validator("email")
    def _email(cls, value: Optional[str]) -> Optional[str]:
        if not value:
            return None
        try:
            return validate_email(value, check_deliverability=False).normalized
        except EmailNotValidError as exc:
            raise ValueError(str(exc)) from None


class CustomerOut(Schema):
    id: int
    document_type: DocumentType
    document_number: str
    first_name: str
    last_name: str
    full_name: str
    date_of_birth: date
    phone: str = Field(..., example="+51987654321")
    email: Optional[str]
    country: Country
    created_at: datetime
    consents: Dict[ConsentChannel, bool] = Field(..., description="Current consent per channel.")


class ConsentUpdate(InputSchema):
    granted: StrictBool
    source: Text = Field(  # type: ignore[valid-type]
        ..., description="Where the customer said so, e.g. whatsapp, web_form, call_center."
    )


class ConsentStateOut(Schema):
    channel: ConsentChannel
    granted: bool
    source: Optional[str] = Field(None, description="Null when the customer was never asked on this channel.")
    updated_at: Optional[datetime]


class ConsentEventOut(Schema):
    channel: ConsentChannel
    granted: bool
    source: str
    recorded_at: datetime


class ConsentsOut(Schema):
    customer_id: int
    current: List[ConsentStateOut]
    history: List[ConsentEventOut] = Field(..., description="Every change, oldest first.")


class ApplicationCreate(InputSchema):
    customer_id: Id
    product_code: constr(strip_whitespace=True, to_upper=True, min_length=1, max_length=20)  # type: ignore[valid-type]
    amount: PositiveMoney
    term_months: conint(ge=1, le=360)  # type: ignore[valid-type]
    monthly_income: PositiveMoney = Field(..., description="Net monthly income.")
    employment_type: EmploymentType


class TransitionIn(InputSchema):
    status: ApplicationStatus
    note: Optional[constr(strip_whitespace=True, max_length=500)] = None  # type: ignore[valid-type]


class StatusEventOut(Schema):
    from_status: Optional[ApplicationStatus]
    status: ApplicationStatus
    note: Optional[str]
    created_at: datetime


class ApplicationOut(Schema):
    id: int
    customer_id: int
    product_code: str
    product_name: str
    amount: Money
    term_months: int
    monthly_income: Money
    employment_type: EmploymentType
    status: ApplicationStatus
    installment_amount: Money = Field(..., description="Monthly installment at the product's TEA (French).")
    installment_to_income: Rate = Field(..., description="installment_amount ÷ monthly_income, 4 decimals.")
    loan_id: Optional[int] = Field(None, description="Set once disbursed.")
    created_at: datetime
    updated_at: datetime
    history: List[StatusEventOut]


class InstallmentOut(Schema):
    number: int
    due_date: date
    principal: Money
    interest: Money
    amount: Money
    paid_amount: Money
    late_interest: Money = Field(..., description="Moratory interest owed on this installment today.")
    status: str = Field(..., description="paid, overdue or pending (partial payments show in paid_amount).")
    paid_on: Optional[date]


class LoanOut(Schema):
    id: int
    customer_id: int
    product_code: str
    product_name: str
    currency: str
    principal: Money
    term_months: int
    tea: Rate
    moratory_tea: Rate
    disbursed_on: date
    installment_amount: Money = Field(..., description="The regular monthly installment.")
    status: str = Field(..., description="active or paid_off.")
    as_of: date = Field(..., description="Day (America/Lima) the computed fields refer to.")
    days_past_due: int = Field(..., description="Days since the oldest unpaid installment fell due.")
    bucket: str = Field(..., description="current, 1-30, 31-60, 61-120 or >120.")
    installments_paid: int
    installments_overdue: int
    amount_overdue: Money = Field(..., description="Unpaid part of the overdue installments.")
    late_interest: Money = Field(..., description="Moratory interest owed (Ley 31143: no penalty fees).")
    total_overdue: Money = Field(..., description="amount_overdue + late_interest: what brings the loan current.")
    next_due_date: Optional[date] = Field(None, description="First unpaid installment due today or later.")
    next_due_amount: Optional[Money]
    outstanding_principal: Money
    outstanding_balance: Money = Field(..., description="Every unpaid installment plus late interest.")


class LoanDetailOut(LoanOut):
    installments: List[InstallmentOut]


class PaymentIn(InputSchema):
    amount: PositiveMoney
    external_id: constr(strip_whitespace=True, min_length=1, max_length=100) = Field(  # type: ignore[valid-type]
        ..., description="Your unique id for this payment: a repeat is reported as a duplicate, never applied."
    )
    channel: constr(strip_whitespace=True, min_length=1, max_length=40) = "api"  # type: ignore[valid-type]


class AllocationOut(Schema):
    installment_number: int
    late_interest: Money
    interest: Money
    principal: Money


class PaymentRecordOut(Schema):
    id: int
    loan_id: int
    external_id: str
    amount: Money
    currency: str
    channel: str
    source: str = Field(..., description="api, webhook (payments service) or seed.")
    reference: Optional[str]
    paid_at: datetime
    allocation: List[AllocationOut] = Field(..., description="Oldest installment first.")


class PaymentOut(PaymentRecordOut):
    duplicate: bool = Field(False, description="True when this external_id had already been applied.")
    loan: LoanOut = Field(..., description="The loan after the payment.")


class PaymentWebhook(Schema):
    """``payment.completed`` from the payments service. Ids may arrive as numbers or numeric strings."""

    event: constr(strip_whitespace=True, min_length=1, max_length=50)  # type: ignore[valid-type]
    payment_id: constr(strip_whitespace=True, min_length=1, max_length=100)  # type: ignore[valid-type]
    link_id: Optional[constr(max_length=100)] = None  # type: ignore[valid-type]
    amount: PositiveMoney
    currency: constr(strip_whitespace=True, to_upper=True, min_length=3, max_length=3)  # type: ignore[valid-type]
    reference: Optional[constr(max_length=100)] = None  # type: ignore[valid-type]
    customer_id: Id
    loan_id: Optional[Id] = None
    paid_at: datetime

    class Config:
        extra = Extra.ignore

    @validator("paid_at")
    def _aware(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


class WebhookResult(Schema):
    status: str = Field(..., description="applied, duplicate or ignored (an event this service does not handle).")
    payment_id: Optional[str]
    loan_id: Optional[int]


class PaymentPlanIn(InputSchema):
    installments_count: conint(ge=1, le=36)  # type: ignore[valid-type]
    down_payment: Money = Decimal("0.00")
    discount: Money = Field(Decimal("0.00"), description="Amount forgiven of the overdue debt.")
    first_due_date: Optional[date] = Field(None, description="Default: a month from today; within 60 days.")


class PaymentPlanOut(Schema):
    id: int
    loan_id: int
    total_amount: Money = Field(..., description="Overdue debt (installments + late interest) when agreed.")
    discount: Money
    down_payment: Money
    installments_count: int
    installment_amount: Money
    first_due_date: date
    status: PlanStatus
    created_at: datetime


class PromiseIn(InputSchema):
    amount: PositiveMoney
    promised_date: date = Field(..., description="Today or later, within 30 days (America/Lima).")


class PromiseOut(Schema):
    id: int
    loan_id: int
    amount: Money
    promised_date: date
    status: PromiseStatus
    created_at: datetime
    resolved_at: Optional[datetime]


class BureauOut(Schema):
    document_type: DocumentType
    document_number: str
    rating: str = Field(..., description="SBS category: Normal, CPP, Deficiente, Dudoso or Pérdida.")
    score: int
    total_debt: Money
    currency: str = "PEN"
    lenders_count: int
    max_days_past_due: int
