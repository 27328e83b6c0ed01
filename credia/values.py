"""What customers type, read into typed values: amounts, terms, dates, e-mails, phones, documents, codes.

Customers write "5 mil", "S/ 5,000.50", "dos mil quinientos soles", "año y medio", "15 de marzo del 90",
"el viernes" or "987 654 321", on a phone keyboard, often without accents. Each ``parse_*`` reads the answer
to one question and raises ``ValueParseError`` with a short English reason (the bot says it in Spanish
elsewhere); each ``extract_*`` finds values inside a longer sentence, with their position, for the NLU entity
extractor.

Matching runs on a folded copy of the text (lower case, accents removed, number words turned into digits)
that remembers where every character came from, so positions always refer to the customer's own text.
"""

from __future__ import annotations

import calendar
import re
import unicodedata
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import (
    Any,
    Callable,
    Dict,
    FrozenSet,
    Generic,
    Iterable,
    Iterator,
    List,
    Match,
    Optional,
    Tuple,
    TypeVar,
    Union,
)

import dateparser
import phonenumbers
from email_validator import EmailNotValidError, validate_email
from text_to_num import text2num

CENT = Decimal("0.01")
MAX_AMOUNT = Decimal("1000000000")
MAX_TERM_MONTHS = 360
MIN_YEAR = 1900
MAX_YEAR = 2100

V = TypeVar("V")


class ValueParseError(ValueError):
    """The text does not hold the value asked for; the message says why, in English, for logs and the bot."""


@dataclass(frozen=True)
class Found(Generic[V]):
    """A value found in a sentence; ``start``/``end`` index the original text.

    ``explicit`` is False when only the shape says what it is (a bare "3500", "a 24", a 9-digit mobile) and
    True when the text names it (a currency, "mil", "meses", "+51"), so the extractor can settle overlaps.
    """

    start: int
    end: int
    value: V
    explicit: bool = True


# --- folding: lower case, no accents, number words as digits, positions kept --------------------------------

_NUMBER_WORDS: FrozenSet[str] = frozenset(
    """cero un uno una dos tres cuatro cinco seis siete ocho nueve diez once doce trece catorce quince dieciseis
    diecisiete dieciocho diecinueve veinte veintiun veintiuno veintiuna veintidos veintitres veinticuatro
    veinticinco veintiseis veintisiete veintiocho veintinueve treinta cuarenta cincuenta sesenta setenta ochenta
    noventa cien ciento doscientos doscientas trescientos trescientas cuatrocientos cuatrocientas quinientos
    quinientas seiscientos seiscientas setecientos setecientas ochocientos ochocientas novecientos novecientas
    mil millon millones""".split()
)
# text2num wants these accents back; every other number word it reads without them.
_TEXT2NUM_SPELLING = {"veintiun": "veintiuno", "veintidos": "veintidós", "veintitres": "veintitrés",
                      "veintiseis": "veintiséis"}
_MULTIPLIER_WORDS = frozenset({"mil", "millon", "millones"})
_ARTICLES = frozenset({"un", "una", "uno"})
# "mil gracias" is thanks, not money.
_NOT_AFTER_MIL = frozenset({"gracias", "disculpas", "perdon", "perdones", "veces", "maneras", "bendiciones"})
_MAX_RUN = 12  # longest number in words: "dos millones novecientos noventa y nueve mil novecientos noventa y nueve"
_WORD = re.compile(r"[a-z]+")
_NEXT_WORD = re.compile(r"\s+([a-z]+)")
_GLUED_AFTER = re.compile(r"[0-9@]|[._\-][a-z0-9]")


@dataclass(frozen=True)
class _Folded:
    """The folded text and, for each of its characters, the span of the original text it stands for."""

    text: str
    starts: Tuple[int, ...]
    ends: Tuple[int, ...]
    source: str  # folded character by character, before number words become digits: indexed like the original

    def span(self, start: int, end: int) -> Tuple[int, int]:
        return self.starts[start], self.ends[end - 1]


def plain(text: str) -> str:
    """Lower case without accents, character for character, so positions in it are positions in ``text``."""
    return "".join((unicodedata.normalize("NFD", char)[:1] or char).lower()[:1] or char for char in text)


@lru_cache(maxsize=64)
def _fold(text: str) -> _Folded:
    folded = plain(text)
    out: List[str] = []
    starts: List[int] = []
    ends: List[int] = []
    position = 0
    for run in _number_word_runs(folded):
        for start, end, digits in _convert_run(folded, run):
            out.append(folded[position:start])
            starts.extend(range(position, start))
            ends.extend(range(position + 1, start + 1))
            out.append(digits)
            starts.extend([start] * len(digits))
            ends.extend([end] * len(digits))
            position = end
    out.append(folded[position:])
    starts.extend(range(position, len(folded)))
    ends.extend(range(position + 1, len(folded) + 1))
    return _Folded("".join(out), tuple(starts), tuple(ends), folded)


def _is_number_word(folded: str, match: Match[str]) -> bool:
    """A number word standing alone, not part of an address or a code ("dos@...", "SOL-UNO123")."""
    start, end = match.span()
    return (
        match.group() in _NUMBER_WORDS
        and not (start and folded[start - 1] in "0123456789@._-")
        and not _GLUED_AFTER.match(folded, end)
    )


def _follows_digits(folded: str, start: int) -> bool:
    index = start - 1
    while index >= 0 and folded[index].isspace():
        index -= 1
    return index >= 0 and folded[index].isdigit()


