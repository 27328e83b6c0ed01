"""The reminders policy: when reminders are due (cadence), how they are delivered, and the contact rules of each
country, read from ``policies/reminders.yml`` and, optionally, a lender's own file (``CREDIA_REMINDERS_POLICY``).

The project's file carries the law of each country profile (section ``law``). A lender's file may only
tighten it: its sections replace the project's (``contact`` country by country), a ``law`` section is refused,
and a contact rule looser than the law (a wider window, a contact on a day or a holiday the law forbids, a
higher or no frequency cap) stops the scheduler at start-up with a message naming the file, country and field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Sequence, Tuple, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, StrictBool, ValidationError, conint, conlist, constr, root_validator, validator

from credia import settings
from credia.credit.policy import PolicyError, PolicyModel, read_policy_file
from credia.identity import Country

PROJECT_POLICY = settings.PROJECT_ROOT / "policies" / "reminders.yml"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_LABELS = dict(zip(DAYS, ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")))
COUNTRIES = tuple(country.value for country in Country)
# The frequency caps, in the order they are checked and described.
CAPS = ("max_per_day", "max_per_week", "min_hours_between", "max_channels_per_week")
# Sections a lender's file may write; each replaces the project's (``contact``: country by country).
LENDER_SECTIONS = ("contact", "cadence", "delivery", "audit_retention_days")
# Chile's Ley 21.320 asks for the contact log to be kept at least two years; the audit is never purged sooner.
MIN_RETENTION_DAYS = 730
_WINDOW = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


@dataclass(frozen=True)
class Window:
    """Contact hours of one day, in minutes after local midnight: from ``start`` up to, not including, ``end``."""

    start: int
    end: int

    @classmethod
    def __get_validators__(cls) -> Any:
        yield cls.parse

    @classmethod
    def parse(cls, value: Any) -> Window:
        if isinstance(value, Window):
            return value
        match = _WINDOW.match(value) if isinstance(value, str) else None
        if match is None:
            raise ValueError(f'write the hours as "07:00-20:00" (found {value!r})')
        hours_from, minutes_from, hours_to, minutes_to = (int(part) for part in match.groups())
        if minutes_from > 59 or minutes_to > 59:
            raise ValueError(f"{value!r}: minutes go from 00 to 59")
        start, end = hours_from * 60 + minutes_from, hours_to * 60 + minutes_to
        if end > 24 * 60:
            raise ValueError(f"{value!r}: a day ends at 24:00")
        if start >= end:
            raise ValueError(f"{value!r}: the start must be before the end")
        return cls(start, end)

    def contains(self, minute: int) -> bool:
        return self.start <= minute < self.end

    def within(self, other: Window) -> bool:
        return other.start <= self.start and self.end <= other.end

    def __str__(self) -> str:
        return f"{self.start // 60:02d}:{self.start % 60:02d}–{self.end // 60:02d}:{self.end % 60:02d}"


def _hours(value: Any) -> Any:
    """Days as mon..sun; ``null`` (or leaving a day out) means no contact that day."""
    if not isinstance(value, dict):
        raise ValueError("give the hours per day, e.g. mon: \"07:00-20:00\" (a day left out allows no contact)")
    unknown = [str(day) for day in value if day not in DAYS]
    if unknown:
        raise ValueError(f"unknown day {unknown[0]!r} (days: {', '.join(DAYS)})")
    return {day: window for day, window in value.items() if window is not None}


def _zones(value: List[str]) -> List[str]:
    if not value:
        raise ValueError("list at least one time zone, e.g. America/Lima")
    for name in value:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {name!r}") from None
    return value


Cap = Optional[conint(ge=1, le=100)]  # type: ignore[valid-type]


class ContactRules(PolicyModel):
    """When and how often a customer may be contacted about a debt. Caps: null is "no limit"."""

    hours: Dict[str, Window]
    contact_on_public_holidays: StrictBool
    # Required but nullable: the file must say "no limit" on purpose.
    max_per_day: Cap = Field(...)  # type: ignore[valid-type]
    max_per_week: Cap = Field(...)  # type: ignore[valid-type]  (any 7 days in a row)
    min_hours_between: Optional[conint(ge=1, le=168)] = Field(...)  # type: ignore[valid-type]
    max_channels_per_week: Optional[conint(ge=1, le=5)] = Field(...)  # type: ignore[valid-type]

    _days = validator("hours", pre=True, allow_reuse=True)(_hours)


class LawProfile(ContactRules):
    """A country's legal floor; ``source`` is cited in the audit with every decision it takes."""

    source: constr(strip_whitespace=True, min_length=1, max_length=120)  # type: ignore[valid-type]
    # Where the country's customers may be when their number does not tell (the rules must hold in each).
    time_zones: List[str]

    _known_zones = validator("time_zones", allow_reuse=True)(_zones)


