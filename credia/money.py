"""Money and rate formatting for what customers read, in the conventions of their country.

Amounts are ``Decimal`` end to end; formatting goes through Babel so each country profile gets its own
symbol, separators and decimals (``S/ 1,234.50`` in Peru, ``$1.235`` in Chile).
"""

from __future__ import annotations

from decimal import Decimal

from babel.numbers import format_currency, format_percent

DEFAULT_LOCALE = "es_PE"
DEFAULT_CURRENCY = "PEN"


def format_money(amount: Decimal | str, currency: str = DEFAULT_CURRENCY, locale: str = DEFAULT_LOCALE) -> str:
    return format_currency(Decimal(amount), currency, locale=locale)


def format_rate(rate: Decimal | str, locale: str = DEFAULT_LOCALE) -> str:
    """A yearly rate such as ``Decimal("0.455")`` as ``45.5%``, with at most two decimals."""
    return format_percent(Decimal(rate), format="#,##0.##%", locale=locale)