def _number_word_runs(folded: str) -> Iterator[List[Tuple[int, int, str]]]:
    """Runs of number words separated by spaces or "y" ("dos mil quinientos", "treinta y seis"). A "mil"
    right after digits ("5 mil") is left as a word: the amount pattern reads it as a multiplier."""
    run: List[Tuple[int, int, str]] = []
    kept_multiplier_end = -1  # "5 mil millones": every multiplier after the digits stays a word
    for match in _WORD.finditer(folded):
        word, start, end = match.group(), match.start(), match.end()
        spaced = bool(run) and folded[run[-1][1]:start].isspace()
        if word == "y" and spaced:
            run.append((start, end, word))
            continue
        number = _is_number_word(folded, match)
        if run and not (spaced and number):
            yield _without_trailing_and(run)
            run = []
        if number and not run and word in _MULTIPLIER_WORDS and (
            _follows_digits(folded, start) or kept_multiplier_end >= 0 and folded[kept_multiplier_end:start].isspace()
        ):
            kept_multiplier_end = end
        elif number:
            run.append((start, end, word))
    if run:
        yield _without_trailing_and(run)


def _without_trailing_and(run: List[Tuple[int, int, str]]) -> List[Tuple[int, int, str]]:
    while run and run[-1][2] == "y":
        run = run[:-1]
    return run


def _convert_run(folded: str, run: List[Tuple[int, int, str]]) -> Iterator[Tuple[int, int, str]]:
    """Digits for each number in a run, reading the longest prefix text2num accepts ("dos tres" is 2 and 3)."""
    if [word for _s, _e, word in run] == ["mil"]:
        following = _NEXT_WORD.match(folded, run[0][1])
        if following and following.group(1) in _NOT_AFTER_MIL:
            return
    index = 0
    while index < len(run):
        for length in range(min(_MAX_RUN, len(run) - index), 0, -1):
            words = run[index:index + length]
            if words[0][2] == "y" or words[-1][2] == "y":
                continue
            try:
                value = text2num(" ".join(_TEXT2NUM_SPELLING.get(w, w) for _s, _e, w in words), "es")
            except ValueError:
                continue
            yield words[0][0], words[-1][1], str(value)
            index += length
            break
        else:
            index += 1


# --- shared patterns (on folded text) --------------------------------------------------------------------------

_DIGITS = (
    r"(?:\d{1,3}(?:,\d{3})+(?:\.\d{1,2})?"  # 5,000 / 5,000.50
    r"|\d{1,3}(?:\.\d{3})+(?:,\d{1,2})?"  # 5.000 / 5.000,50 (a dot before exactly 3 digits groups thousands)
    r"|\d{1,3}(?:[ \u00a0\u202f]\d{3})+(?:[.,]\d{1,2})?"  # 8 000
    r"|\d+(?:[.,]\d{1,2})?)"  # 5000 / 1.5 / 1,5
    r"(?!\d|[.,]\d)"
)
_MONTHS: Dict[str, int] = {
    "enero": 1, "ene": 1, "febrero": 2, "feb": 2, "marzo": 3, "mar": 3, "abril": 4, "abr": 4, "mayo": 5,
    "may": 5, "junio": 6, "jun": 6, "julio": 7, "jul": 7, "agosto": 8, "ago": 8, "septiembre": 9,
    "setiembre": 9, "sept": 9, "sep": 9, "set": 9, "octubre": 10, "oct": 10, "noviembre": 11, "nov": 11,
    "diciembre": 12, "dic": 12,
}
_MONTH = "(?:" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")(?![a-z])\.?"
_UNIT = (
    r"(?:meses|mes|mese|anos|ano|anios|anio|cuotas|cuota|mensualidades|mensualidad|dias|dia|semanas|semana"
    r"|quincenas|quincena|horas|hora|minutos|hijos|hijas|personas|veces|%|por\s*ciento)(?![a-z])"
)
_CURRENCY_BEFORE = r"(?<![a-z])(?:s\s?/\.?|s\./|pen|mxn|cop|clp)|\$"
_CURRENCY_AFTER = r"nuevos\s+soles|soles|sol|pesos|peso|lucas|luca|lukas|luka|pen|mxn|cop|clp"
_FOREIGN_AFTER = re.compile(r"\s*(?:de\s+)?(?:dolares|dolar|usd|euros|euro)(?![a-z])")
_FOREIGN_BEFORE = re.compile(r"(?:us|usd)\s*\$?\s*$")
_MULTIPLIERS = {
    "mil": 1000, "miles": 1000, "k": 1000, "millon": 1_000_000, "millones": 1_000_000, "mil millones": 1_000_000_000
}

_AMOUNT = re.compile(
    rf"""
    (?:(?P<cur_pre>{_CURRENCY_BEFORE})\s*|(?<![\w.,:/@\-+]))
    (?P<num>{_DIGITS})
    (?:\s*(?P<mult>mil\s+millones|mil|miles|millones|millon|k)(?![a-z])
        (?:\s+(?:y\s+)?(?P<addend>\d{{1,3}})(?![\d.,]|\s*(?:mil|{_UNIT})))?
    )?
    (?:\s*(?:de\s+)?(?P<cur_post>{_CURRENCY_AFTER})(?![a-z]))?
    (?![a-z\d]|/\d)
    """,
    re.VERBOSE,
)
# "18 meses", "30%", "5:30", "el 15 de marzo": a number, but not money.
_NOT_MONEY_AFTER = re.compile(rf"\s*{_UNIT}|:\d|\s+de\s+{_MONTH}")
_YEAR_CONTEXT = re.compile(r"(?<![a-z])(?:desde|del|en|hasta|ano|anos)\s+$")
# "el 15", "a las 5", "opción 2", "calle 28": a day, an hour, a choice, an address; not money unless it says so.
_NOT_MONEY_BEFORE = re.compile(
    r"(?<![a-z])(?:el|la|las|los|opcion|numero|nro|n[°º]|dia|hora|piso|calle|jr|av|avenida|mz|lote|dpto)\.?\s*$|#\s*$"
)
_NEGATIVE = re.compile(rf"^\s*(?:(?:{_CURRENCY_BEFORE})\s*)?(?:-|menos\s)")


