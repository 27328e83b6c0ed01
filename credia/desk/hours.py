"""Business hours per country: whether people attend now, when they next do, and the callback slots offered.

Every answer is computed for a moment given by the caller, and the desk reads that moment from an injectable
clock, so tests (and demos) can stand at night or on a public holiday without waiting for one.
"""

from __future__ import annotations

import time as monotonic_time
from datetime import date, datetime, timedelta, timezone
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import holidays

from credia.desk.policy import BusinessHours, CountryHours

Clock = Callable[[], datetime]
# How far ahead to look for an opening: longer than any closure a policy can describe (a week of holidays).
HORIZON_DAYS = 45


def system_clock() -> datetime:
    return datetime.now(timezone.utc)


def running_clock(start: datetime) -> Clock:
    """A clock that reads ``start`` now and runs at normal speed from there (``DESK_CLOCK_START``)."""
    origin = monotonic_time.monotonic()
    return lambda: start + timedelta(seconds=monotonic_time.monotonic() - origin)


class UnknownCountry(KeyError):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code

    def __str__(self) -> str:
        return f"no business hours for country {self.code!r}"


class BusinessCalendar:
    def __init__(self, rules: BusinessHours) -> None:
        self.rules = rules
        # Filled for the years around now up front: the package fills a year lazily on first look-up, which is
        # not safe from several request threads at once.
        this_year = datetime.now(timezone.utc).year
        self._holidays: Dict[str, holidays.HolidayBase] = {
            code: holidays.country_holidays(code, years=range(this_year - 2, this_year + 3))
            for code, country in rules.countries.items()
            if country.holidays
        }

    def country(self, code: Optional[str]) -> Tuple[str, CountryHours]:
        code = (code or self.rules.default_country).upper()
        try:
            return code, self.rules.countries[code]
        except KeyError:
            raise UnknownCountry(code) from None

    def is_closed_day(self, code: str, day: date) -> bool:
        _, country = self.country(code)
        return day in country.closed_dates or (code in self._holidays and day in self._holidays[code])

    def openings(self, at: datetime, code: Optional[str] = None) -> Iterator[Tuple[datetime, datetime]]:
        """Opening periods (start, end) that end after ``at``, in order, as local aware datetimes."""
        code, country = self.country(code)
        zone = country.zone
        local = at.astimezone(zone)
        for offset in range(HORIZON_DAYS):
            day = local.date() + timedelta(days=offset)
            if self.is_closed_day(code, day):
                continue
            for start, end in country.ranges(day.weekday()):
                opens = datetime.combine(day, start, tzinfo=zone)
                closes = datetime.combine(day, end, tzinfo=zone)
                if closes > local:
                    yield opens, closes

    def is_open(self, at: datetime, code: Optional[str] = None) -> bool:
        first = next(self.openings(at, code), None)
        return first is not None and first[0] <= at

    def next_open(self, at: datetime, code: Optional[str] = None) -> Optional[datetime]:
        """When people next attend: ``at`` itself while open; None if nothing opens within the horizon."""
        first = next(self.openings(at, code), None)
        if first is None:
            return None
        return max(first[0], at.astimezone(first[0].tzinfo))

    def callback_slots(self, at: datetime, code: Optional[str] = None) -> List[datetime]:
        """The next slot starts, on the opening's grid, at least the lead time away and fully within hours."""
        length = timedelta(minutes=self.rules.callback_slot_minutes)
        earliest = at + timedelta(minutes=self.rules.callback_lead_minutes)
        slots: List[datetime] = []
        for opens, closes in self.openings(earliest, code):
            start = opens
            while start + length <= closes and len(slots) < self.rules.callback_slots:
                if start >= earliest:
                    slots.append(start)
                start += length
            if len(slots) == self.rules.callback_slots:
                break
        return slots
