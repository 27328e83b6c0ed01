"""What customers type, read into typed values: the way people in Peru (and the other profiles) really write."""

from __future__ import annotations

import random
from datetime import date
from decimal import Decimal

import pytest

from credia.values import (
    AMOUNT,
    APPLICATION_CODE,
    DATE,
    DOCUMENT_NUMBER,
    EMAIL,
    PHONE,
    RELATIVE_DATE,
    TERM_MONTHS,
    Found,
    ValueParseError,
    extract_amounts,
    extract_application_codes,
    extract_dates,
    extract_document_numbers,
    extract_emails,
    extract_phones,
    extract_relative_dates,
    extract_terms,
    find_values,
    normalise_email,
    normalise_phone,
    parse_amount,
    parse_application_code,
    parse_date,
    parse_term_months,
)

TODAY = date(2026, 12, 4)  # a Friday
D = Decimal


def spans(text: str, found: list[Found]) -> list[tuple[str, object]]:
    """What each found value covers in the customer's text, with its value."""
    return [(text[item.start:item.end], item.value) for item in found]


# --- amounts -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "amount"),
    [
        ("5 mil", "5000"),
        ("5mil", "5000"),
        ("5 Mil", "5000"),
        ("cinco mil soles", "5000"),
        ("Cinco Mil", "5000"),
        ("S/ 5,000.50", "5000.50"),
        ("S/5000", "5000"),
        ("S/.8,500", "8500"),
        ("s/. 3500", "3500"),
        ("S/. 10 000", "10000"),
        ("5k", "5000"),
        ("5K", "5000"),
        ("5 k", "5000"),
        ("8.000", "8000"),
        ("8,000", "8000"),
        ("8 000", "8000"),
        ("5.000,50", "5000.50"),
        ("S/ 1.500,00", "1500"),
        ("1.500", "1500"),
        ("1,50", "1.50"),
        ("3500.00", "3500"),
        ("3500", "3500"),
        ("1.5 millones", "1500000"),
        ("1,5 millones", "1500000"),
        ("un millón", "1000000"),
        ("un millon de soles", "1000000"),
        ("2 millones de soles", "2000000"),
        ("mil quinientos", "1500"),
        ("dos mil quinientos soles", "2500"),
        ("quince mil quinientos", "15500"),
        ("veintidos mil", "22000"),  # accent missing
        ("veintidós mil", "22000"),
        ("cien mil", "100000"),
        ("3500 lucas", "3500"),
        ("20 lucas", "20"),
        ("3 mil 500", "3500"),
        ("5 mil quinientos", "5500"),
        ("5,5 mil", "5500"),
        ("$ 5.000.000", "5000000"),
        ("unos 5 mil soles por favor", "5000"),
        ("quiero un préstamo de 5000", "5000"),
        ("quiero 8000 soles en 18 meses", "8000"),
        ("necesito 12 mil para mi negocio", "12000"),
        ("Quisiera S/ 15,000", "15000"),
        ("50", "50"),
        ("dos", "2"),
        ("mi dni es 10117410 y quiero 5000", "5000"),
        ("5000 PEN", "5000"),
        ("MXN 25,000", "25000"),
    ],
)
def test_amounts(text: str, amount: str) -> None:
    assert parse_amount(text) == D(amount).quantize(D("0.01"))


def test_amounts_have_two_decimals() -> None:
    assert str(parse_amount("5 mil")) == "5000.00"
    assert str(parse_amount("S/ 5,000.5")) == "5000.50"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("-5000", "positive"),
        ("S/ -500", "positive"),
        ("menos 500", "positive"),
        ("0", "greater than zero"),
        ("S/ 0", "greater than zero"),
        ("0 soles", "greater than zero"),
        ("99999999999999", "too large"),
        ("2 mil millones de soles", "too large"),
        ("5000 dólares", "foreign currency"),
        ("US$ 500", "foreign currency"),
        ("500 euros", "foreign currency"),
        ("abc", "no amount"),
        ("", "no amount"),
        ("   ", "no amount"),
        ("😀", "no amount"),
        ("mil gracias", "no amount"),
        ("18 meses", "no amount"),
        ("30%", "no amount"),
        ("desde 2019", "no amount"),
        ("15/03/1990", "no amount"),
        ("quiero un préstamo", "no amount"),
        ("5000 o 6000", "several amounts"),
        ("gano 3000 y quiero 8000", "several amounts"),
    ],
)
def test_amounts_refused_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(ValueParseError, match=reason):
        parse_amount(text)


