"""Identity documents for core banking; the rules live in ``credia.identity``, shared by every process."""

from credia.identity import DOCUMENT_COUNTRIES, InvalidDocument, compact, normalise_document

__all__ = ["DOCUMENT_COUNTRIES", "InvalidDocument", "compact", "normalise_document"]
