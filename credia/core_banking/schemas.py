"""Request and response bodies of the core-banking API (pydantic v1).

Money and rates travel as decimal strings ("1234.50", "0.45") so no client rounds them through a float; on
input a JSON number is accepted too, read through its shortest text form. Inputs forbid unknown fields so a
typo is reported instead of silently ignored; the payments webhook allows them so the sender can add fields.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any, Callable, Dict, Iterator, List, Optional

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConstrainedInt,
    Extra,
    Field,
    StrictBool,
    conint,
    conlist,
    constr,
    root_validator,
    validator,
)

from credia.collections.policy import MAX_PLAN_INSTALLMENTS
from credia.core_banking.documents import DOCUMENT_COUNTRIES, InvalidDocument, normalise_document
from credia.core_banking.loans import CENT, today_lima
from credia.core_banking.models import (
    ApplicationStatus,
    CaseKind,
    CasePriority,
    CaseStatus,
    ConsentChannel,
    Country,
    DocumentType,
    EmploymentType,
    OfferStatus,
    PlanKind,
    PlanStatus,
    PromiseStatus,
)
from credia.credit.evaluation import Outcome
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
DocumentNumber = constr(strip_whitespace=True, min_length=1, max_length=30)
Phone = constr(strip_whitespace=True, min_length=1, max_length=30)
Email = constr(strip_whitespace=True, max_length=254)
ProductCode = constr(strip_whitespace=True, to_upper=True, min_length=1, max_length=20)
# Where something was done: whatsapp, socketio, rest, call_center, branch...
Channel = constr(strip_whitespace=True, to_lower=True, regex=r"^[a-z0-9][a-z0-9_.:-]{0,39}$")
# Files a customer sends from a phone or the web: photos and PDFs.
DOCUMENT_CONTENT_TYPES = ("application/pdf", "image/jpeg", "image/png", "image/webp", "image/heic")


# Validators shared by every body that registers a customer; ``values`` holds the fields declared before.


def _document_of_country(cls: Any, value: DocumentType, values: Dict[str, Any]) -> DocumentType:
    country = values.get("country")
    if country is not None and country not in DOCUMENT_COUNTRIES[value]:
        raise ValueError(f"a {value.value} is not a document of country {country.value}")
    return value


def _valid_document(cls: Any, value: str, values: Dict[str, Any]) -> str:
    document_type = values.get("document_type")
    if document_type is None:
        return value  # the type's own error is reported
    try:
        return normalise_document(document_type, value)
    except InvalidDocument as exc:
        raise ValueError(str(exc)) from None


def _name_letters(cls: Any, value: str) -> str:
    if not all(char.isalpha() or char in " '-." for char in value):
        raise ValueError("may contain only letters, spaces, apostrophes, dots and dashes")
    return value


def _adult(cls: Any, value: date) -> date:
    today = today_lima()
    age = today.year - value.year - ((today.month, today.day) < (value.month, value.day))
    if not MIN_CUSTOMER_AGE <= age <= MAX_CUSTOMER_AGE:
        raise ValueError(f"customer must be between {MIN_CUSTOMER_AGE} and {MAX_CUSTOMER_AGE} years old")
    return value


def _e164(cls: Any, value: str, values: Dict[str, Any]) -> str:
    country = values.get("country", Country.PE)
    try:
        phone = phonenumbers.parse(value, country.value)
    except phonenumbers.NumberParseException:
        raise ValueError("is not a phone number") from None
    if not phonenumbers.is_valid_number(phone):
        raise ValueError("is not a valid number (use E.164, e.g. +51987654321)")
    return phonenumbers.format_number(phone, phonenumbers.PhoneNumberFormat.E164)


def _plain_file_name(cls: Any, value: str) -> str:
    if any(char in value for char in "/\\") or not value.isprintable():
        raise ValueError("must be a file name without folders or control characters")
    return value


def _email(cls: Any, value: Optional[str]) -> Optional[str]:
    if not value:
        return None
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None


class ErrorOut(Schema):
    detail: str = Field(..., description="Why the request failed, in one sentence.")
    errors: Optional[List[Dict[str, Any]]] = Field(None, description="Per-field errors, for 422.")


class HealthOut(Schema):
    status: str = Field(..., example="ok")


class LowIncomeBandOut(Schema):
    below: Money
    ratio: Rate


class HighIncomeBandOut(Schema):
    above: Money
    ratio: Rate


class InstallmentToIncomeOut(Schema):
    """Largest installment ÷ net monthly income: ``low_income.ratio`` below ``low_income.below``,
    ``high_income.ratio`` above ``high_income.above``, ``default`` otherwise."""

    default: Rate
    low_income: Optional[LowIncomeBandOut]
    high_income: Optional[HighIncomeBandOut]


class DocumentRequirementOut(Schema):
    kind: str = Field(..., description="Document code, as sent in `POST /applications/{id}/documents`.")
    label: str = Field(..., description="What to ask the customer for, in Spanish.")


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
    max_installment_to_income: Rate = Field(
        ..., description="Largest installment ÷ net monthly income for most incomes (see installment_to_income)."
    )
    requirements: List[str] = Field(..., description="Requirements in Spanish, to show to the customer.")
    origination_fee_rate: Rate = Field(..., description="One-off fee on the amount, deducted at disbursement.")
    insurance_monthly_rate: Rate = Field(
        ..., description="Desgravamen insurance per month on the outstanding balance, included in the installment."
    )
    min_monthly_income: Money = Field(..., description="Net monthly income below which an application is declined.")
    employment: Dict[EmploymentType, int] = Field(
        ..., description="Employment types that may apply, each with the minimum months in the current job."
    )
    installment_to_income: InstallmentToIncomeOut
    required_documents: List[DocumentRequirementOut] = Field(..., description="What the customer must send.")


class CustomerCreate(InputSchema):
    # Country first: the document and phone validators read it.
    country: Country = Country.PE
    document_type: DocumentType
    document_number: DocumentNumber = Field(  # type: ignore[valid-type]
        ..., description="Spaces, dots and dashes are ignored; a DNI may carry its check character.",
        example="10117410",
    )
    first_name: Name = Field(..., example="María")  # type: ignore[valid-type]
    last_name: Name = Field(..., example="Quispe Mamani")  # type: ignore[valid-type]
    date_of_birth: date
    phone: Phone = Field(  # type: ignore[valid-type]
        ..., description="E.164, or a national number of the customer's country.", example="+51987654321"
    )
    email: Optional[Email] = None  # type: ignore[valid-type]

    _document_country = validator("document_type", allow_reuse=True)(_document_of_country)
    _document = validator("document_number", allow_reuse=True)(_valid_document)
    _names = validator("first_name", "last_name", allow_reuse=True)(_name_letters)
    _birth = validator("date_of_birth", allow_reuse=True)(_adult)
    _phone = validator("phone", allow_reuse=True)(_e164)
    _mail = validator("email", allow_reuse=True)(_email)


class CustomerOut(Schema):
    id: int
    document_type: DocumentType
    document_number: str
    first_name: Optional[str]
    last_name: Optional[str]
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


class OptOutIn(InputSchema):
    """A customer's "no more messages" on a channel, said to the address they wrote from."""

    channel: ConsentChannel
    address: constr(strip_whitespace=True, min_length=3, max_length=254) = Field(  # type: ignore[valid-type]
        ...,
        description="Phone in E.164 (+51987654321), a WhatsApp wa_id (51987654321), a Twilio address "
        "(whatsapp:+51987654321) or, for e-mail, the e-mail address.",
    )
    source: Text = Field(  # type: ignore[valid-type]
        ..., description="Where and how the customer opted out, e.g. whatsapp_baja, sms_stop, call_center."
    )

    @validator("address")
    def _address(cls, value: str) -> str:
        """The stored form: an E.164 phone, or a lower-case e-mail address."""
        if "@" in value:
            return value.lower()
        number = value.removeprefix("whatsapp:").strip()
        if number.isdigit():
            number = "+" + number
        try:
            phone = phonenumbers.parse(number, Country.PE.value)
        except phonenumbers.NumberParseException:
            raise ValueError("is neither a phone number nor an e-mail address") from None
        if not phonenumbers.is_valid_number(phone):
            raise ValueError("is not a valid phone number (use E.164, e.g. +51987654321)")
        return phonenumbers.format_number(phone, phonenumbers.PhoneNumberFormat.E164)