def test_amounts_found_in_sentences_with_their_span() -> None:
    text = "Hola, quiero S/ 5,000.50 a 12 meses y gano 3 mil quinientos soles"
    assert spans(text, extract_amounts(text)) == [
        ("S/ 5,000.50", D("5000.50")),
        ("3 mil quinientos soles", D("3500.00")),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "tengo 2 hijos",
        "a las 5 de la tarde",
        "opción 2",
        "el 15 de marzo pago",
        "trabajo desde 2019",
        "son 24 meses",
        "TEA de 45%",
        "vivo en la calle 28",
        "quiero un préstamo",
        "llego 5:30",
        "sol-7k3m9q",
    ],
)
def test_numbers_that_are_not_money(text: str) -> None:
    assert extract_amounts(text) == []


def test_explicit_amounts_are_marked() -> None:
    assert [item.explicit for item in extract_amounts("3500 o S/ 3500 o 3 mil o 3k")] == [False, True, True, True]


# --- terms ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "months"),
    [
        ("18 meses", 18),
        ("18meses", 18),
        ("dieciocho meses", 18),
        ("dos años", 24),
        ("dos anos", 24),
        ("2 años", 24),
        ("2 anios", 24),
        ("año y medio", 18),
        ("ano y medio", 18),
        ("un año y medio", 18),
        ("medio año", 6),
        ("2 años y medio", 30),
        ("1.5 años", 18),
        ("1 año", 12),
        ("un año", 12),
        ("24", 24),
        ("24.00", 24),
        ("doce", 12),
        ("a 36 meses", 36),
        ("treinta y seis cuotas", 36),
        ("en 12 cuotas", 12),
        ("1 mes", 1),
        ("a 24", 24),
        ("en 24", 24),
        ("plazo de 48", 48),
        ("plazo de 48 meses", 48),
        ("quiero 5 mil a 12 meses", 12),
        ("A 60 MESES", 60),
        ("veinticuatro mensualidades", 24),
        ("cinco años", 60),
    ],
)
def test_terms(text: str, months: int) -> None:
    assert parse_term_months(text) == months


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("0", "at least one month"),
        ("0 meses", "at least one month"),
        ("-3", "at least one month"),
        ("500 meses", "longer than 360"),
        ("40 años", "longer than 360"),
        ("18.5 meses", "whole number"),
        ("2.3 años", "whole number"),
        ("24 meses o 36 meses", "several terms"),
        ("tengo 35 años", "no term"),
        ("hace 3 años", "no term"),
        ("debo 2 cuotas", "no term"),
        ("6 meses de atraso", "no term"),
        ("abc", "no term"),
        ("", "no term"),
    ],
)
def test_terms_refused_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(ValueParseError, match=reason):
        parse_term_months(text)


def test_a_bare_number_in_a_sentence_is_no_term() -> None:
    assert extract_terms("3500") == []
    assert extract_terms("quiero 8000") == []


def test_terms_found_in_sentences() -> None:
    text = "quiero 8000 soles en 18 meses, o a 2 años"
    assert spans(text, extract_terms(text)) == [("18 meses", 18), ("2 años", 24)]
    weak = extract_terms("quiero 5000 a 24")
    assert [(item.value, item.explicit) for item in weak] == [(24, False)]


@pytest.mark.parametrize(
    "text",
    [
        "trabajo hace 3 años en la empresa",
        "llevo 5 años trabajando",
        "tengo 42 años",
        "pagué 3 cuotas",
        "tengo 2 cuotas vencidas",
        "3 meses de atraso",
        "6 meses en mi trabajo",
    ],
)
def test_time_that_is_not_a_loan_term(text: str) -> None:
    assert extract_terms(text) == []


