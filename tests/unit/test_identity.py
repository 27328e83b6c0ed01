"""Identity documents and country profiles: one set of rules for core banking, the actions and the NLU."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import phonenumbers
import pytest
from babel import Locale
from babel.numbers import get_currency_name

from credia.core_banking import documents, models
from credia.identity import (
    COUNTRY_PROFILES,
    DEFAULT_COUNTRY,
    DOCUMENT_COUNTRIES,
    Country,
    DocumentType,
    InvalidDocument,
    compact,
    country_profile,
    normalise_document,
)


@pytest.mark.parametrize(
    ("document_type", "given", "stored"),
    [
        # Peru DNI: 8 digits, the card's check character (digit or letter A-K) verified and dropped.
        (DocumentType.DNI, "10117410", "10117410"),
        (DocumentType.DNI, "10117410-2", "10117410"),
        (DocumentType.DNI, "10117410-G", "10117410"),
        (DocumentType.DNI, "10117410g", "10117410"),
        (DocumentType.DNI, "10 117 410", "10117410"),
        (DocumentType.DNI, "10.117.410", "10117410"),
        (DocumentType.DNI, " 10117410 - 2 ", "10117410"),
        (DocumentType.DNI, "45879632", "45879632"),
        (DocumentType.DNI, "45879632-2", "45879632"),
        (DocumentType.DNI, "09876543", "09876543"),  # leading zero kept: it is part of the number
        (DocumentType.DNI, "09876543C", "09876543"),
        (DocumentType.DNI, "70451236-H", "70451236"),
        # Peru carné de extranjería and RUC.
        (DocumentType.CE, "001234567", "001234567"),
        (DocumentType.CE, "001-234567", "001234567"),
        (DocumentType.CE, "ab1234567", "AB1234567"),
        (DocumentType.RUC, "20100047218", "20100047218"),
        (DocumentType.RUC, "10101174102", "10101174102"),
        (DocumentType.RUC, "20-10004721-8", "20100047218"),
        # Chile RUT: check digit or K, dots and dash optional.
        (DocumentType.RUT, "12.531.909-2", "125319092"),
        (DocumentType.RUT, "12531909-2", "125319092"),
        (DocumentType.RUT, "125319092", "125319092"),
        (DocumentType.RUT, "10.000.013-k", "10000013K"),
        (DocumentType.RUT, "9.876.543-3", "98765433"),
        # Mexico CURP, any case.
        (DocumentType.CURP, "BOXW310820HNERXN09", "BOXW310820HNERXN09"),
        (DocumentType.CURP, "boxw310820hnerxn09", "BOXW310820HNERXN09"),
        (DocumentType.CURP, "PEPJ800101HDFRRN03", "PEPJ800101HDFRRN03"),
        (DocumentType.CURP, "GOML850215MJCNPR02", "GOML850215MJCNPR02"),
        # Colombia: cédula by format only, NIT with its check digit.
        (DocumentType.CC, "1020304050", "1020304050"),
        (DocumentType.CC, "1.020.304.050", "1020304050"),
        (DocumentType.CC, "123456", "123456"),
        (DocumentType.NIT, "213.123.432-1", "2131234321"),
        (DocumentType.NIT, "900123456-8", "9001234568"),
    ],
)
def test_valid_documents_are_stored_compact(document_type: DocumentType, given: str, stored: str) -> None:
    assert normalise_document(document_type, given) == stored


@pytest.mark.parametrize(
    ("document_type", "given", "reason"),
    [
        (DocumentType.DNI, "1011741", "8 digits"),
        (DocumentType.DNI, "101174100", "checksum"),  # wrong check digit
        (DocumentType.DNI, "10117410-3", "checksum"),
        (DocumentType.DNI, "10117410Z", "checksum"),  # Z is not a check letter
        (DocumentType.DNI, "ABCDEFGH", ""),
        (DocumentType.DNI, "", "8 digits"),
        (DocumentType.DNI, "1011741O", ""),  # letter O typed for a zero
        (DocumentType.DNI, "10117410-2-2", "8 digits"),
        (DocumentType.CE, "12", "8 to 12"),
        (DocumentType.CE, "0012345678901", "8 to 12"),
        (DocumentType.CE, "00123456#", "8 to 12"),
        (DocumentType.RUC, "20100047219", "checksum"),
        (DocumentType.RUC, "2010004721", "length"),
        (DocumentType.RUT, "12.531.909-3", "checksum"),
        (DocumentType.RUT, "12.531.909-K", "checksum"),
        (DocumentType.RUT, "1234", "length"),
        (DocumentType.CURP, "BOXW310820HNERXN08", "checksum"),
        (DocumentType.CURP, "BOXW311320HNERXN09", ""),  # month 13
        (DocumentType.CURP, "BOXW310820", "length"),
        (DocumentType.CC, "12345", "6 to 10"),
        (DocumentType.CC, "12345678901", "6 to 10"),
        (DocumentType.CC, "12A456", "6 to 10"),
        (DocumentType.NIT, "213.123.432-2", "checksum"),
        (DocumentType.NIT, "1234", "length"),
    ],
)
def test_invalid_documents_say_why(document_type: DocumentType, given: str, reason: str) -> None:
    with pytest.raises(InvalidDocument) as error:
        normalise_document(document_type, given)
    assert reason in str(error.value)
    assert isinstance(error.value, ValueError)  # callers that only know ValueError still catch it


def test_document_types_are_accepted_as_strings() -> None:
    assert normalise_document("DNI", "10117410-2") == "10117410"  # type: ignore[arg-type]
    with pytest.raises(InvalidDocument, match="unknown document type"):
        normalise_document("PASSPORT", "123456789")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("country", "document_type", "number"),
    [
        ("PE", DocumentType.DNI, "10117410"),
        ("pe", DocumentType.RUC, "20100047218"),
        (Country.CL, DocumentType.RUT, "12.531.909-2"),
        ("MX", DocumentType.CURP, "BOXW310820HNERXN09"),
        ("CO", DocumentType.CC, "1020304050"),
        ("CO", DocumentType.NIT, "213.123.432-1"),
        ("CO", DocumentType.CE, "12345678"),
    ],
)
def test_documents_of_the_country_pass(country: str, document_type: DocumentType, number: str) -> None:
    assert normalise_document(document_type, number, country)


@pytest.mark.parametrize(
    ("country", "document_type", "number"),
    [
        ("PE", DocumentType.RUT, "12.531.909-2"),
        ("CL", DocumentType.DNI, "10117410"),
        ("MX", DocumentType.DNI, "10117410"),
        ("CO", DocumentType.CURP, "BOXW310820HNERXN09"),
        ("PE", DocumentType.CC, "1020304050"),
    ],
)
def test_documents_of_another_country_are_refused(country: str, document_type: DocumentType, number: str) -> None:
    with pytest.raises(InvalidDocument, match=f"not a document of {country}"):
        normalise_document(document_type, number, country)


def test_compact_removes_separators_only() -> None:
    assert compact(" 12.531.909-k ") == "12531909K"
    assert compact("10/117/410") == "10117410"
    assert compact("boxw310820hnerxn09") == "BOXW310820HNERXN09"


def test_default_profile_is_peru() -> None:
    profile = country_profile()
    assert DEFAULT_COUNTRY is Country.PE
    assert profile.country is Country.PE
    assert (profile.currency, profile.locale, profile.time_zone, profile.phone_region) == (
        "PEN", "es_PE", "America/Lima", "PE",
    )
    assert profile.default_document_type is DocumentType.DNI


@pytest.mark.parametrize(
    ("code", "currency", "locale", "document_type"),
    [
        ("PE", "PEN", "es_PE", DocumentType.DNI),
        ("MX", "MXN", "es_MX", DocumentType.CURP),
        ("CO", "COP", "es_CO", DocumentType.CC),
        ("CL", "CLP", "es_CL", DocumentType.RUT),
    ],
)
def test_profiles_per_country(code: str, currency: str, locale: str, document_type: DocumentType) -> None:
    profile = country_profile(code.lower())
    assert country_profile(Country(code)) is profile
    assert (profile.currency, profile.locale, profile.default_document_type) == (currency, locale, document_type)


@pytest.mark.parametrize("country", list(Country))
def test_profiles_use_real_zones_locales_currencies_and_regions(country: Country) -> None:
    profile = COUNTRY_PROFILES[country]
    assert ZoneInfo(profile.time_zone)
    assert Locale.parse(profile.locale).territory == country.value
    assert get_currency_name(profile.currency, locale="es")
    assert profile.phone_region in phonenumbers.SUPPORTED_REGIONS
    assert profile.default_document_type in profile.document_types


def test_unknown_country_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match="known: PE, MX, CO, CL"):
        country_profile("AR")


def test_document_countries_follow_the_profiles() -> None:
    assert DOCUMENT_COUNTRIES[DocumentType.DNI] == {Country.PE}
    assert DOCUMENT_COUNTRIES[DocumentType.CE] == {Country.PE, Country.CO}
    assert DOCUMENT_COUNTRIES[DocumentType.NIT] == {Country.CO}
    assert all(DOCUMENT_COUNTRIES[document_type] for document_type in DocumentType)


def test_core_banking_uses_the_same_rules_and_types() -> None:
    assert documents.normalise_document is normalise_document
    assert documents.InvalidDocument is InvalidDocument
    assert documents.DOCUMENT_COUNTRIES is DOCUMENT_COUNTRIES
    assert models.DocumentType is DocumentType
    assert models.Country is Country
