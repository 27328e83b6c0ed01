"""Countries the assistant serves and the identity documents of each, in one place for the whole project.

Every process (core banking, actions, NLU) validates a document through ``normalise_document`` so that
"10 117 410", "10117410-2" and "10117410" are the same customer everywhere. Check digits come from
python-stdnum, never re-implemented here. This module imports nothing from the services: they import it.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Callable, Dict, FrozenSet, Mapping, Tuple, Union

from stdnum.cl import rut
from stdnum.co import nit
from stdnum.exceptions import ValidationError
from stdnum.mx import curp
from stdnum.pe import cui, ruc


class Country(str, enum.Enum):
    PE = "PE"
    MX = "MX"
    CO = "CO"
    CL = "CL"


class DocumentType(str, enum.Enum):
    DNI = "DNI"  # Peru, national identity card
    CE = "CE"  # Peru and Colombia, carné / cédula de extranjería
    RUC = "RUC"  # Peru, taxpayer number
    RUT = "RUT"  # Chile, national and tax number
    CURP = "CURP"  # Mexico, population registry key
    CC = "CC"  # Colombia, cédula de ciudadanía (no check digit)
    NIT = "NIT"  # Colombia, tax number


@dataclass(frozen=True)
class CountryProfile:
    """What changes from one country to another: money, language, clock, phone numbers and documents."""

    country: Country
    name: str
    currency: str
    locale: str
    time_zone: str
    phone_region: str
    default_document_type: DocumentType
    document_types: Tuple[DocumentType, ...]


DEFAULT_COUNTRY = Country.PE

COUNTRY_PROFILES: Mapping[Country, CountryProfile] = {
    Country.PE: CountryProfile(
        Country.PE, "Perú", "PEN", "es_PE", "America/Lima", "PE", DocumentType.DNI,
        (DocumentType.DNI, DocumentType.CE, DocumentType.RUC),
    ),
    Country.MX: CountryProfile(
        Country.MX, "México", "MXN", "es_MX", "America/Mexico_City", "MX", DocumentType.CURP, (DocumentType.CURP,)
    ),
    Country.CO: CountryProfile(
        Country.CO, "Colombia", "COP", "es_CO", "America/Bogota", "CO", DocumentType.CC,
        (DocumentType.CC, DocumentType.CE, DocumentType.NIT),
    ),
    Country.CL: CountryProfile(
        Country.CL, "Chile", "CLP", "es_CL", "America/Santiago", "CL", DocumentType.RUT, (DocumentType.RUT,)
    ),
}

DOCUMENT_COUNTRIES: Dict[DocumentType, FrozenSet[Country]] = {
    document_type: frozenset(
        country for country, profile in COUNTRY_PROFILES.items() if document_type in profile.document_types
    )
    for document_type in DocumentType
}

_SEPARATORS = re.compile(r"[\s.\-/]")
_CE_FORMAT = re.compile(r"^[A-Z0-9]{8,12}$")
_CC_FORMAT = re.compile(r"^[0-9]{6,10}$")
_STDNUM_MODULES = {DocumentType.RUC: ruc, DocumentType.RUT: rut, DocumentType.CURP: curp, DocumentType.NIT: nit}


class InvalidDocument(ValueError):
    """The document number does not have the format or check digit of its type, or not in that country."""


def country_profile(country: Union[Country, str, None] = None) -> CountryProfile:
    """The profile of a country code such as ``"pe"``; the default country (Peru) when none is given."""
    if country is None:
        return COUNTRY_PROFILES[DEFAULT_COUNTRY]
    try:
        return COUNTRY_PROFILES[Country(str(getattr(country, "value", country)).strip().upper())]
    except ValueError:
        known = ", ".join(code.value for code in Country)
        raise ValueError(f"unknown country {country!r} (known: {known})") from None


def compact(number: str) -> str:
    """Upper case without spaces, dots, dashes or slashes; what a look-up without a type compares."""
    return _SEPARATORS.sub("", number).upper()


def normalise_document(
    document_type: DocumentType, number: str, country: Union[Country, str, None] = None
) -> str:
    """Return the stored form of a document number, or raise ``InvalidDocument`` saying what is wrong.

    A DNI is stored as its 8 digits; the check character printed on the card (CUI) is accepted and verified
    but not kept, because customers usually give the number without it. With ``country``, a document that
    country does not issue (a RUT in Peru) is refused too.
    """
    try:
        document_type = DocumentType(document_type)
    except ValueError:
        raise InvalidDocument(f"unknown document type {document_type!r}") from None
    if country is not None:
        profile = country_profile(country)
        if document_type not in profile.document_types:
            raise InvalidDocument(f"a {document_type.value} is not a document of {profile.country.value}")
    value = compact(number)
    if document_type is DocumentType.DNI:
        if not value.isalnum() or len(value) not in (8, 9):
            raise InvalidDocument("a DNI has 8 digits (optionally followed by its check character)")
        return _stdnum_validate(document_type, cui.validate, value)[:8]
    if document_type is DocumentType.CE:
        if not _CE_FORMAT.match(value):
            raise InvalidDocument("a carné de extranjería has 8 to 12 letters or digits")
        return value
    if document_type is DocumentType.CC:
        if not _CC_FORMAT.match(value):
            raise InvalidDocument("a cédula de ciudadanía has 6 to 10 digits")
        return value
    return _stdnum_validate(document_type, _STDNUM_MODULES[document_type].validate, value)


def _stdnum_validate(document_type: DocumentType, validate: Callable[[str], str], value: str) -> str:
    try:
        return validate(value)
    except ValidationError as exc:
        raise InvalidDocument(f"invalid {document_type.value} number: {exc.message.lower().rstrip('.')}") from exc

