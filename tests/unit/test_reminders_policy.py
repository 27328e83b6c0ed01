"""The reminders policy file: the law of each country as data, a lender's file that may only tighten it, and the
contact rules it gives (hours in the customer's zone, public holidays, caps)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from credia.credit.policy import PolicyError
from credia.reminders.contact import Contacted, customer_zones, frequency_block, holiday_name, window_block
from credia.reminders.policy import PROJECT_POLICY, Window, describe, load_policy

POLICY = load_policy(lender_path=None)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def lender_file(tmp_path: Path, content: dict) -> Path:
    path = tmp_path / "lender.yml"
    path.write_text(yaml.safe_dump(content), encoding="utf-8")
    return path


def test_the_law_of_each_country_profile_is_in_the_file_with_its_source() -> None:
    assert describe(POLICY.law["PE"]) == "Mon–Fri 07:00–20:00; not on public holidays"
    assert "Ley 29571 art. 62" in POLICY.law["PE"].source
    assert describe(POLICY.law["CO"]) == "Mon–Fri 07:00–19:00, Sat 08:00–15:00; not on public holidays"
    assert (POLICY.law["CO"].max_per_day, POLICY.law["CO"].max_channels_per_week) == (1, 1)
    assert "Ley 2300" in POLICY.law["CO"].source
    assert describe(POLICY.law["MX"]) == "Mon–Sun 07:00–22:00"
    assert "CONDUSEF" in POLICY.law["MX"].source
    assert describe(POLICY.law["CL"]) == "Mon–Sat 08:00–20:00; not on public holidays"
    assert (POLICY.law["CL"].max_per_week, POLICY.law["CL"].min_hours_between) == (2, 48)
    assert "19.496" in POLICY.law["CL"].source
    assert POLICY.audit_retention_days >= 730
    text = PROJECT_POLICY.read_text(encoding="utf-8")
    for source in ("Ley 29571", "Ley 2300 de 2023", "CONDUSEF", "Ley 19.496 art. 37"):
        assert any(line.lstrip().startswith("#") and source in line for line in text.splitlines()), source


@pytest.mark.parametrize(
    ("country", "instant", "reason"),
    [
        ("PE", "2026-12-07T06:59-05:00", "outside_hours"),
        ("PE", "2026-12-07T07:00-05:00", None),
        ("PE", "2026-12-07T19:59-05:00", None),
        ("PE", "2026-12-07T20:00-05:00", "outside_hours"),
        ("PE", "2026-12-05T10:00-05:00", "outside_hours"),  # Saturday
        ("PE", "2026-12-08T10:00-05:00", "holiday"),  # Inmaculada Concepción
        ("PE", "2026-07-28T10:00-05:00", "holiday"),  # Fiestas Patrias
        ("CO", "2026-12-05T14:59-05:00", None),  # Saturday until 15:00
        ("CO", "2026-12-05T15:00-05:00", "outside_hours"),
        ("CO", "2026-12-07T19:00-05:00", "outside_hours"),
        ("CO", "2026-12-06T10:00-05:00", "outside_hours"),  # Sunday
        ("CO", "2026-12-08T10:00-05:00", "holiday"),
        ("MX", "2026-12-06T21:59-06:00", None),  # Sunday, Mexico City
        ("MX", "2026-12-06T06:59-06:00", "outside_hours"),
        ("CL", "2026-12-05T19:59-03:00", None),  # Saturday
        ("CL", "2026-12-06T12:00-03:00", "outside_hours"),  # Sunday
        ("CL", "2026-09-18T12:00-03:00", "holiday"),  # Fiestas Patrias
    ],
)
def test_contact_windows_and_public_holidays(country: str, instant: str, reason: str) -> None:
    phones = {"PE": "+51987654321", "CO": "+573001234567", "MX": "+525512345678", "CL": "+56221234567"}
    rules = POLICY.rules(country)
    block = window_block(at(instant), customer_zones(phones[country], rules), rules)
    assert (block.reason if block else None) == reason


def test_holidays_come_from_the_holidays_package_in_spanish() -> None:
    assert holiday_name("PE", date(2026, 12, 9)) == "Batalla de Ayacucho"
    assert holiday_name("PE", date(2026, 12, 10)) is None
    assert holiday_name("CO", date(2026, 12, 8)) is not None


def test_a_mexican_number_that_does_not_tell_its_zone_must_fit_every_zone() -> None:
    rules = POLICY.rules("MX")
    zones = customer_zones("+5215512345678", rules)  # the old mobile prefix: no zone known
    assert len(zones) == len(POLICY.law["MX"].time_zones)
    # 21:30 in Mexico City is 22:30 in Cancún: too late there.
    assert window_block(at("2026-12-07T21:30-06:00"), zones, rules).reason == "outside_hours"
    assert window_block(at("2026-12-07T10:00-06:00"), zones, rules) is None


def test_frequency_caps_count_both_ways_in_time() -> None:
    rules = POLICY.rules("CL")
    zones = customer_zones("+56221234567", rules)
    sent = [Contacted(at("2026-12-10T10:00-03:00"), "whatsapp")]
    # Earlier than a contact already made, closer than 48 hours: refused as well.
    assert frequency_block(at("2026-12-09T10:00-03:00"), zones, "whatsapp", sent, rules).reason == "frequency_cap"
    assert frequency_block(at("2026-12-12T10:00-03:00"), zones, "whatsapp", sent, rules) is None
    two = sent + [Contacted(at("2026-12-12T10:00-03:00"), "sms")]
    assert frequency_block(at("2026-12-15T10:00-03:00"), zones, "whatsapp", two, rules).reason == "frequency_cap"
    assert frequency_block(at("2026-12-17T10:00-03:00"), zones, "whatsapp", two, rules) is None


def test_a_lender_may_tighten_the_law(tmp_path: Path) -> None:
    path = lender_file(tmp_path, {
        "contact": {"PE": {"hours": dict.fromkeys(("mon", "tue", "wed", "thu", "fri"), "09:00-18:00"),
                           "max_per_week": 3}},
        "cadence": {**POLICY.cadence.dict(), "catch_up_days": 1},
    })
    policy = load_policy(lender_path=path)
    rules = policy.rules("PE")
    assert rules.tightened and rules.lender.max_per_week == 3 and rules.lender.max_per_day is None
    assert policy.cadence.catch_up_days == 1
    assert policy.rules("MX").lender.max_per_day == 1  # the project's own tightening stays where not replaced
    zones = customer_zones("+51987654321", rules)
    block = window_block(at("2026-12-07T08:00-05:00"), zones, rules)
    assert block.reason == "outside_hours" and block.rule.startswith("PE lender rules")


@pytest.mark.parametrize(
    ("contact", "message"),
    [
        ({"PE": {"hours": {"mon": "06:00-20:00"}}}, "hours.mon: 06:00–20:00 goes beyond the law's 07:00–20:00"),
        ({"PE": {"hours": {"sat": "09:00-12:00"}}}, "allows no contact on Sat"),
        ({"CO": {"contact_on_public_holidays": True}}, "forbids contact on public holidays"),
        ({"CO": {"max_per_day": 2}}, "max_per_day: 2 is looser than the law's 1"),
        ({"CL": {"max_per_week": None}}, "max_per_week: no limit is looser than the law's 2"),
        ({"CL": {"min_hours_between": 24}}, "min_hours_between: 24 is looser than the law's 48"),
        ({"AR": {"max_per_day": 1}}, "unknown country 'AR'"),
    ],
)
def test_a_lender_may_never_loosen_the_law(tmp_path: Path, contact: dict, message: str) -> None:
    path = lender_file(tmp_path, {"contact": contact})
    with pytest.raises(PolicyError) as error:
        load_policy(lender_path=path)
    assert message in str(error.value) and str(path) in str(error.value)


def test_a_lender_file_cannot_rewrite_the_law_nor_shorten_the_audit(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="the law cannot be changed in a lender's file"):
        load_policy(lender_path=lender_file(tmp_path, {"law": {"PE": {}}}))
    with pytest.raises(PolicyError, match="unknown section 'cadense'"):
        load_policy(lender_path=lender_file(tmp_path, {"cadense": {}}))
    with pytest.raises(PolicyError, match="audit_retention_days: ensure this value is greater than or equal to 730"):
        load_policy(lender_path=lender_file(tmp_path, {"audit_retention_days": 365}))


def test_the_environment_names_the_lenders_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = lender_file(tmp_path, {"contact": {"PE": {"max_per_day": 5}}})
    monkeypatch.setenv("CREDIA_REMINDERS_POLICY", str(path))
    assert load_policy().rules("PE").lender.max_per_day == 5


def test_window_syntax_is_checked() -> None:
    assert str(Window.parse("7:00-20:00")) == "07:00–20:00"
    for wrong in ("20:00-07:00", "07:00-25:00", "07:60-08:00", "siete a ocho", 700):
        with pytest.raises(ValueError):
            Window.parse(wrong)
    assert timedelta(minutes=Window.parse("00:00-24:00").end) == timedelta(days=1)