# --- dates ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("15/03/1990", date(1990, 3, 15)),
        ("15-03-1990", date(1990, 3, 15)),
        ("15.03.90", date(1990, 3, 15)),
        ("15/3/90", date(1990, 3, 15)),
        ("15 de marzo de 1990", date(1990, 3, 15)),
        ("15 de Marzo del 90", date(1990, 3, 15)),
        ("15 de marzo del año 1990", date(1990, 3, 15)),
        ("quince de marzo de 1990", date(1990, 3, 15)),
        ("quince de marzo de mil novecientos noventa", date(1990, 3, 15)),
        ("15 de marzo del noventa", date(1990, 3, 15)),
        ("1990-03-15", date(1990, 3, 15)),
        ("1990/03/15", date(1990, 3, 15)),
        ("3 de febrero del 2001", date(2001, 2, 3)),
        ("3 de febrero del dos mil uno", date(2001, 2, 3)),
        ("03/02/2001", date(2001, 2, 3)),  # day first, never February 3rd read as March 2nd
        ("15 de setiembre de 1985", date(1985, 9, 15)),
        ("15 de septiembre de 1985", date(1985, 9, 15)),
        ("15 mar 1990", date(1990, 3, 15)),
        ("15-mar-1990", date(1990, 3, 15)),
        ("5 oct. 1985", date(1985, 10, 5)),
        ("marzo 15, 1990", date(1990, 3, 15)),
        ("primero de enero de 2000", date(2000, 1, 1)),
        ("1ro de enero de 2000", date(2000, 1, 1)),
        ("1° de mayo de 1980", date(1980, 5, 1)),
        ("nací el 15 de marzo de 1990 en Lima", date(1990, 3, 15)),
        ("29/02/2024", date(2024, 2, 29)),
        ("15 / 03 / 1990", date(1990, 3, 15)),  # the long tail, through dateparser
        ("1990 marzo 15", date(1990, 3, 15)),
    ],
)
def test_dates(text: str, expected: date) -> None:
    assert parse_date(text, today=TODAY) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("15/03/30", date(1930, 3, 15)),  # 2030 would be in the future
        ("15/03/05", date(2005, 3, 15)),
        ("04/12/26", date(2026, 12, 4)),  # today is not the future
        ("05/12/26", date(1926, 12, 5)),  # tomorrow is
        ("29/02/00", date(2000, 2, 29)),
    ],
)
def test_two_digit_years_are_never_in_the_future(text: str, expected: date) -> None:
    assert parse_date(text, today=TODAY) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("31/02/1990", "no such date"),
        ("31 de abril de 1990", "no such date"),
        ("29/02/2023", "no such date"),
        ("00/01/1990", "no such date"),
        ("03/15/1990", "no such date"),  # month-first is not how dates are written here
        ("15/03/1850", "out of range"),
        ("15 de marzo", "day, month and year"),
        ("mañana", "day, month and year"),
        ("hace 3 años", "day, month and year"),
        ("15031990", "day, month and year"),
        ("", "day, month and year"),
        ("15/03/1990 o 16/03/1990", "several dates"),
    ],
)
def test_dates_refused_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(ValueParseError, match=reason):
        parse_date(text, today=TODAY)


def test_dates_found_in_sentences() -> None:
    text = "mi DNI es 10117410 y nací el 2 de noviembre de 1979, o sea 02/11/79"
    assert spans(text, extract_dates(text, TODAY)) == [
        ("2 de noviembre de 1979", date(1979, 11, 2)),
        ("02/11/79", date(1979, 11, 2)),
    ]


# --- relative dates ------------------------------------------------------------------------------------------------

MONDAY_MONTH_END = date(2026, 11, 30)
SUNDAY = date(2026, 12, 6)
YEAR_END = date(2026, 12, 30)  # a Wednesday
FEBRUARY = date(2026, 2, 10)
LEAP_FEBRUARY = date(2028, 2, 10)