class LenderRules(PolicyModel):
    """A lender's tightening of a country's rules: only the fields written replace the law's."""

    hours: Optional[Dict[str, Window]] = None
    contact_on_public_holidays: Optional[StrictBool] = None
    max_per_day: Cap = None  # type: ignore[valid-type]
    max_per_week: Cap = None  # type: ignore[valid-type]
    min_hours_between: Optional[conint(ge=1, le=168)] = None  # type: ignore[valid-type]
    max_channels_per_week: Optional[conint(ge=1, le=5)] = None  # type: ignore[valid-type]

    _days = validator("hours", pre=True, allow_reuse=True)(_hours)


Days = conlist(conint(ge=1, le=366), unique_items=True)  # type: ignore[valid-type]


class InstallmentCadence(PolicyModel):
    days_before_due: Days  # type: ignore[valid-type]
    on_due_date: StrictBool
    days_after_due: Days  # type: ignore[valid-type]


class PromiseCadence(PolicyModel):
    day_before_promised_date: StrictBool
    day_after_broken: StrictBool


class PlanCadence(PolicyModel):
    days_before_due: Days  # type: ignore[valid-type]
    on_due_date: StrictBool


class Cadence(PolicyModel):
    installments: InstallmentCadence
    promises: PromiseCadence
    plan_installments: PlanCadence
    catch_up_days: conint(ge=0, le=7)  # type: ignore[valid-type]


class Delivery(PolicyModel):
    whatsapp_via: Literal["whatsapp", "twilio"]
    fallback_order: conlist(Literal["whatsapp", "sms"], min_items=1, unique_items=True)  # type: ignore[valid-type]


@dataclass(frozen=True)
class CountryRules:
    """What applies to a customer of ``country``: the law, and the lender's rules (the law, tightened)."""

    country: str
    law: LawProfile
    lender: ContactRules
    tightened: bool  # the lender's file or section changed something


