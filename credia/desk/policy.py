"""The desk's policy (``policies/desk.yml``): queue limits, session and login rules, business hours per country,
resolution outcomes, labels and canned responses.

Validated completely when loaded, like the credit and collections policies, so a typo stops the desk at start-up
with a message that names the section and the field instead of showing up as a queue that never opens.
"""

from __future__ import annotations

import re
from datetime import date, time
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays
from pydantic import StrictBool, ValidationError, conint, constr, validator

from credia import settings
from credia.credit.policy import PolicyError, PolicyModel, read_policy_file

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
CALLBACK_OUTCOME = "callback"
_RANGE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")

Range = Tuple[time, time]


def parse_range(text: str) -> Range:
    """ "09:00-18:00" as (09:00, 18:00); "24:00" closes at midnight."""
    match = _RANGE.match(text.strip())
    if not match:
        raise ValueError(f'write a range as "09:00-18:00" (found {text!r})')
    start_h, start_m, end_h, end_m = (int(part) for part in match.groups())
    if end_h == 24 and end_m:
        raise ValueError(f"{text!r}: a range ends at 24:00 at the latest")
    start = time(start_h, start_m)
    end = time.max if end_h == 24 else time(end_h, end_m)
    if end <= start:
        raise ValueError(f"{text!r}: the end must be after the start")
    return start, end


class QueueRules(PolicyModel):
    max_open_per_agent: conint(ge=1, le=50)  # type: ignore[valid-type]
    presence_timeout_seconds: conint(ge=30, le=3600)  # type: ignore[valid-type]


class SecurityRules(PolicyModel):
    session_idle_minutes: conint(ge=5, le=24 * 60)  # type: ignore[valid-type]
    session_max_hours: conint(ge=1, le=24)  # type: ignore[valid-type]
    login_max_failures: conint(ge=1, le=20)  # type: ignore[valid-type]
    login_lock_minutes: conint(ge=1, le=24 * 60)  # type: ignore[valid-type]


class CountryHours(PolicyModel):
    timezone: str
    holidays: StrictBool = True
    closed_dates: List[date] = []
    week: Dict[str, List[str]]

    @validator("timezone")
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (e.g. America/Lima)") from None
        return value

    @validator("week")
    def _ranges(cls, value: Dict[str, List[str]]) -> Dict[str, List[str]]:
        for day, ranges in value.items():
            if day not in WEEKDAYS:
                raise ValueError(f"unknown day {day!r} (days: {' '.join(WEEKDAYS)})")
            parsed = sorted(parse_range(text) for text in ranges)
            for (_, end), (start, _) in zip(parsed, parsed[1:]):
                if start < end:
                    raise ValueError(f"{day}: ranges overlap")
        return value

    def ranges(self, weekday: int) -> List[Range]:
        """Opening ranges of a weekday (0 is Monday), earliest first."""
        return sorted(parse_range(text) for text in self.week.get(WEEKDAYS[weekday], []))

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class BusinessHours(PolicyModel):
    default_country: constr(regex=r"^[A-Z]{2}$")  # type: ignore[valid-type]
    callback_slot_minutes: conint(ge=15, le=240)  # type: ignore[valid-type]
    callback_slots: conint(ge=1, le=10)  # type: ignore[valid-type]
    callback_lead_minutes: conint(ge=0, le=24 * 60)  # type: ignore[valid-type]
    countries: Dict[constr(regex=r"^[A-Z]{2}$"), CountryHours]  # type: ignore[valid-type]

    @validator("countries")
    def _holidays_known(cls, value: Dict[str, CountryHours]) -> Dict[str, CountryHours]:
        supported = holidays.list_supported_countries()
        for code, country in value.items():
            if country.holidays and code not in supported:
                raise ValueError(f"{code}: the holidays package does not know this country; set holidays: false")
            if not any(country.week.values()):
                raise ValueError(f"{code}: open on at least one day")
        return value



class CannedResponse(PolicyModel):
    title: constr(strip_whitespace=True, min_length=1, max_length=40)  # type: ignore[valid-type]
    text: constr(strip_whitespace=True, min_length=1, max_length=1000)  # type: ignore[valid-type]


Code = constr(regex=r"^[a-z][a-z0-9_]{0,39}$")
Label = constr(strip_whitespace=True, min_length=1, max_length=80)


class DeskPolicy(PolicyModel):
    queue: QueueRules
    security: SecurityRules
    business_hours: BusinessHours
    outcomes: Dict[Code, Label]  # type: ignore[valid-type]
    survey_default: StrictBool
    reasons: Dict[Code, Label] = {}  # type: ignore[valid-type]
    journeys: Dict[Code, Label] = {}  # type: ignore[valid-type]
    captured_values: Dict[Code, Label] = {}  # type: ignore[valid-type]
    canned_responses: List[CannedResponse] = []

    @validator("outcomes")
    def _outcomes(cls, value: Dict[str, str]) -> Dict[str, str]:
        if not value:
            raise ValueError("list at least one outcome")
        return value

    @validator("business_hours")
    def _default_country_listed(cls, value: BusinessHours) -> BusinessHours:
        if value.default_country not in value.countries:
            raise ValueError(f"default_country {value.default_country} has no section under countries")
        return value


def load_policy(path: Union[Path, str, None] = None) -> DeskPolicy:
    """Read and validate the policy at ``path`` (default: ``DESK_POLICY_PATH`` or ``policies/desk.yml``)."""
    path = Path(path) if path is not None else settings.desk_policy_path()
    return parse_policy(read_policy_file(path, "desk policy", "DESK_POLICY_PATH"), str(path))


def parse_policy(data: Any, source: str = "desk policy") -> DeskPolicy:
    """Validate already-parsed policy data; ``source`` names it in error messages."""
    if not isinstance(data, dict):
        raise PolicyError(f"{source}: expected the sections queue, security, business_hours and outcomes")
    try:
        return DeskPolicy.parse_obj(data)
    except ValidationError as exc:
        raise PolicyError(f"{source}: " + "; ".join(_describe(error) for error in exc.errors())) from None


def _describe(error: Dict[str, Any]) -> str:
    """One error as "business_hours.countries.PE.week: mon: ranges overlap"."""
    loc: Sequence[Any] = [part for part in error["loc"] if part != "__root__"]
    message = "missing" if error["type"] == "value_error.missing" else error["msg"]
    return f"{'.'.join(str(part) for part in loc)}: {message}" if loc else message
