"""The contact rules applied to one reminder at one instant: the customer's local hours and public holidays, and
the frequency caps over what was already sent. Pure functions of the instant and the history, so that a pass, a
dry run and a pass at a simulated instant apply exactly the same rules.

The law is checked first and then the lender's rules (the law tightened), so the audit names the rule that
stopped a reminder. When a customer may be in several time zones (a Mexican number that does not tell), every
rule must hold in each of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Iterator, Optional, Sequence, Tuple
from zoneinfo import ZoneInfo

import holidays
import phonenumbers
from phonenumbers import timezone as phone_zones

from credia.reminders.policy import DAYS, ContactRules, CountryRules, describe

OUTSIDE_HOURS = "outside_hours"
HOLIDAY = "holiday"
FREQUENCY_CAP = "frequency_cap"
WEEK = timedelta(days=7)
_UNKNOWN_ZONE = "Etc/Unknown"


@dataclass(frozen=True)
class Block:
    """Why a reminder may not go out now, and the rule that says so (for the audit)."""

    reason: str
    rule: str


@dataclass(frozen=True)
class Contacted:
    """A reminder already sent (or being sent) to the customer: when, and on which channel."""

    at: datetime
    channel: str


def customer_zones(phone: Optional[str], rules: CountryRules) -> Tuple[ZoneInfo, ...]:
    """The customer's time zones: their number's, when it tells, else every zone of their country profile."""
    names: Sequence[str] = ()
    if phone:
        try:
            names = [name for name in phone_zones.time_zones_for_number(phonenumbers.parse(phone)) if name]
        except phonenumbers.NumberParseException:
            names = ()
    if not names or _UNKNOWN_ZONE in names:
        names = rules.law.time_zones
    return tuple(ZoneInfo(name) for name in names)


@lru_cache(maxsize=64)
def _holidays(country: str, year: int) -> holidays.HolidayBase:
    return holidays.country_holidays(country, years=year, language="es")


def holiday_name(country: str, day: date) -> Optional[str]:
    """The national public holiday on ``day`` in ``country`` (the ``holidays`` package), if it is one."""
    return _holidays(country, day.year).get(day)


def _profiles(rules: CountryRules) -> Iterator[Tuple[str, ContactRules]]:
    law = rules.law
    yield f"{rules.country} law ({law.source})", law
    if rules.tightened:
        yield f"{rules.country} lender rules", rules.lender


def window_block(at: datetime, zones: Sequence[ZoneInfo], rules: CountryRules) -> Optional[Block]:
    """``None`` when ``at`` is within the contact hours, and not on a forbidden holiday, in every zone."""
    for label, profile in _profiles(rules):
        for zone in zones:
            local = at.astimezone(zone)
            window = profile.hours.get(DAYS[local.weekday()])
            if window is None or not window.contains(local.hour * 60 + local.minute):
                return Block(
                    OUTSIDE_HOURS, f"{label}: {describe(profile)} ({local:%a %Y-%m-%d %H:%M} {zone.key})"
                )
            name = None if profile.contact_on_public_holidays else holiday_name(rules.country, local.date())
            if name:
                return Block(HOLIDAY, f"{label}: no contact on public holidays ({local.date()} {name}, {zone.key})")
    return None


def frequency_block(
    at: datetime, zones: Sequence[ZoneInfo], channel: str, history: Sequence[Contacted], rules: CountryRules
) -> Optional[Block]:
    """``None`` when one more contact on ``channel`` at ``at`` keeps every cap, counting ``history`` both ways in
    time (so a run at an earlier instant can never squeeze a contact in before one already made)."""
    primary = zones[0]
    day = at.astimezone(primary).date()
    near = [contact for contact in history if abs(contact.at - at) < WEEK]
    for label, profile in _profiles(rules):
        if profile.max_per_day is not None:
            same_day = sum(contact.at.astimezone(primary).date() == day for contact in near)
            if same_day >= profile.max_per_day:
                return Block(FREQUENCY_CAP, f"{label}: at most {profile.max_per_day} a day ({same_day} on {day})")
        if profile.max_per_week is not None and len(near) >= profile.max_per_week:
            return Block(FREQUENCY_CAP, f"{label}: at most {profile.max_per_week} in any 7 days ({len(near)} already)")
        if profile.min_hours_between is not None:
            gap = timedelta(hours=profile.min_hours_between)
            close = [contact for contact in near if abs(contact.at - at) < gap]
            if close:
                return Block(
                    FREQUENCY_CAP,
                    f"{label}: at least {profile.min_hours_between} hours between contacts (last at "
                    f"{close[-1].at.astimezone(primary):%Y-%m-%d %H:%M})",
                )
        if profile.max_channels_per_week is not None:
            channels = {contact.channel for contact in near}
            if channel not in channels and len(channels) >= profile.max_channels_per_week:
                return Block(
                    FREQUENCY_CAP,
                    f"{label}: at most {profile.max_channels_per_week} channel(s) in any 7 days "
                    f"(already {', '.join(sorted(channels))})",
                )
    return None