class OptedOutCustomerOut(Schema):
    customer_id: int
    revoked_at: datetime


class OptOutOut(Schema):
    channel: ConsentChannel
    address: str = Field(..., description="The address as matched: E.164 phone or lower-case e-mail.")
    changed: int = Field(..., description="Customers whose consent was withdrawn now (0: none, or already).")
    customers: List[OptedOutCustomerOut] = Field(..., description="Those customers, with the time recorded.")


class DataConsentIn(InputSchema):
    granted: StrictBool = Field(..., description="Must be true: without it the application is not evaluated.")
    source: constr(strip_whitespace=True, min_length=1, max_length=100) = Field(  # type: ignore[valid-type]
        ..., description="Where the customer agreed, e.g. chat:<conversation id>, web_form, branch.", example="web_form"
    )


class ApplicationCreate(InputSchema):
    """Either ``customer_id`` (an advisor registers an application of a known customer for manual review) or
    ``document_number`` with ``date_of_birth`` (the customer applies and gets the pre-evaluation at once)."""

    customer_id: Optional[Id] = Field(None, description="Registration for manual review: no pre-evaluation.")
    # Country first: the document and phone validators read it.
    country: Country = Country.PE
    document_type: DocumentType = DocumentType.DNI
    document_number: Optional[DocumentNumber] = Field(  # type: ignore[valid-type]
        None, description="Self-service: the applicant, found or registered by document.", example="70451236"
    )
    date_of_birth: Optional[date] = Field(None, description="Must match the customer's if already registered.")
    first_name: Optional[Name] = None  # type: ignore[valid-type]
    last_name: Optional[Name] = None  # type: ignore[valid-type]
    email: Optional[Email] = None  # type: ignore[valid-type]
    phone: Optional[Phone] = Field(  # type: ignore[valid-type]
        None, description="Required to register a new customer; E.164 or a national number.", example="+51967812345"
    )
    channel: constr(  # type: ignore[valid-type]
        strip_whitespace=True, to_lower=True, regex=r"^[a-z0-9][a-z0-9_.:-]{0,29}$"
    ) = Field("api", description="Where the customer applied, e.g. whatsapp, socketio, web, branch.")
    consent: Optional[DataConsentIn] = Field(
        None, description="Consent to process personal data (Ley 29733); required for a self-service application."
    )
    product_code: ProductCode  # type: ignore[valid-type]
    amount: PositiveMoney
    term_months: conint(ge=1, le=360)  # type: ignore[valid-type]
    monthly_income: PositiveMoney = Field(..., description="Net monthly income.")
    employment_type: EmploymentType
    employment_tenure_months: Optional[conint(ge=0, le=720)] = Field(  # type: ignore[valid-type]
        None, description="Months in the current job or business; required for a self-service application."
    )

    _document_country = validator("document_type", allow_reuse=True)(_document_of_country)
    _document = validator("document_number", allow_reuse=True)(_valid_document)
    _names = validator("first_name", "last_name", allow_reuse=True)(_name_letters)
    _birth = validator("date_of_birth", allow_reuse=True)(_adult)
    _phone = validator("phone", allow_reuse=True)(_e164)
    _mail = validator("email", allow_reuse=True)(_email)

    @validator("consent", always=True)
    def _consent_given(cls, value: Optional[DataConsentIn], values: Dict[str, Any]) -> Optional[DataConsentIn]:
        if value is None and values.get("document_number") is not None:
            raise ValueError("required: the customer must agree to the processing of personal data (Ley 29733)")
        if value is not None and not value.granted:
            raise ValueError("the customer did not agree to the processing of personal data (Ley 29733)")
        return value

    @root_validator(skip_on_failure=True)
    def _one_applicant(cls, values: Dict[str, Any]) -> Dict[str, Any]:
        if (values.get("customer_id") is None) == (values.get("document_number") is None):
            raise ValueError(
                "give customer_id (registration for manual review) or document_number with date_of_birth "
                "(self-service application, pre-evaluated), not both"
            )
        if values.get("document_number") is not None:
            missing = [name for name in ("date_of_birth", "employment_tenure_months") if values.get(name) is None]
            if missing:
                raise ValueError(f"{', '.join(missing)}: required for a self-service application")
        return values

    @property
    def self_service(self) -> bool:
        return self.document_number is not None