# --- amounts -------------------------------------------------------------------------------------------------------


def _digits_value(text: str) -> Decimal:
    text = re.sub(r"[ \u00a0\u202f]", "", text)
    if re.fullmatch(r"\d{1,3}(?:,\d{3})+(?:\.\d{1,2})?", text):
        return Decimal(text.replace(",", ""))
    if re.fullmatch(r"\d{1,3}(?:\.\d{3})+(?:,\d{1,2})?", text):
        return Decimal(text.replace(".", "").replace(",", "."))
    return Decimal(text.replace(",", "."))


def _scan_amounts(folded: _Folded) -> Iterator[Tuple[int, int, Union[Decimal, ValueParseError], bool]]:
    text = folded.text
    for match in _AMOUNT.finditer(text):
        start, end = match.span()
        explicit = bool(match["cur_pre"] or match["cur_post"] or match["mult"])
        if not match["cur_post"] and not match["mult"] and _NOT_MONEY_AFTER.match(text, end):
            continue
        value = _digits_value(match["num"])
        if match["mult"]:
            value = value * _MULTIPLIERS[" ".join(match["mult"].split())] + Decimal(match["addend"] or 0)
        if not explicit:
            if folded.source[slice(*folded.span(start, end))] in _ARTICLES:
                continue  # "quiero un préstamo"
            if _NOT_MONEY_BEFORE.search(text, max(0, start - 10), start):
                continue
            if value == value.to_integral() and MIN_YEAR <= value <= MAX_YEAR and _YEAR_CONTEXT.search(
                text, max(0, start - 10), start
            ):
                continue  # "desde 2019"
        num_start = match.start("num")
        if _FOREIGN_AFTER.match(text, end) or _FOREIGN_BEFORE.search(text, max(0, num_start - 8), num_start):
            yield (*folded.span(start, end), ValueParseError("amount is in a foreign currency"), explicit)
        elif value <= 0:
            yield (*folded.span(start, end), ValueParseError("amount must be greater than zero"), explicit)
        elif value > MAX_AMOUNT:
            yield (*folded.span(start, end), ValueParseError("amount is too large"), explicit)
        else:
            yield (*folded.span(start, end), value.quantize(CENT, ROUND_HALF_UP), explicit)


def extract_amounts(text: str) -> List[Found[Decimal]]:
    """Amounts of money in a sentence, in local currency with 2 decimals. A bare number counts ("3500" answers
    "¿cuánto gana?"), but not one followed by a unit ("18 meses", "30%"), nor "un" in "un préstamo"."""
    return [Found(s, e, v, x) for s, e, v, x in _scan_amounts(_fold(text)) if isinstance(v, Decimal)]


def parse_amount(text: str) -> Decimal:
    """The amount a customer answers to "¿cuánto?": "5 mil", "S/ 5,000.50", "mil quinientos", "3500".
    A number that reads better as something else (a DNI, a phone, a date) is not taken for an amount."""
    if _NEGATIVE.search(_fold(text).text):
        raise ValueParseError("amount must be positive")
    amount = _single_value(text, AMOUNT, "amounts", _scan_amounts)
    if amount is None:
        raise ValueParseError("no amount found")
    return amount


# --- terms ---------------------------------------------------------------------------------------------------------

_TERM = re.compile(
    r"""
    (?<![\w.,/])
    (?:(?P<num>\d+(?:[.,]\d{1,2})?)\s*
         (?P<unit>meses|mes|mese|cuotas|cuota|mensualidades|mensualidad|anos|ano|anios|anio)(?![a-z])
         (?P<half>\s+y\s+medio)?
      |(?P<half_year>medio\s+ano)(?![a-z])
      |(?P<year_and_half>ano\s+y\s+medio)(?![a-z])
    )
    """,
    re.VERBOSE,
)
_WEAK_TERM = re.compile(
    r"(?<![a-z])(?:a|en|plazo(?:\s+de)?)\s+(?P<num>\d{1,3})"
    r"(?=\s*(?:$|[,;!?)]|\.(?!\d)|(?:y|o|por|porfa|gracias|para|con|de\s+plazo|si|no|pls|plis)(?![a-z])))"
)
# "hace 3 años", "tengo 35 años", "debo 2 cuotas", "6 meses de atraso": time or debt, not a loan term.
_NOT_TERM_BEFORE = re.compile(
    r"(?<![a-z])(?:hace|tengo|tiene|tenemos|tienen|llevo|lleva|llevamos|desde|pague|pagado|pagamos|debo|debe|debemos"
    r"|adeudo|faltan|falta|edad|antiguedad|trabajo|trabajando|laborando|vivo|atrasado|atrasada|vencido|vencida)"
    r"(?:\s+\S+)?\s+$"
)
_NOT_TERM_AFTER = re.compile(
    r"\s*(?:de\s+(?:edad|antiguedad|atraso|mora|casad[oa]s?|trabajo|servicio)|trabajando|laborando|atras"
    r"|vencid|atrasad|pendiente|sin\s+pagar|impag|en\s+(?:la|mi|el)\s+(?:empresa|trabajo|chamba))"
)
_MONTHS_PER_UNIT = {"mes": 1, "cuota": 1, "mensualidad": 1, "ano": 12, "anio": 12}