@pytest.mark.parametrize(
    ("text", "today", "expected"),
    [
        ("hoy", TODAY, date(2026, 12, 4)),
        ("hoy día", TODAY, date(2026, 12, 4)),
        ("mañana", TODAY, date(2026, 12, 5)),
        ("manana", TODAY, date(2026, 12, 5)),
        ("Mañana", date(2026, 12, 31), date(2027, 1, 1)),
        ("pasado mañana", TODAY, date(2026, 12, 6)),
        ("pasado manana", YEAR_END, date(2027, 1, 1)),
        # weekdays: the next one strictly after today, except "este <día>" said on that day
        ("el viernes", TODAY, date(2026, 12, 11)),
        ("viernes", TODAY, date(2026, 12, 11)),
        ("este viernes", TODAY, date(2026, 12, 4)),
        ("el próximo viernes", TODAY, date(2026, 12, 11)),
        ("el proximo martes", TODAY, date(2026, 12, 8)),
        ("el otro jueves", TODAY, date(2026, 12, 10)),
        ("el martes que viene", TODAY, date(2026, 12, 8)),
        ("este lunes", MONDAY_MONTH_END, date(2026, 11, 30)),
        ("el lunes", MONDAY_MONTH_END, date(2026, 12, 7)),
        ("el sábado", MONDAY_MONTH_END, date(2026, 12, 5)),
        ("el sabado", MONDAY_MONTH_END, date(2026, 12, 5)),
        ("el domingo", SUNDAY, date(2026, 12, 13)),
        ("el miércoles", SUNDAY, date(2026, 12, 9)),
        ("el jueves", YEAR_END, date(2026, 12, 31)),
        ("el viernes", YEAR_END, date(2027, 1, 1)),
        ("el lunes de la próxima semana", TODAY, date(2026, 12, 7)),
        ("el viernes de la semana que viene", SUNDAY, date(2026, 12, 11)),
        # day of the month: this month if not past, else next month; past its end, its last day
        ("el 15", TODAY, date(2026, 12, 15)),
        ("el día 15", TODAY, date(2026, 12, 15)),
        ("el dia 30", TODAY, date(2026, 12, 30)),
        ("el quince", TODAY, date(2026, 12, 15)),
        ("el 4", TODAY, date(2026, 12, 4)),
        ("el 3", TODAY, date(2027, 1, 3)),
        ("el 1ro", TODAY, date(2027, 1, 1)),
        ("el primero", TODAY, date(2027, 1, 1)),
        ("el 1°", FEBRUARY, date(2026, 3, 1)),
        ("el viernes 18", TODAY, date(2026, 12, 18)),
        ("el 31", FEBRUARY, date(2026, 2, 28)),
        ("el 31", LEAP_FEBRUARY, date(2028, 2, 29)),
        ("el 31", MONDAY_MONTH_END, date(2026, 11, 30)),
        ("el 30", date(2026, 1, 31), date(2026, 2, 28)),
        ("el 15 de este mes", TODAY, date(2026, 12, 15)),
        ("el 15 del próximo mes", TODAY, date(2027, 1, 15)),
        ("el 10 del mes que viene", YEAR_END, date(2027, 1, 10)),
        # day and month without a year: the next time it comes round
        ("15 de diciembre", TODAY, date(2026, 12, 15)),
        ("el 15 de diciembre", TODAY, date(2026, 12, 15)),
        ("el 4 de diciembre", TODAY, date(2026, 12, 4)),
        ("el 3 de diciembre", TODAY, date(2027, 12, 3)),
        ("el 2 de enero", YEAR_END, date(2027, 1, 2)),
        ("el dos de enero", YEAR_END, date(2027, 1, 2)),
        ("el primero de marzo", FEBRUARY, date(2026, 3, 1)),
        ("15 dic", TODAY, date(2026, 12, 15)),
        ("29 de febrero", date(2026, 3, 1), date(2028, 2, 29)),
        # end of the month and the fortnight
        ("fin de mes", TODAY, date(2026, 12, 31)),
        ("a fin de mes", FEBRUARY, date(2026, 2, 28)),
        ("fines de mes", LEAP_FEBRUARY, date(2028, 2, 29)),
        ("a fines de mes", MONDAY_MONTH_END, date(2026, 11, 30)),
        ("quincena", TODAY, date(2026, 12, 15)),
        ("la quincena", date(2026, 12, 15), date(2026, 12, 15)),
        ("en la quincena", date(2026, 12, 16), date(2026, 12, 31)),
        ("fin de quincena", FEBRUARY, date(2026, 2, 15)),
        # next week and a number of days or weeks
        ("la próxima semana", TODAY, date(2026, 12, 7)),
        ("la semana que viene", MONDAY_MONTH_END, date(2026, 12, 7)),
        ("la otra semana", SUNDAY, date(2026, 12, 7)),
        ("la proxima semana", YEAR_END, date(2027, 1, 4)),
        ("dentro de 5 días", TODAY, date(2026, 12, 9)),
        ("en 5 dias", YEAR_END, date(2027, 1, 4)),
        ("dentro de quince días", TODAY, date(2026, 12, 19)),
        ("en una semana", TODAY, date(2026, 12, 11)),
        ("en dos semanas", TODAY, date(2026, 12, 18)),
    ],
)
def test_relative_dates(text: str, today: date, expected: date) -> None:
    assert [item.value for item in extract_relative_dates(text, today)] == [expected]