class RemindersPolicy(PolicyModel):
    law: Dict[str, LawProfile]
    contact: Dict[str, LenderRules] = Field(default_factory=dict)
    cadence: Cadence
    delivery: Delivery
    audit_retention_days: conint(ge=MIN_RETENTION_DAYS)  # type: ignore[valid-type]

    @validator("law", "contact", pre=True)
    def _countries(cls, value: Any, field: Any) -> Any:
        if value is None and field.name == "contact":
            return {}
        if not isinstance(value, dict):
            raise ValueError(f"give one section per country: {', '.join(COUNTRIES)}")
        unknown = [str(key) for key in value if key not in COUNTRIES]
        if unknown:
            raise ValueError(f"unknown country {unknown[0]!r} (countries: {', '.join(COUNTRIES)})")
        missing = [country for country in COUNTRIES if country not in value]
        if field.name == "law" and missing:
            raise ValueError(f"country {missing[0]!r} is missing (every country profile needs its law)")
        return value

    @root_validator(skip_on_failure=True)
    def _never_looser_than_the_law(cls, values: Dict[str, Any]) -> Dict[str, Any]:
        problems = [
            f"contact.{country}: {problem}"
            for country, rules in values["contact"].items()
            for problem in looser_than_law(values["law"][country], rules)
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return values

    def rules(self, country: str) -> CountryRules:
        law = self.law[country]
        lender = self.contact.get(country)
        if lender is None:
            return CountryRules(country, law, law, False)
        written = {name: getattr(lender, name) for name in lender.__fields_set__}
        return CountryRules(country, law, ContactRules(**{**_rules_of(law), **written}), bool(written))


def _rules_of(profile: ContactRules) -> Dict[str, Any]:
    return {name: getattr(profile, name) for name in ContactRules.__fields__}


def looser_than_law(law: LawProfile, lender: LenderRules) -> List[str]:
    """Every way ``lender`` would allow what the law does not; empty when it only tightens."""
    problems = []
    written = lender.__fields_set__
    if "hours" in written and lender.hours is not None:
        for day, window in lender.hours.items():
            legal = law.hours.get(day)
            if legal is None:
                problems.append(f"hours.{day}: the law ({law.source}) allows no contact on {DAY_LABELS[day]}")
            elif not window.within(legal):
                problems.append(f"hours.{day}: {window} goes beyond the law's {legal} ({law.source})")
    if lender.contact_on_public_holidays and not law.contact_on_public_holidays:
        problems.append(f"contact_on_public_holidays: the law ({law.source}) forbids contact on public holidays")
    for cap in CAPS:
        legal, own = getattr(law, cap), getattr(lender, cap)
        if cap not in written or legal is None:
            continue
        if own is None:
            problems.append(f"{cap}: no limit is looser than the law's {legal} ({law.source})")
        elif (own < legal) if cap == "min_hours_between" else (own > legal):
            problems.append(f"{cap}: {own} is looser than the law's {legal} ({law.source})")
    return problems


def describe(rules: ContactRules) -> str:
    """The hours as people write them: "Mon–Fri 07:00–20:00, Sat 08:00–15:00; not on public holidays"."""
    groups: List[Tuple[List[str], Window]] = []
    for day in DAYS:
        window = rules.hours.get(day)
        if window is None:
            continue
        if groups and groups[-1][1] == window and DAYS.index(groups[-1][0][-1]) == DAYS.index(day) - 1:
            groups[-1][0].append(day)
        else:
            groups.append(([day], window))
    parts = [
        (DAY_LABELS[days[0]] if len(days) == 1 else f"{DAY_LABELS[days[0]]}–{DAY_LABELS[days[-1]]}") + f" {window}"
        for days, window in groups
    ]
    text = ", ".join(parts) or "no contact on any day"
    if not rules.contact_on_public_holidays:
        text += "; not on public holidays"
    return text


def describe_caps(rules: ContactRules) -> str:
    """The frequency caps as a sentence: "at most 1 a day, 2 in any 7 days"; empty when there are none."""
    parts = []
    if rules.max_per_day is not None:
        parts.append(f"{rules.max_per_day} a day")
    if rules.max_per_week is not None:
        parts.append(f"{rules.max_per_week} in any 7 days")
    if rules.max_channels_per_week is not None:
        parts.append(f"{rules.max_channels_per_week} channel(s) in any 7 days")
    text = "at most " + ", ".join(parts) if parts else ""
    if rules.min_hours_between is not None:
        text += ("; " if text else "") + f"{rules.min_hours_between} hours apart"
    return text


def load_policy(path: Union[Path, str, None] = None, lender_path: Union[Path, str, None] = "") -> RemindersPolicy:
    """Read the project's policy and the lender's file over it (default: ``CREDIA_REMINDERS_POLICY``, if set);
    raise ``PolicyError`` saying what is wrong and in which file."""
    base = Path(path) if path is not None else PROJECT_POLICY
    lender = settings.reminders_lender_policy_path() if lender_path == "" else lender_path
    data = read_policy_file(base, "reminders policy", "CREDIA_REMINDERS_POLICY")
    if not isinstance(data, dict):
        raise PolicyError(f"{base}: expected the sections law, contact, cadence, delivery and audit_retention_days")
    origins = {section: str(base) for section in data}
    if lender is not None and Path(lender).resolve() != base.resolve():
        overlay = read_policy_file(Path(lender), "lender's reminders policy", "CREDIA_REMINDERS_POLICY")
        data = merge_lender(data, overlay, str(lender))
        origins.update({section: str(lender) for section in overlay})
    return parse_policy(data, origins)


def merge_lender(data: Dict[str, Any], overlay: Any, source: str) -> Dict[str, Any]:
    """The project's sections with the lender's written over them; a lender cannot write the law."""
    if overlay is None:
        return data
    if not isinstance(overlay, dict):
        raise PolicyError(f"{source}: expected some of the sections {', '.join(LENDER_SECTIONS)}")
    if "law" in overlay:
        raise PolicyError(f"{source}: the law cannot be changed in a lender's file; tighten it under 'contact'")
    unknown = [str(key) for key in overlay if key not in LENDER_SECTIONS]
    if unknown:
        raise PolicyError(f"{source}: unknown section {unknown[0]!r} (a lender may write {', '.join(LENDER_SECTIONS)})")
    merged = dict(data)
    for section, value in overlay.items():
        if section == "contact" and isinstance(value, dict) and isinstance(data.get("contact"), dict):
            merged["contact"] = {**data["contact"], **value}
        else:
            merged[section] = value
    return merged


def parse_policy(data: Any, origins: Union[Dict[str, str], str] = "reminders policy") -> RemindersPolicy:
    """Validate parsed policy data; ``origins`` names the file each section came from, for the messages."""
    try:
        return RemindersPolicy.parse_obj(data)
    except ValidationError as exc:
        messages = []
        for error in exc.errors():
            section = str(error["loc"][0]) if error["loc"] and error["loc"][0] != "__root__" else "contact"
            source = origins if isinstance(origins, str) else origins.get(section, next(iter(origins.values()), ""))
            messages.append(f"{source}: {_describe(error)}")
        raise PolicyError("; ".join(messages)) from None


def _describe(error: Dict[str, Any]) -> str:
    loc: Sequence[Any] = [part for part in error["loc"] if part != "__root__"]
    message = "missing" if error["type"] == "value_error.missing" else error["msg"]
    return f"{'.'.join(str(part) for part in loc)}: {message}" if loc else message