def _term_value(number: Decimal, unit: str, half: bool) -> int:
    per_unit = next(months for prefix, months in _MONTHS_PER_UNIT.items() if unit.startswith(prefix))
    months = number * per_unit + (Decimal(per_unit) / 2 if half else 0)
    if months <= 0:
        raise ValueParseError("term must be at least one month")
    if months != months.to_integral():
        raise ValueParseError("term must be a whole number of months")
    if months > MAX_TERM_MONTHS:
        raise ValueParseError(f"term is longer than {MAX_TERM_MONTHS} months")
    return int(months)


def _term_match_months(match: "re.Match[str]") -> int:
    """The months a match of ``_TERM`` stands for ("medio año", "año y medio", "18 meses", "2 años")."""
    if match["half_year"]:
        return 6
    if match["year_and_half"]:
        return 18
    return _term_value(Decimal(match["num"].replace(",", ".")), match["unit"], bool(match["half"]))


def _scan_terms(folded: _Folded) -> Iterator[Tuple[int, int, Union[int, ValueParseError], bool]]:
    text = folded.text
    for match in _TERM.finditer(text):
        start, end = match.span()
        if _NOT_TERM_BEFORE.search(text, max(0, start - 40), start) or _NOT_TERM_AFTER.match(text, end):
            continue
        try:
            value = _term_match_months(match)
        except ValueParseError as error:
            yield (*folded.span(start, end), error, True)
            continue
        yield (*folded.span(start, end), value, True)
    for match in _WEAK_TERM.finditer(text):
        value = int(match["num"])
        if 1 <= value <= MAX_TERM_MONTHS:
            yield (*folded.span(*match.span()), value, False)


# "hace 3 años", "llevo 8 meses trabajando", "2 años de antigüedad": how long someone has worked somewhere.
_TENURE_BEFORE = re.compile(
    r"(?<![a-z])(?:hace|llevo|lleva|llevamos|antiguedad|trabajo|trabajando|laborando)(?:\s+\S+)?\s+$"
)
_TENURE_AFTER = re.compile(
    r"\s*(?:de\s+(?:antiguedad|trabajo|servicio)|trabajando|laborando"
    r"|en\s+(?:la|mi|el)\s+(?:empresa|trabajo|chamba|negocio))"
)


def extract_tenures(text: str) -> List[Found[int]]:
    """Time in a job or business, in months: "hace 3 años", "llevo 8 meses", "2 años de antigüedad"."""
    folded = _fold(text)
    found = []
    for match in _TERM.finditer(folded.text):
        start, end = match.span()
        if not (_TENURE_BEFORE.search(folded.text, max(0, start - 40), start) or _TENURE_AFTER.match(folded.text, end)):
            continue
        try:
            found.append(Found(*folded.span(start, end), _term_match_months(match), True))
        except ValueParseError:
            continue
    return found


def extract_terms(text: str) -> List[Found[int]]:
    """Loan terms in months: "18 meses", "dos años", "año y medio", "36 cuotas"; "a 24" is found but not
    explicit. A bare number is never a term here."""
    return [Found(s, e, v, x) for s, e, v, x in _scan_terms(_fold(text)) if isinstance(v, int)]


def parse_term_months(text: str) -> int:
    """The term a customer answers to "¿en cuántos meses?": "18 meses", "dos años", "año y medio", "24"."""
    term = _single_value(text, TERM_MONTHS, "terms", _scan_terms)
    if term is not None:
        return term
    folded = _fold(text)
    if re.match(r"\s*-", folded.text):
        raise ValueParseError("term must be at least one month")
    alone = re.fullmatch(r"\s*(?:(?:a|en|plazo(?:\s+de)?)\s+)?(?P<num>\d+(?:[.,]\d+)?)\s*[.!]?\s*", folded.text)
    if alone:
        return _term_value(Decimal(alone["num"].replace(",", ".")), "mes", False)
    raise ValueParseError("no term found")


# --- dates ---------------------------------------------------------------------------------------------------------

_DATE = re.compile(
    rf"""
    (?<![\w./\-])
    (?:(?P<d>\d{{1,2}})(?P<sep>[/\-.])(?P<m>\d{{1,2}})(?P=sep)(?P<y>\d{{4}}|\d{{2}})
      |(?P<iy>\d{{4}})(?P<isep>[/\-.])(?P<im>\d{{1,2}})(?P=isep)(?P<id>\d{{1,2}})
      |(?P<td>\d{{1,2}}|primero|1ro|1ero|1[°º])(?:\s*[\-/]\s*|\s+)(?:de\s+)?(?P<tm>{_MONTH})
        (?:\s*[\-/,]\s*|\s+)(?:(?:de|del)\s+)?(?:(?:ano|anio)\s+)?'?(?P<ty>\d{{4}}|\d{{2}})
      |(?P<mm>{_MONTH})\s+(?P<md>\d{{1,2}})(?:\s*,\s*|\s+)(?:(?:de|del)\s+)?(?P<my>\d{{4}})
    )
    (?![\w]|[/\-.]\d|\s*{_UNIT})
    """,
    re.VERBOSE,
)
_DATEPARSER_SETTINGS = {
    "DATE_ORDER": "DMY",
    "REQUIRE_PARTS": ["day", "month", "year"],
    "STRICT_PARSING": True,
    "PARSERS": ["custom-formats", "absolute-time"],  # never "mañana" or "hace 3 años" for a birth date
}