@pytest.mark.parametrize(
    ("text", "covered"),
    [
        ("le pago el viernes", "el viernes"),  # a weekday or a bare day number keeps its article
        ("hasta el próximo martes", "el próximo martes"),
        ("seria el 15", "el 15"),
        ("el día 15 de este mes", "el día 15 de este mes"),
        ("antes del 10", "del 10"),
        ("el viernes 18 de diciembre", "el viernes 18 de diciembre"),
        ("el 2 de enero", "2 de enero"),  # a day and month leave "el" out, as a full date does
        ("el día 2 de enero", "2 de enero"),
        ("le pago a fin de mes", "fin de mes"),
        ("cuando cobre la quincena", "la quincena"),
        ("en la quincena", "la quincena"),
        ("deme hasta la otra semana", "la otra semana"),
        ("pago en 3 días", "en 3 días"),  # without "en" it is a duration
        ("pasado mañana le deposito", "pasado mañana"),
    ],
)
def test_relative_date_spans(text: str, covered: str) -> None:
    assert [text[item.start:item.end] for item in extract_relative_dates(text, TODAY)] == [covered]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pago 300 el viernes", [(AMOUNT, "300"), (RELATIVE_DATE, "el viernes")]),
        ("el 15 pago 300", [(RELATIVE_DATE, "el 15"), (AMOUNT, "300")]),  # the cue makes 15 a day, not money
        ("le pago S/ 500 mañana y el resto a fin de mes",
         [(AMOUNT, "S/ 500"), (RELATIVE_DATE, "mañana"), (RELATIVE_DATE, "fin de mes")]),
        ("mañana en la mañana", [(RELATIVE_DATE, "mañana")]),
        ("15", [(AMOUNT, "15")]),  # a bare number stays an amount
        ("el 15 de diciembre", [(RELATIVE_DATE, "15 de diciembre")]),
        ("antes del 10 le cancelo", [(RELATIVE_DATE, "del 10")]),  # not 10 soles
        ("15 de diciembre de 2026", [(DATE, "15 de diciembre de 2026")]),  # with a year it is a full date
        ("el 15 de marzo del 90", [(DATE, "15 de marzo del 90")]),
        ("el viernes 15/12/2026", [(DATE, "15/12/2026")]),  # the weekday only names the full date's day
        ("el 15 % de inicial", []),
        ("el 15 soles", [(AMOUNT, "15 soles")]),
        ("el 5 mil", [(AMOUNT, "5 mil")]),
        ("el 15 meses", [(TERM_MONTHS, "15 meses")]),
        ("3/1", []),  # day/month without a year: too ambiguous
    ],
)
def test_relative_dates_never_take_another_reading(text: str, expected: list) -> None:
    assert [(kind, text[item.start:item.end]) for kind, item in find_values(text, today=TODAY)] == expected


@pytest.mark.parametrize(
    "text",
    [
        "en la mañana",
        "por la mañana",
        "de la mañana",
        "esta mañana",
        "a las 8 de la manana",
        "los viernes",
        "todos los lunes",
        "el viernes pasado",
        "cada quincena",
        "me pagan por quincena",
        "la quincena de enero",
        "hoy en día",
        "el 45",
        "el 15,5",
        "el 15:30",
        "el 15/12",
        "31 de abril",
        "tengo 30 días de atraso",
        "hace 3 días",
        "dentro de 400 días",
    ],
)
def test_words_that_are_no_future_day(text: str) -> None:
    assert extract_relative_dates(text, TODAY) == []


