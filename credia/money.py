"""Money and rate formatting for what customers read, in the conventions of their country.

Amounts are ``Decimal`` end to end; formatting goes through Babel so each country profile gets its own
symbol, separators and decimals (``S/ 1,234.50`` in Peru, ``$1.235`` in Chile).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from babel.dates import format_date
from babel.numbers import format_currency, format_percent

DEFAULT_LOCALE = "es_PE"
DEFAULT_CURRENCY = "PEN"


def format_money(amount: Decimal | str, currency: str = DEFAULT_CURRENCY, locale: str = DEFAULT_LOCALE) -> str:
    return format_currency(Decimal(amount), currency, locale=locale)


def format_rate(rate: Decimal | str, locale: str = DEFAULT_LOCALE) -> str:
    """A yearly rate such as ``Decimal("0.455")`` as ``45.5%``, with at most two decimals."""
    return format_percent(Decimal(rate), format="#,##0.##%", locale=locale)


def parse_decimal(value: Any) -> Decimal:
    """Read an amount sent by an API client as a JSON string or number, refusing what is not a finite number.

    ``bool`` is refused explicitly because it is an ``int`` subclass: ``true`` must never become 1.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise ValueError('must be a decimal string such as "150.00" or a number')
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f'{value!r} is not a decimal number such as "150.00"') from None
    if not number.is_finite():
        raise ValueError("must be a finite number")
    return number


def format_short_day(day: date, locale: str = DEFAULT_LOCALE) -> str:
    """A day where space is short (WhatsApp buttons hold 20 characters): ``sáb 5 dic.``."""
    return format_date(day, "EEE d MMM", locale=locale)


def format_day(day: date, locale: str = DEFAULT_LOCALE) -> str:
    """A due date as people say it: ``viernes 11 de diciembre`` (the year only when it is not this year's)."""
    pattern = "EEEE d 'de' MMMM" if day.year == date.today().year else "EEEE d 'de' MMMM 'de' y"
    return format_date(day, pattern, locale=locale)