def _full_year(year: str, month: int, day: int, today: date) -> int:
    """A 2-digit year is the latest year ending in those digits that is not in the future (birth dates)."""
    if len(year) == 4:
        return int(year)
    recent = 2000 + int(year)
    try:
        if date(recent, month, day) <= today:
            return recent
    except ValueError:
        pass
    return recent - 100


def _day_number(day: str) -> int:
    return int(day) if day.isdigit() else 1  # "primero", "1ro", "1°"


def _date_value(day: str, month: Union[str, int], year: str, today: date) -> date:
    day_number = _day_number(day)
    month_number = month if isinstance(month, int) else int(month)
    full_year = _full_year(year, month_number, day_number, today)
    if not MIN_YEAR <= full_year <= MAX_YEAR:
        raise ValueParseError(f"year {full_year} is out of range")
    try:
        return date(full_year, month_number, day_number)
    except ValueError:
        raise ValueParseError(f"no such date: day {day_number}, month {month_number}, year {full_year}") from None


def _scan_dates(folded: _Folded, today: date) -> Iterator[Tuple[int, int, Union[date, ValueParseError]]]:
    for match in _DATE.finditer(folded.text):
        try:
            if match["d"]:
                value = _date_value(match["d"], match["m"], match["y"], today)
            elif match["iy"]:
                value = _date_value(match["id"], match["im"], match["iy"], today)
            elif match["td"]:
                value = _date_value(match["td"], _MONTHS[match["tm"].rstrip(".")], match["ty"], today)
            else:
                value = _date_value(match["md"], _MONTHS[match["mm"].rstrip(".")], match["my"], today)
        except ValueParseError as error:
            yield (*folded.span(*match.span()), error)
            continue
        yield (*folded.span(*match.span()), value)


def extract_dates(text: str, today: Optional[date] = None) -> List[Found[date]]:
    """Full dates (day, month and year), day first: "15/03/1990", "15 de marzo del 90", "1990-03-15"."""
    today = today or date.today()
    return [Found(s, e, v) for s, e, v in _scan_dates(_fold(text), today) if isinstance(v, date)]


def parse_date(text: str, today: Optional[date] = None) -> date:
    """A full date, day first (as written in Latin America); "31/02/1990" is refused, not moved to March."""
    today = today or date.today()
    scanned = list(_scan_dates(_fold(text), today))
    dates = _distinct(value for _s, _e, value in scanned if isinstance(value, date))
    if len(dates) > 1:
        raise ValueParseError("several dates: " + ", ".join(v.isoformat() for v in dates))
    if dates:
        return dates[0]
    errors = [value for _s, _e, value in scanned if isinstance(value, ValueParseError)]
    if errors:
        raise errors[0]
    # The long tail ("15 / 03 / 1990", "1990 marzo 15") is left to dateparser: absolute dates only.
    parsed = dateparser.parse(text[:200], languages=["es"], settings=_DATEPARSER_SETTINGS)
    if parsed is not None and MIN_YEAR <= parsed.year <= MAX_YEAR:
        return parsed.date()
    raise ValueParseError("no date with day, month and year found")


# --- relative dates ------------------------------------------------------------------------------------------------

_WEEKDAYS: Dict[str, int] = {
    "lunes": 0, "martes": 1, "miercoles": 2, "jueves": 3, "viernes": 4, "sabado": 5, "domingo": 6
}
_WEEKDAY = "(?:" + "|".join(_WEEKDAYS) + ")"
_DAY_OF_MONTH = r"(?:1ro|1ero|1[°º]|primero|\d{1,2})"
# "el 15", "el día 15", "antes del 15", "el viernes 15": without such a cue a bare "15" stays an amount. A day
# with its month needs none and leaves "el" out, as a full date does ("el [2 de enero]").
_WEEKDAY_CUE = rf"(?:(?:el\s+|este\s+)?{_WEEKDAY}\s+(?:dia\s+)?)"
_DAY_CUE = rf"(?:{_WEEKDAY_CUE}|(?:el\s+)?dia\s+|el\s+|(?:(?<=antes\s)|(?<=despues\s)|(?<=partir\s))del\s+)"
_NEXT_WEEK = (
    r"(?:(?:la\s+)?(?:proxima|siguiente)\s+semana|la\s+semana\s+(?:que\s+viene|proxima|entrante|siguiente)"
    r"|la\s+otra\s+semana)"
)
_NOT_DAY_AFTER = (
    rf"\s*(?:{_UNIT}|(?:mil|miles|millon|millones|k)(?![a-z])"
    rf"|(?:de\s+)?(?:{_CURRENCY_AFTER}|dolares|dolar|usd|euros|euro)(?![a-z]))|\s+de\s+(?:\d|{_MONTH})"
)
_RELATIVE_DATE = re.compile(
    rf"""
    (?<![\w./\-])
    (?:{_WEEKDAY_CUE}?(?P<dm_day>{_DAY_OF_MONTH})(?:\s*[\-/]\s*|\s+)(?:de\s+)?(?P<dm_month>{_MONTH})  # 2 de enero
      |{_DAY_CUE}(?P<day>{_DAY_OF_MONTH})  # el 15, el día 15, el viernes 15 (not "el 15 %", "el 15 soles")
        (?:\s+(?P<this_month>de\s+este\s+mes)
          |\s+(?P<next_month>del\s+(?:proximo|siguiente)\s+mes|del\s+mes\s+que\s+viene))?
        (?!{_NOT_DAY_AFTER})
      |(?:(?P<this_weekday>este)\s+|el\s+(?:(?:proximo|otro)\s+)?|(?:proximo|otro)\s+)?(?P<weekday>{_WEEKDAY})
        (?:\s+(?:que\s+viene|proximo))?(?:\s+de\s+(?P<week_after>{_NEXT_WEEK}))?  # el lunes (de la otra semana)
      |(?P<today>hoy(?:\s+(?:dia|mismo))?)(?!\s+en\s+dia)  # not "hoy en día" (nowadays)
      |(?P<day_after_tomorrow>pasado\s+manana)
      |(?P<tomorrow>manana)
      |(?P<month_end>(?:fin|fines|finales)\s+(?:de|del)\s+(?:este\s+)?mes)  # "a fin de mes" without the "a"
      |(?P<fortnight>(?:fin|fines|finales)\s+de\s+(?:la\s+)?quincena|(?:la\s+|esta\s+)?(?<!\d\s)quincena)
        (?!\s+(?:de|del)\s+(?:\d|{_MONTH}))  # not "la quincena de enero"
      |(?P<next_week>{_NEXT_WEEK})
      |(?:dentro\s+de|de\s+aqui\s+a|en)\s+(?P<count>\d{{1,3}})
        \s+(?P<count_unit>dias|dia|semanas|semana|quincenas|quincena)
        (?!\s+(?:de\s+)?(?:atraso|mora|retraso|vencid|atrasad))  # not "en 30 días de atraso"
    )
    (?![\w°º]|[.,:/\-]\d|\s+(?:pasad[oa]s?|anterior(?:es)?)(?![a-z]))  # not "el viernes pasado"
    """,
    re.VERBOSE,
)
# "en la mañana", "esta mañana": the morning, not tomorrow. "los viernes", "cada quincena": a habit, not a day.
_MORNING_BEFORE = re.compile(r"(?<![a-z])(?:la|las|esta|una|cada|toda)\s+$")
_HABIT_BEFORE = re.compile(r"(?<![a-z])(?:los|cada)\s+$")
_NOT_THIS_FORTNIGHT_BEFORE = re.compile(
    r"(?<![a-z])(?:cada|por|primera|segunda|1ra|2da|ultima|proxima|siguiente|otra|media)\s+$"
)
_MAX_DAYS_AHEAD = 366
_DAYS_PER_UNIT = {"dia": 1, "semana": 7, "quincena": 15}