# --- e-mail and phone ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("juan@gmail.com", "juan@gmail.com"),
        ("  juan@gmail.com  ", "juan@gmail.com"),
        ("Juan.Perez@Gmail.COM", "Juan.Perez@gmail.com"),
        ("mi correo es ana_1@hotmail.es gracias", "ana_1@hotmail.es"),
        ("maria.quispe+credito@empresa.com.pe.", "maria.quispe+credito@empresa.com.pe"),
        ("juan arroba gmail punto com", "juan@gmail.com"),
        ("juan punto perez arroba gmail punto com", "juan.perez@gmail.com"),
    ],
)
def test_emails(text: str, address: str) -> None:
    assert normalise_email(text) == address


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("juan@gmail", "period"),
        ("juan.gmail.com", "@-sign"),
        ("nada", "@-sign"),
        ("", "e-mail"),
        ("juan@@gmail.com", "e-mail"),
        ("a@b.com y c@d.com", "several"),
    ],
)
def test_emails_refused_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(ValueParseError, match=reason):
        normalise_email(text)


@pytest.mark.parametrize(
    ("text", "region", "e164"),
    [
        ("987 654 321", "PE", "+51987654321"),
        ("987654321", "PE", "+51987654321"),
        ("987-654-321", "PE", "+51987654321"),
        ("+51 987-654-321", "PE", "+51987654321"),
        ("+51987654321", "PE", "+51987654321"),
        ("51987654321", "PE", "+51987654321"),
        ("0051 987 654 321", "PE", "+51987654321"),
        ("mi cel es 912345678", "PE", "+51912345678"),
        ("(01) 234-5678", "PE", "+5112345678"),
        ("+56 9 8765 4321", "PE", "+56987654321"),
        ("9 8765 4321", "CL", "+56987654321"),
        ("55 1234 5678", "MX", "+525512345678"),
        ("300 123 4567", "CO", "+573001234567"),
    ],
)
def test_phones(text: str, region: str, e164: str) -> None:
    assert normalise_phone(text, region) == e164


@pytest.mark.parametrize(("text", "reason"), [("12345", "not a valid"), ("hola", "not a phone"), ("", "not a phone")])
def test_phones_refused_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(ValueParseError, match=reason):
        normalise_phone(text)


def test_phone_extraction_keeps_bare_landlines_for_documents() -> None:
    text = "cel 987 654 321, fijo (01) 234-5678, dni 10117410"
    assert spans(text, extract_phones(text)) == [("987 654 321", "+51987654321"), ("(01) 234-5678", "+5112345678")]
    assert extract_phones("10117410") == []
    assert [item.value for item in extract_phones("10117410", mobile_only=False)] == []  # not even a match


# --- documents and application codes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "covered", "value", "explicit"),
    [
        ("10117410", "10117410", "10117410", False),
        ("mi dni es 10117410-2", "10117410-2", "101174102", True),
        ("DNI: 45879632", "45879632", "45879632", True),
        ("dni n° 70451236", "70451236", "70451236", True),
        ("10.117.410", "10.117.410", "10117410", False),
        ("10 117 410", "10 117 410", "10117410", False),
        ("10117410G", "10117410G", "10117410G", False),
        ("12.531.909-2", "12.531.909-2", "125319092", False),
        ("rut 9.876.543-k", "9.876.543-k", "9876543K", True),
        ("BOXW310820HNERXN09", "BOXW310820HNERXN09", "BOXW310820HNERXN09", False),
        ("mi curp es boxw310820hnerxn09", "boxw310820hnerxn09", "BOXW310820HNERXN09", False),
        ("mi ruc 20100047218", "20100047218", "20100047218", True),
        ("213.123.432-1", "213.123.432-1", "2131234321", False),
        ("CE 001234567", "001234567", "001234567", True),
        ("carnet de extranjería 001234567", "001234567", "001234567", True),
        ("cédula 1020304050", "1020304050", "1020304050", True),
        ("cedula de ciudadania 1.020.304.050", "1.020.304.050", "1020304050", True),
        ("mi dni es 4587963", "4587963", "4587963", True),  # too short: found, for the validator to explain
    ],
)
def test_document_numbers(text: str, covered: str, value: str, explicit: bool) -> None:
    (found,) = extract_document_numbers(text)
    assert (text[found.start:found.end], found.value, found.explicit) == (covered, value, explicit)


