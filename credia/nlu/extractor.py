"""``SpanishValueExtractor``: amounts, terms, dates (full or relative to today), documents, e-mails, phones and
application codes as entities with normalised values, found by rules (``credia.values``) rather than learnt.

Values such as "S/ 5,000.50" or "dieciocho meses" are too varied to learn from examples and must come out
exact, so DIET keeps the words with meaning (product, employment type) and this component the values.
Use it in ``config.yml`` as ``- name: credia.nlu.extractor.SpanishValueExtractor`` (optional ``country``,
default ``PE``, for national phone numbers).

Entities added (``confidence`` 1.0, ``extractor`` "SpanishValueExtractor"):

==================  ==========================================  =============================================
entity              value                                       notes
==================  ==========================================  =============================================
amount              decimal string "5000.00"                    any number not followed by a unit, bare "3500"
                                                                too (it answers "¿cuánto gana?"); role
                                                                "income" when said as earnings, else no role
term_months         whole months as a string "18"; role          needs a unit ("meses", "años", "cuotas") or
                    "tenure" for time in a job ("hace 3 años")  "a/en/plazo de N"; a bare number is no term
date                ISO "1990-03-15"                            day, month and year, day first
relative_date       ISO "2026-12-11", a day from today on       "hoy", "mañana", "el viernes", "el 15", "el 2 de
                                                                enero", "fin de mes", "la quincena", "la próxima
                                                                semana", "en 5 días"; on the customer's calendar
document_number     compact "101174102", "BOXW310820HNERXN09"   check character kept; not yet validated
email               normalised address
phone               E.164 "+51987654321"
application_code    "SOL-7K3M9Q"
==================  ==========================================  =============================================

When two readings overlap ("987 654 321" is a phone, not an amount) the more specific one wins (see
``credia.values.find_values``); a span the rules cannot read is skipped, and no text makes the component raise.
"""

from __future__ import annotations

import logging
import re
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Dict, List, Optional, Text, Tuple
from zoneinfo import ZoneInfo

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.extractors.extractor import EntityExtractorMixin
from rasa.shared.nlu.constants import (
    ENTITIES,
    ENTITY_ATTRIBUTE_CONFIDENCE,
    ENTITY_ATTRIBUTE_END,
    ENTITY_ATTRIBUTE_ROLE,
    ENTITY_ATTRIBUTE_START,
    ENTITY_ATTRIBUTE_TYPE,
    ENTITY_ATTRIBUTE_VALUE,
    TEXT,
)
from rasa.shared.nlu.training_data.message import Message

from credia import values
from credia.identity import country_profile

logger = logging.getLogger(__name__)

# The entity types this extractor produces (time in a job comes out as term_months with a role).
ENTITY_TYPES = frozenset(
    {values.AMOUNT, values.TERM_MONTHS, values.DATE, values.RELATIVE_DATE, values.DOCUMENT_NUMBER, values.EMAIL,
     values.PHONE, values.APPLICATION_CODE}
)
INCOME_ROLE = "income"
# Time in a job is a number of months like a loan term; the role tells the form which question it answers.
TENURE_ROLE = "tenure"

_INCOME_BEFORE = re.compile(
    r"\b(?:gano|gane|ganaba|ganamos|gana|ganancias?|ingresos?|sueldos?|salarios?|percibo|percibimos|remuneracion(?:es)?"
    r"|me\s+pagan|nos\s+pagan)\b"
)
_INCOME_AFTER = re.compile(
    r"\s*(?:(?:soles|pesos|lucas|mensuales|al\s+mes|netos|brutos|aprox\w*)\s+)*"
    r"(?:de|como|en|es|son|es\s+lo\s+que)?\s*(?:mi|mis)?\s*"
    r"(?:sueldo|salario|ingresos?|ganancias?|remuneracion|gano|percibo|me\s+pagan)\b"
)
# A cue stops counting at the end of a sentence or when the customer moves on to what they want.
_CLAUSE_BREAK = re.compile(
    r"[.;!?\n]|\b(?:pero|quiero|quisiera|necesito|pido|solicito|prestamo|credito|pagar|pago|cuotas?|debo)\b"
)
_INCOME_WINDOW = 80


def _is_income(lowered: str, spans: List[Tuple[int, int]], index: int) -> bool:
    """Said as earnings: an income word earlier in the same clause ("gano 3500", "mi sueldo es de 2 mil")
    or right after the amount ("3500 de sueldo"), with no other value in between."""
    start, end = spans[index]
    before_start = spans[index - 1][1] if index else 0
    clause = _CLAUSE_BREAK.split(lowered[max(before_start, start - _INCOME_WINDOW):start])[-1]
    if _INCOME_BEFORE.search(clause):
        return True
    after_end = spans[index + 1][0] if index + 1 < len(spans) else len(lowered)
    return bool(_INCOME_AFTER.match(lowered[end:after_end]))


def _render(value: Any) -> str:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def extract_entities(text: str, country: str = "PE", today: Optional[date] = None) -> List[Dict[str, Any]]:
    """Rasa entity dictionaries for the values in ``text``, without overlaps, in order of appearance."""
    if not isinstance(text, str) or not text.strip():
        return []
    profile = country_profile(country)
    # "Mañana" and "not in the future" for a 2-digit year are judged on the customer's calendar (America/Lima for
    # Peru), not the server's: a server on UTC is already on the next day from 7 p.m. in Lima.
    today = today or datetime.now(ZoneInfo(profile.time_zone)).date()
    found = values.find_values(text, profile.phone_region, today)
    spans = [(item.start, item.end) for _kind, item in found]
    lowered = values.plain(text)
    entities = []
    for index, (kind, item) in enumerate(found):
        entity: Dict[str, Any] = {
            ENTITY_ATTRIBUTE_TYPE: values.TERM_MONTHS if kind == values.TENURE_MONTHS else kind,
            ENTITY_ATTRIBUTE_START: item.start,
            ENTITY_ATTRIBUTE_END: item.end,
            ENTITY_ATTRIBUTE_VALUE: _render(item.value),
            ENTITY_ATTRIBUTE_CONFIDENCE: 1.0,
        }
        if kind == values.AMOUNT and _is_income(lowered, spans, index):
            entity[ENTITY_ATTRIBUTE_ROLE] = INCOME_ROLE
        if kind == values.TENURE_MONTHS:
            entity[ENTITY_ATTRIBUTE_ROLE] = TENURE_ROLE
        entities.append(entity)
    return entities


@DefaultV1Recipe.register([DefaultV1Recipe.ComponentType.ENTITY_EXTRACTOR], is_trainable=False)
class SpanishValueExtractor(GraphComponent, EntityExtractorMixin):
    """Adds value entities (see the module docstring) to every message; nothing to train."""

    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        return {"country": "PE"}

    def __init__(self, config: Dict[Text, Any]) -> None:
        self._country = country_profile(config.get("country")).country.value  # fails at load on a typo

    @classmethod
    def create(
        cls,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> SpanishValueExtractor:
        return cls({**cls.get_default_config(), **config})

    def process(self, messages: List[Message]) -> List[Message]:
        for message in messages:
            try:
                found = extract_entities(message.get(TEXT) or "", self._country)
            except Exception:  # the safety net: one odd message must not fail the whole parse
                logger.exception("value extraction failed; the message keeps its other entities")
                found = []
            message.set(ENTITIES, message.get(ENTITIES, []) + self.add_extractor_name(found), add_to_output=True)
        return messages