class TransitionIn(InputSchema):
    status: ApplicationStatus
    note: Optional[constr(strip_whitespace=True, max_length=500)] = None  # type: ignore[valid-type]


class StatusEventOut(Schema):
    from_status: Optional[ApplicationStatus]
    status: ApplicationStatus
    note: Optional[str]
    created_at: datetime


class OfferOut(Schema):
    """A loan as offered or simulated, with the figures SBS requires next to the installment."""

    product_code: str
    product_name: str
    currency: str
    amount: Money
    term_months: int
    tea: Rate = Field(..., description="Tasa efectiva anual, as a fraction (0.45 is 45 %).")
    tcea: Rate = Field(
        ...,
        description="Tasa de costo efectivo anual: the yearly IRR of the amount disbursed (after fees) against the "
        "installments (with insurance), as a fraction rounded to 0.01 % (0.463 is 46.30 %).",
    )
    installment: Money = Field(
        ..., description="Fixed monthly installment: principal, interest and desgravamen insurance."
    )
    origination_fee: Money
    net_disbursed: Money = Field(..., description="What the customer receives: amount less the origination fee.")
    total_interest: Money
    total_insurance: Money
    total_to_pay: Money = Field(..., description="Every installment added up.")
    first_due_date: date
    last_due_date: date