def _month_length(year: int, month: int) -> int:
    return calendar.monthrange(year, month)[1]


def _next_month(today: date) -> Tuple[int, int]:
    return (today.year + 1, 1) if today.month == 12 else (today.year, today.month + 1)


def _day_in_month(year: int, month: int, day: int) -> date:
    """"El 31" in a shorter month is its last day: the customer means the end of that month."""
    return date(year, month, min(day, _month_length(year, month)))


def _next_day_and_month(day: int, month: int, today: date) -> Optional[date]:
    """The next time that day and month come round, today included; 9 years always hold a 29 February."""
    for year in range(today.year, today.year + 9):
        try:
            candidate = date(year, month, day)
        except ValueError:
            continue
        if candidate >= today:
            return candidate
    return None


def _relative_value(match: Match[str], today: date) -> Optional[date]:
    """The day a match of ``_RELATIVE_DATE`` means, seen from ``today``; None when it is no future day."""
    if match["dm_day"]:
        return _next_day_and_month(_day_number(match["dm_day"]), _MONTHS[match["dm_month"].rstrip(".")], today)
    if match["day"]:
        day = _day_number(match["day"])
        if not 1 <= day <= 31 or match["this_month"] and day < today.day:
            return None
        if match["next_month"] or day < today.day:
            return _day_in_month(*_next_month(today), day)
        return _day_in_month(today.year, today.month, day)
    next_monday = today + timedelta(days=7 - today.weekday())
    if match["weekday"]:
        weekday = _WEEKDAYS[match["weekday"]]
        if match["week_after"]:
            return next_monday + timedelta(days=weekday)
        ahead = (weekday - today.weekday()) % 7
        return today + timedelta(days=ahead or (0 if match["this_weekday"] else 7))  # "este lunes" on a Monday
    month_end = _day_in_month(today.year, today.month, 31)
    if match["today"]:
        return today
    if match["tomorrow"]:
        return today + timedelta(days=1)
    if match["day_after_tomorrow"]:
        return today + timedelta(days=2)
    if match["month_end"]:
        return month_end
    if match["fortnight"]:
        return today.replace(day=15) if today.day <= 15 else month_end
    if match["next_week"]:
        return next_monday
    days = int(match["count"]) * _DAYS_PER_UNIT[match["count_unit"].rstrip("s")]
    return today + timedelta(days=days) if 1 <= days <= _MAX_DAYS_AHEAD else None


def _is_other_sense(folded: _Folded, match: Match[str]) -> bool:
    """"En la mañana" (the morning), "los viernes" (every Friday), "por quincena" (how often). The words before
    are read as typed: "una mañana" is not "1 mañana", and "500 mañana" is money, then tomorrow."""
    start = folded.starts[match.start()]
    before = folded.source[max(0, start - 20):start]
    if match["tomorrow"]:
        return bool(_MORNING_BEFORE.search(before))
    if match["weekday"]:
        return bool(_HABIT_BEFORE.search(before))
    if match["fortnight"]:
        return bool(_NOT_THIS_FORTNIGHT_BEFORE.search(before))
    return False