@pytest.mark.parametrize("text", ["quiero 8000", "987654321", "S/ 5000", "1234567", "15/03/1990", "123456789012"])
def test_numbers_that_are_not_documents(text: str) -> None:
    assert extract_document_numbers(text) == []


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("SOL-7K3M9Q", "SOL-7K3M9Q"),
        ("sol-7k3m9q", "SOL-7K3M9Q"),
        ("sol 7k3m9q", "SOL-7K3M9Q"),
        ("SOL7K3M9Q", "SOL-7K3M9Q"),
        ("Sol – 7K3M9Q", "SOL-7K3M9Q"),
        ("SOL-ABCDEF", "SOL-ABCDEF"),
        ("el estado de mi solicitud SOL-4H8P2Z por favor", "SOL-4H8P2Z"),
    ],
)
def test_application_codes(text: str, code: str) -> None:
    assert parse_application_code(text) == code


@pytest.mark.parametrize(
    "text", ["solicitud", "solamente", "sol abcdef", "sol-abc12", "SOL-7K3M9QX", "consol 7k3m9q", ""]
)
def test_words_that_are_not_application_codes(text: str) -> None:
    assert extract_application_codes(text) == []
    with pytest.raises(ValueParseError):
        parse_application_code(text)


# --- a whole sentence ----------------------------------------------------------------------------------------------


def test_emails_found_in_sentences() -> None:
    text = "escríbame a juan@gmail.com o a juan arroba hotmail punto com, no a juan@"
    assert spans(text, extract_emails(text)) == [
        ("juan@gmail.com", "juan@gmail.com"),
        ("juan arroba hotmail punto com", "juan@hotmail.com"),
    ]


def test_find_values_settles_overlaps() -> None:
    text = "Soy Ana, DNI 10117410, nací el 15/03/1990, cel 987 654 321, ana@mail.com, quiero S/ 8,000 a 24 meses"
    found = [(kind, text[item.start:item.end]) for kind, item in find_values(text, today=TODAY)]
    assert found == [
        (DOCUMENT_NUMBER, "10117410"),
        (DATE, "15/03/1990"),
        (PHONE, "987 654 321"),
        (EMAIL, "ana@mail.com"),
        (AMOUNT, "S/ 8,000"),
        (TERM_MONTHS, "24 meses"),
    ]


@pytest.mark.parametrize(
    ("text", "kinds"),
    [
        ("987654321", [PHONE]),  # a mobile, not an amount
        ("S/ 10.117.410", [AMOUNT]),  # money, even with a DNI's shape
        ("dni 987654321", [DOCUMENT_NUMBER]),  # the customer says what it is
        ("sol 7k3m9q", [APPLICATION_CODE]),  # not "7k" (7000)
        ("5000@mail.com", [EMAIL]),
        ("quiero 5000 a 24", [AMOUNT, TERM_MONTHS]),
    ],
)
def test_the_more_specific_reading_wins(text: str, kinds: list[str]) -> None:
    assert [kind for kind, _found in find_values(text)] == kinds


def test_nothing_a_customer_types_breaks_the_readers() -> None:
    """Random text made of what trips parsers (digits, separators, currency, number words, emoji) never raises
    anything but ``ValueParseError``, and every span found lies inside the text."""
    pieces = ["5", "0", "9", "12", " ", ".", ",", "-", "/", "S/", "$", "mil", "dos", "y", "meses", "años", "de",
              "marzo", "@", "arroba", "punto", "sol", "k", "dni", "😀", "ñ", "İ", "\n", "+51", "%", "medio", "º"]
    generator = random.Random(20240611)
    parsers = (parse_amount, parse_term_months, parse_date, normalise_email, normalise_phone, parse_application_code)
    for _ in range(1500):
        text = "".join(generator.choice(pieces) for _ in range(generator.randint(0, 25)))
        for parse in parsers:
            try:
                parse(text)
            except ValueParseError:
                pass
        for _kind, found in find_values(text):
            assert 0 <= found.start < found.end <= len(text), text


def test_long_messages_are_read_quickly() -> None:
    import time

    text = ("Hola, quiero 5 mil a 12 meses, gano 3500 al mes, mi dni es 10117410 y mi cel 987654321. " * 60)[:5000]
    started = time.perf_counter()
    found = find_values(text)
    assert time.perf_counter() - started < 2
    assert len(found) > 200