class ReasonOut(Schema):
    code: str = Field(..., example="payment_capacity", description="Stable code for systems and reports.")
    message: str = Field(..., description="Short explanation for the customer, in Spanish.")
    alternative: Optional[str] = Field(None, description="What the customer can do instead, in Spanish.")


class RequiredDocumentOut(DocumentRequirementOut):
    received: bool


class ApplicationOut(Schema):
    id: int
    code: str = Field(..., example="SOL-7K3M9Q", description="What the customer quotes to ask about it.")
    customer_id: int
    product_code: str
    product_name: str
    amount: Money
    term_months: int
    monthly_income: Money
    employment_type: EmploymentType
    employment_tenure_months: Optional[int]
    channel: Optional[str]
    phone: Optional[str] = Field(None, description="Where to reach the applicant about this application.")
    email: Optional[str]
    status: ApplicationStatus
    outcome: Optional[Outcome] = Field(
        None, description="Pre-evaluation: pre_approved, counter_offer, referred or declined; null when registered "
        "for manual review."
    )
    offer: Optional[OfferOut] = Field(None, description="For pre_approved and counter_offer.")
    reasons: List[ReasonOut] = Field(..., description="Why it was referred, declined or counter-offered.")
    required_documents: List[RequiredDocumentOut]
    installment_amount: Money = Field(
        ..., description="Monthly installment at the product's TEA (French), without insurance."
    )
    installment_to_income: Rate = Field(..., description="installment_amount ÷ monthly_income, 4 decimals.")
    loan_id: Optional[int] = Field(None, description="Set once disbursed.")
    created_at: datetime
    updated_at: datetime
    history: List[StatusEventOut]


class SimulationIn(InputSchema):
    product_code: ProductCode  # type: ignore[valid-type]
    amount: PositiveMoney
    term_months: conint(ge=1, le=360)  # type: ignore[valid-type]


class PublicStatusEventOut(Schema):
    from_status: Optional[ApplicationStatus]
    status: ApplicationStatus
    created_at: datetime


