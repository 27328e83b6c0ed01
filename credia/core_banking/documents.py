"""Identity documents: one compact, validated form per document so that "10 117 410", "10117410-2" and
"10117410" find the same customer. Check digits come from python-stdnum, never re-implemented here.
"""

from __future__ import annotations

import re
from typing import Dict, FrozenSet

from stdnum.cl import rut
from stdnum.exceptions import ValidationError
from stdnum.mx import curp
from stdnum.pe import cui, ruc

from credia.core_banking.models import Country, DocumentType

DOCUMENT_COUNTRIES: Dict[DocumentType, FrozenSet[Country]] = {
    DocumentType.DNI: frozenset({Country.PE}),
    DocumentType.RUC: frozenset({Country.PE}),
    DocumentType.CE: frozenset({Country.PE, Country.CO}),
    DocumentType.RUT: frozenset({Country.CL}),
    DocumentType.CURP: frozenset({Country.MX}),
}
_SEPARATORS = re.compile(r"[\s.\-/]")
_CE_FORMAT = re.compile(r"^[A-Z0-9]{8,12}$")


class InvalidDocument(ValueError):
    """The document number does not have the format or check digit of its type."""


def compact(number: str) -> str:
    """Upper case without spaces, dots, dashes or slashes; what a look-up without a type compares."""
    return _SEPARATORS.sub("", number).upper()


def normalise_document(document_type: DocumentType, number: str) -> str:
    """Return the stored form of a document number, or raise ``InvalidDocument`` saying what is wrong.

    A DNI is stored as its 8 digits; the check character printed on the card (CUI) is accepted and verified
    but not kept, because customers usually give the number without it.
    """
    value = compact(number)
    try:
        if document_type is DocumentType.DNI:
            if not value.isalnum() or len(value) not in (8, 9):
                raise InvalidDocument("a DNI has 8 digits (optionally followed by its check character)")
            return cui.validate(value)[:8]
        if document_type is DocumentType.CE:
            if not _CE_FORMAT.match(value):
                raise InvalidDocument("a carné de extranjería has 8 to 12 letters or digits")
            return value
        if document_type is DocumentType.RUC:
            return ruc.validate(value)
        if document_type is DocumentType.RUT:
            return rut.validate(value)
        return curp.validate(value)
    except ValidationError as exc:
        raise InvalidDocument(f"invalid {document_type.value} number: {exc.message.lower().rstrip('.')}") from exc