def extract_relative_dates(text: str, today: Optional[date] = None) -> List[Found[date]]:
    """Future days said from today, without a year, as customers promise a payment: "hoy", "mañana", "pasado
    mañana", "el viernes", "el 15", "el 2 de enero", "fin de mes", "la quincena", "la próxima semana", "en 5
    días". Words that may also be money or a full date ("15", "15 de marzo del 90") are left to those readers."""
    today = today or date.today()
    folded = _fold(text)
    full_dates = [match.span() for match in _DATE.finditer(folded.text)]
    found = []
    for match in _RELATIVE_DATE.finditer(folded.text):
        start, end = match.span()
        inside_date = any(start < date_end and date_start < end for date_start, date_end in full_dates)
        names_date = any(begin >= end and not folded.text[end:begin].strip(" ,") for begin, _end in full_dates)
        if inside_date or names_date:
            continue  # "el 15 de marzo del 90" is a full date; in "el viernes, 15/12/2026" the weekday only names it
        if _is_other_sense(folded, match):
            continue
        value = _relative_value(match, today)
        if value is not None:
            found.append(Found(*folded.span(start, end), value))
    return found


# --- e-mail --------------------------------------------------------------------------------------------------------

_EMAIL = re.compile(
    r"(?<![\w.%+\-])[\w.%+\-]+(?:\s+punto\s+[\w%+\-]+)*(?:@|\s+arroba\s+)[a-z0-9\-]+"
    r"(?:(?:\.|\s+punto\s+)[a-z0-9\-]+)+"
)


def normalise_email(text: str) -> str:
    """The e-mail address in the text, checked for syntax (no DNS: no network at run time) and normalised.

    Spoken addresses from the phone channel ("juan arroba gmail punto com") are read too.
    """
    found = extract_emails(text)
    addresses = {item.value for item in found}
    if len(addresses) > 1:
        raise ValueParseError("several e-mail addresses")
    if addresses:
        return addresses.pop()
    return _validate_email(text.strip())


def _validate_email(text: str) -> str:
    address = re.sub(r"\s+arroba\s+", "@", text, flags=re.IGNORECASE)
    address = re.sub(r"\s+punto\s+", ".", address, flags=re.IGNORECASE)
    try:
        return validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueParseError(f"not an e-mail address: {str(exc).rstrip('.').lower()}") from None


def extract_emails(text: str) -> List[Found[str]]:
    """E-mail addresses in a sentence, normalised; malformed ones are left out."""
    folded = _fold(text)
    found = []
    for match in _EMAIL.finditer(folded.text):
        start, end = folded.span(*match.span())
        try:
            found.append(Found(start, end, _validate_email(text[start:end])))
        except ValueParseError:
            continue
    return found


# --- phones --------------------------------------------------------------------------------------------------------

_MOBILE_TYPES = (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE)