class ApplicationStatusOut(Schema):
    """What the applicant may be told about an application: no income, no internal notes."""

    id: int
    code: str
    status: ApplicationStatus
    outcome: Optional[Outcome]
    product_code: str
    product_name: str
    currency: str
    amount: Money
    term_months: int
    offer: Optional[OfferOut]
    reasons: List[ReasonOut]
    required_documents: List[RequiredDocumentOut]
    created_at: datetime
    updated_at: datetime
    history: List[PublicStatusEventOut]


class DocumentIn(InputSchema):
    kind: constr(strip_whitespace=True, to_lower=True, min_length=1, max_length=40) = Field(  # type: ignore[valid-type]
        ..., description="One of the product's required document kinds.", example="dni"
    )
    filename: constr(strip_whitespace=True, min_length=1, max_length=255)  # type: ignore[valid-type]
    content_type: constr(strip_whitespace=True, to_lower=True, min_length=1, max_length=100) = Field(  # type: ignore[valid-type]
        ..., description=f"One of {', '.join(DOCUMENT_CONTENT_TYPES)}."
    )
    media_url: Optional[AnyHttpUrl] = Field(None, description="Where to fetch the file (http or https).")
    media_id: Optional[constr(strip_whitespace=True, regex=r"^[A-Za-z0-9._:-]{1,200}$")] = Field(  # type: ignore[valid-type]
        None, description="The channel's id of the file, e.g. a WhatsApp media id."
    )

    _plain_name = validator("filename", allow_reuse=True)(_plain_file_name)

    @validator("content_type")
    def _accepted_type(cls, value: str) -> str:
        if value not in DOCUMENT_CONTENT_TYPES:
            raise ValueError(f"must be one of {', '.join(DOCUMENT_CONTENT_TYPES)}")
        return value

    @validator("media_url")
    def _short_url(cls, value: Optional[AnyHttpUrl]) -> Optional[AnyHttpUrl]:
        if value is not None and len(value) > 2000:
            raise ValueError("must be at most 2000 characters")
        return value

    @root_validator(skip_on_failure=True)
    def _one_location(cls, values: Dict[str, Any]) -> Dict[str, Any]:
        if (values.get("media_url") is None) == (values.get("media_id") is None):
            raise ValueError("give media_url or media_id, one of them")
        return values


class DocumentOut(Schema):
    id: int
    kind: str
    label: str
    filename: str
    content_type: str
    media_url: Optional[str]
    media_id: Optional[str]
    received_at: datetime


class DocumentsOut(Schema):
    application_id: int
    code: str
    product_code: str
    complete: bool = Field(..., description="True when every required kind has been received at least once.")
    required: List[RequiredDocumentOut]
    received: List[DocumentOut] = Field(..., description="Every document received, oldest first.")
    missing: List[DocumentRequirementOut]


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
    collections_hold: bool = Field(
        ..., description="True while a dispute on the loan is open: no collection contact about it."
    )
    active_plan_id: Optional[int] = Field(
        None, description="The payment plan in force or waiting for approval (status pending_approval), if any."
    )


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
    installments_count: conint(ge=1, le=MAX_PLAN_INSTALLMENTS)  # type: ignore[valid-type]
    down_payment: Money = Decimal("0.00")
    discount: Money = Field(Decimal("0.00"), description="Amount forgiven of the overdue debt.")
    first_due_date: Optional[date] = Field(None, description="Default: a month from today; within 60 days.")


class ScheduleRowOut(Schema):
    number: int = Field(
        ..., description="0: due the day the plan is agreed (down payment or settlement); installments from 1."
    )
    due_date: date
    amount: Money


class PaymentPlanOut(Schema):
    id: int
    loan_id: int
    offer_id: Optional[str] = Field(None, description="The offer the customer accepted; null if an agent recorded it.")
    kind: PlanKind
    channel: str
    total_amount: Money = Field(..., description="Overdue debt (installments + late interest) when agreed.")
    discount: Money
    down_payment: Money
    installments_count: int
    installment_amount: Money
    first_due_date: date
    status: PlanStatus
    created_at: datetime
    schedule: List[ScheduleRowOut] = Field(..., description="Every payment; they add up to total − discount.")


class PlanOffersIn(InputSchema):
    monthly_amount: Optional[Money] = Field(
        None, description="What the customer can pay a month: the plan with the fewest installments within it."
    )
    channel: Channel = Field("api", description="Where the offers are shown.")  # type: ignore[valid-type]


class PlanOfferOut(Schema):
    id: str = Field(..., example="OF-7K3M9Q")
    loan_id: int
    kind: PlanKind = Field(..., description="settlement: one payment today with a discount; installments.")
    debt: Money = Field(..., description="The loan's total overdue when offered.")
    discount: Money
    down_payment: Money = Field(..., description="Due today; for a settlement, the whole amount to pay.")
    installments_count: int = Field(..., description="Monthly installments after the down payment (0: settlement).")
    installment_amount: Money = Field(..., description="The regular installment; the last one may be a little less.")
    total_to_pay: Money = Field(..., description="debt − discount: what the schedule adds up to.")
    first_due_date: date
    valid_until: date = Field(..., description="Last day it can be accepted (America/Lima).")
    needs_approval: bool = Field(..., description="Accepting it books a plan that waits for a person's approval.")
    status: OfferStatus
    schedule: List[ScheduleRowOut]


class PlanOffersOut(Schema):
    loan_id: int
    bucket: str
    debt: Money = Field(..., description="Total overdue today: unpaid installments plus late interest.")
    currency: str
    feasible: bool
    reason: Optional[str] = Field(
        None,
        description="Why there are no offers: nothing_overdue, collections_hold (open dispute), plan_active, or "
        "for a monthly_amount below_minimum_installment or exceeds_max_installments.",
    )
    required_installments: Optional[int] = Field(
        None, description="With exceeds_max_installments: the installments that monthly_amount would take."
    )
    max_installments: int
    needs_approval: bool
    offers: List[PlanOfferOut] = Field(..., description="At most 3, stored; accept one by its id.")


class AcceptOfferIn(InputSchema):
    channel: Channel = Field("api", description="Where the customer accepted.")  # type: ignore[valid-type]


class PromiseIn(InputSchema):
    amount: PositiveMoney
    promised_date: date = Field(..., description="Within the collections policy: see promise-terms.")
    channel: Channel = Field("api", description="Where the customer promised.")  # type: ignore[valid-type]


class PromiseOut(Schema):
    id: int
    loan_id: int
    amount: Money
    promised_date: date
    status: PromiseStatus
    channel: str
    created_at: datetime
    resolved_at: Optional[datetime]


class PromiseTermsOut(Schema):
    bucket: str
    min_amount: Money = Field(..., description="The bucket's share of the overdue debt, rounded up to the cent.")
    max_amount: Money = Field(..., description="The outstanding balance.")
    suggested_amount: Money = Field(..., description="The total overdue: what brings the loan current.")
    earliest_date: date
    latest_date: date
    pending_promise: Optional[PromiseOut] = Field(None, description="Only one promise may be pending at a time.")


class AttachmentIn(InputSchema):
    filename: constr(strip_whitespace=True, min_length=1, max_length=255)  # type: ignore[valid-type]
    content_type: constr(strip_whitespace=True, to_lower=True, max_length=100) = ""  # type: ignore[valid-type]
    url: constr(strip_whitespace=True, min_length=1, max_length=2000) = Field(  # type: ignore[valid-type]
        ..., description="Where the file is: an http(s) URL, or the channel's media id."
    )

    _plain_name = validator("filename", allow_reuse=True)(_plain_file_name)

    @validator("url")
    def _printable(cls, value: str) -> str:
        if not value.isprintable():
            raise ValueError("must not contain control characters")
        return value


class AttachmentOut(Schema):
    filename: str
    content_type: str
    url: str


MAX_CASE_DETAILS_BYTES = 8 * 1024