def normalise_phone(text: str, region: str = "PE") -> str:
    """A phone number in E.164 ("+51987654321"), from "987 654 321", "+51 987-654-321" or "51987654321";
    national numbers are read in ``region`` (the country profile's phone region)."""
    found = {item.value for item in extract_phones(text, region, mobile_only=False)}
    if len(found) > 1:
        raise ValueParseError("several phone numbers")
    if found:
        return found.pop()
    try:
        number = phonenumbers.parse(text[:100], region)
    except phonenumbers.NumberParseException:
        raise ValueParseError("not a phone number") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueParseError(f"not a valid phone number for {region}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def extract_phones(text: str, region: str = "PE", mobile_only: bool = True) -> List[Found[str]]:
    """Phone numbers in a sentence, as E.164. With ``mobile_only`` (what the extractor wants), a landline
    counts only when written as one ("+51 1 234 5678", "(01) 234-5678"): a bare 8-digit number is a DNI."""
    folded = _fold(text)
    found = []
    for match in phonenumbers.PhoneNumberMatcher(folded.text, region, leniency=phonenumbers.Leniency.VALID):
        international = match.raw_string[:1] in "+(" or match.raw_string.startswith("0")
        if mobile_only and not international and phonenumbers.number_type(match.number) not in _MOBILE_TYPES:
            continue
        start, end = folded.span(match.start, match.end)
        value = phonenumbers.format_number(match.number, phonenumbers.PhoneNumberFormat.E164)
        found.append(Found(start, end, value, explicit=international))
    return found


# --- documents and application codes -------------------------------------------------------------------------------

_DOCUMENT_CUE = (
    r"(?<![a-z])(?:dni|d\.n\.i\.?|documento(?:\s+de\s+identidad)?|doc|carne(?:t)?(?:\s+de\s+extranjeria)?"
    r"|c\.?e\.?|ruc|rut|run|curp|cedula(?:\s+de\s+(?:ciudadania|extranjeria|identidad))?|c\.?c\.?|nit)"
    r"(?![a-z])[\s:]*(?:(?:es|mi|n[°º.o]?|nro\.?|numero|num\.?|\#)(?![a-z])[\s:]*)*"
)
_DOCUMENT = re.compile(
    rf"""
    (?:(?P<cue>{_DOCUMENT_CUE})(?P<cued>\d[\d.]{{3,13}}\d(?:\s?-\s?[0-9a-z]|[a-k])?)(?![\w]|[.\-]\w)
      |(?<![\w.,/@\-+])(?P<shape>
          [a-z]{{4}}\d{{6}}[hmx][a-z]{{5}}[0-9a-z]\d                    # CURP
        | (?:10|15|17|20)\d{{9}}                                         # RUC
        | \d{{3}}\.?\d{{3}}\.?\d{{3}}\s?-\s?\d                           # NIT
        | \d{{1,2}}\.\d{{3}}\.\d{{3}}\s?-\s?[0-9k]                       # RUT with dots
        | \d{{7}}\s?-\s?[0-9k]                                           # RUT below 10 million
        | \d{{2}}(?P<dsep>[.\s]?)\d{{3}}(?P=dsep)\d{{3}}(?:\s?-\s?[0-9a-k]|[a-k])?  # DNI (and 8-digit RUT)
      )(?![\w]|[.,\-/]\w)
    )
    """,
    re.VERBOSE,
)
_CODE = re.compile(
    r"(?<![a-z0-9])sol(?:\s*[-\u2013]\s*(?P<a>[0-9a-z]{6})|\s*(?P<b>(?=[a-z]*\d)[0-9a-z]{6}))(?![0-9a-z])"
)


def extract_document_numbers(text: str) -> List[Found[str]]:
    """Things that look like an identity document, in compact form (``credia.identity.compact``), check
    character included so the validators can verify it: "10117410-2" gives "101174102". ``explicit`` when a
    word such as "DNI" or "cédula" precedes it. Whether it is valid is for ``credia.identity`` to say."""
    folded = _fold(text)
    found = []
    for match in _DOCUMENT.finditer(folded.text):
        group = "cued" if match["cued"] else "shape"
        start, end = folded.span(*match.span(group))
        found.append(Found(start, end, re.sub(r"[\s.\-/]", "", text[start:end]).upper(), bool(match["cued"])))
    return found


def extract_application_codes(text: str) -> List[Found[str]]:
    """Application codes "SOL-7K3M9Q" however typed ("sol 7k3m9q", "SOL7K3M9Q"). Without a dash the six
    characters must include a digit, so words such as "solicitud" or "sol brilla" are not codes."""
    folded = _fold(text)
    return [
        Found(*folded.span(*match.span()), "SOL-" + (match["a"] or match["b"]).upper())
        for match in _CODE.finditer(folded.text)
    ]


def parse_application_code(text: str) -> str:
    """The application code in the answer to "¿cuál es su código de solicitud?"."""
    codes = {item.value for item in extract_application_codes(text)}
    if len(codes) > 1:
        raise ValueParseError("several application codes")
    if not codes:
        raise ValueParseError("no application code (SOL- and 6 letters or digits) found")
    return codes.pop()



# --- all values of a sentence --------------------------------------------------------------------------------------

AMOUNT = "amount"
TERM_MONTHS = "term_months"
TENURE_MONTHS = "tenure_months"
DATE = "date"
RELATIVE_DATE = "relative_date"
DOCUMENT_NUMBER = "document_number"
EMAIL = "email"
PHONE = "phone"
APPLICATION_CODE = "application_code"

# Which reading wins an overlap, most specific first: (kind, explicit) as in ``Found``.
_PRECEDENCE = (
    (EMAIL, True),
    (APPLICATION_CODE, True),
    (DATE, True),
    (DOCUMENT_NUMBER, True),  # "DNI 987654321": the customer says what it is
    (PHONE, True),  # "+51 ...", "(01) ..."
    (TENURE_MONTHS, True),  # "hace 3 años"
    (TERM_MONTHS, True),  # "18 meses"
    (AMOUNT, True),  # "S/ 10.117.410" is money even with a DNI's shape
    (PHONE, False),  # 9 digits starting with 9
    (DOCUMENT_NUMBER, False),  # 8 digits, a RUT, a CURP
    (TERM_MONTHS, False),  # "a 24"
    (RELATIVE_DATE, True),  # "el 15", "el viernes": a day, not the bare amount "15", but never over the rest
    (AMOUNT, False),  # "3500"
)
_RANK = {reading: rank for rank, reading in enumerate(_PRECEDENCE)}


def find_values(text: str, region: str = "PE", today: Optional[date] = None) -> List[Tuple[str, Found[Any]]]:
    """Every value in a sentence as (kind, found), in order of appearance and without overlaps: where two
    readings overlap ("987 654 321" as a phone or an amount) the more specific one wins."""
    readings: List[Tuple[str, Found[Any]]] = [
        *((EMAIL, found) for found in extract_emails(text)),
        *((APPLICATION_CODE, found) for found in extract_application_codes(text)),
        *((DATE, found) for found in extract_dates(text, today)),
        *((RELATIVE_DATE, found) for found in extract_relative_dates(text, today)),
        *((DOCUMENT_NUMBER, found) for found in extract_document_numbers(text)),
        *((PHONE, found) for found in extract_phones(text, region)),
        *((TENURE_MONTHS, found) for found in extract_tenures(text)),
        *((TERM_MONTHS, found) for found in extract_terms(text)),
        *((AMOUNT, found) for found in extract_amounts(text)),
    ]
    readings.sort(key=lambda item: (_RANK[(item[0], item[1].explicit)], item[1].start - item[1].end, item[1].start))
    kept: List[Tuple[str, Found[Any]]] = []
    for kind, found in readings:
        if all(found.end <= other.start or other.end <= found.start for _kind, other in kept):
            kept.append((kind, found))
    return sorted(kept, key=lambda item: item[1].start)


def _single_value(
    text: str, kind: str, plural: str, scan: Callable[[_Folded], Iterable[Tuple[int, int, Any, bool]]]
) -> Any:
    """The one value of ``kind`` in ``text``, or None; several different ones, or a value the scanner found
    but could not read ("0 meses"), raise ``ValueParseError`` with the reason."""
    found = _distinct(item.value for found_kind, item in find_values(text) if found_kind == kind)
    if len(found) > 1:
        raise ValueParseError(f"several {plural}: " + ", ".join(str(v) for v in found))
    if found:
        return found[0]
    errors = [value for _s, _e, value, _x in scan(_fold(text)) if isinstance(value, ValueParseError)]
    if errors:
        raise errors[0]
    return None


def _distinct(values: Iterable[V]) -> List[V]:
    seen: List[V] = []
    for value in values:
        if value not in seen:
            seen.append(value)
    return seen