class CaseIn(InputSchema):
    kind: CaseKind
    customer_id: Optional[Id] = Field(None, description="Filled from the loan when only loan_id is given.")
    loan_id: Optional[Id] = Field(None, description="Must be a loan of customer_id (409 otherwise).")
    channel: Channel  # type: ignore[valid-type]
    conversation_id: Optional[constr(strip_whitespace=True, min_length=1, max_length=200)] = None  # type: ignore[valid-type]
    priority: CasePriority = CasePriority.NORMAL
    summary: constr(strip_whitespace=True, min_length=1, max_length=500)  # type: ignore[valid-type]
    details: Dict[str, Any] = Field(default_factory=dict, description="Anything a person needs, at most 8 KB of JSON.")
    attachments: conlist(AttachmentIn, max_items=5) = Field(default_factory=list)  # type: ignore[valid-type]

    @validator("details")
    def _small_details(cls, value: Dict[str, Any]) -> Dict[str, Any]:
        size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str).encode())
        if size > MAX_CASE_DETAILS_BYTES:
            raise ValueError(f"must be at most {MAX_CASE_DETAILS_BYTES} bytes of JSON (found {size})")
        return value


class CaseOut(Schema):
    id: int
    code: str = Field(..., example="CAS-7K3M9Q", description="What the customer quotes to ask about it.")
    kind: CaseKind
    customer_id: Optional[int]
    loan_id: Optional[int]
    channel: str
    conversation_id: Optional[str]
    priority: CasePriority
    summary: str
    details: Dict[str, Any]
    attachments: List[AttachmentOut]
    status: CaseStatus
    outcome: Optional[str]
    created_at: datetime
    closed_at: Optional[datetime]


class CaseCloseIn(InputSchema):
    outcome: constr(strip_whitespace=True, min_length=1, max_length=500)  # type: ignore[valid-type]


class CodeRequestIn(InputSchema):
    document_type: DocumentType = DocumentType.DNI
    document_number: DocumentNumber  # type: ignore[valid-type]

    _document = validator("document_number", allow_reuse=True)(_valid_document)


class CodeChallengeOut(Schema):
    challenge_id: str = Field(..., description="Give it back with the code in POST /identity/verifications.")
    expires_at: datetime
    message: str = Field(..., description="For the customer, in Spanish; the same whether or not the document exists.")


class VerificationIn(InputSchema):
    """The document and exactly one factor: ``birth_date``, or ``challenge_id`` with ``code``."""

    document_type: DocumentType = DocumentType.DNI
    document_number: DocumentNumber  # type: ignore[valid-type]
    birth_date: Optional[date] = None
    challenge_id: Optional[constr(strip_whitespace=True, min_length=1, max_length=64)] = None  # type: ignore[valid-type]
    code: Optional[constr(strip_whitespace=True, regex=r"^[0-9]{1,12}$")] = None  # type: ignore[valid-type]

    _document = validator("document_number", allow_reuse=True)(_valid_document)

    @root_validator(skip_on_failure=True)
    def _one_factor(cls, values: Dict[str, Any]) -> Dict[str, Any]:
        by_code = values.get("challenge_id") is not None or values.get("code") is not None
        if by_code and (values.get("challenge_id") is None or values.get("code") is None):
            raise ValueError("a one-time code needs both challenge_id and code")
        if by_code == (values.get("birth_date") is not None):
            raise ValueError("give one factor: birth_date, or challenge_id with code")
        return values


class VerificationOut(Schema):
    verified: bool
    customer_id: Optional[int]
    first_name: Optional[str]
    attempts_left: int = Field(..., description="Failures left before the document is locked (0 while locked).")
    locked_until: Optional[datetime] = Field(None, description="Set while the document is locked.")


class SmsOut(Schema):
    to: str = Field(..., example="+51987654321")
    text: str
    sent_at: datetime


class BureauOut(Schema):
    document_type: DocumentType
    document_number: str
    rating: str = Field(..., description="SBS category: Normal, CPP, Deficiente, Dudoso or Pérdida.")
    score: int
    total_debt: Money
    currency: str = "PEN"
    lenders_count: int
    max_days_past_due: int

