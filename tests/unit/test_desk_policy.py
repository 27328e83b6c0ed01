"""The desk's policy file and business calendar, in process with an injected clock: opening hours per country,
public holidays, the lender's own closing days, callback slots, and clear errors for a wrong policy file."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Dict
from zoneinfo import ZoneInfo

import pytest
import yaml

from credia.credit.policy import PolicyError
from credia.desk.hours import BusinessCalendar, UnknownCountry, running_clock
from credia.desk.policy import load_policy, parse_policy
from credia.desk.service import mask_document
from credia.settings import PROJECT_ROOT

LIMA = ZoneInfo("America/Lima")


def lima(*args: int) -> datetime:
    return datetime(*args, tzinfo=LIMA)


def policy_data() -> Dict[str, Any]:
    return yaml.safe_load((PROJECT_ROOT / "policies" / "desk.yml").read_text(encoding="utf-8"))


@pytest.fixture
def calendar() -> BusinessCalendar:
    return BusinessCalendar(load_policy().business_hours)


def test_the_shipped_policy_loads() -> None:
    policy = load_policy()
    assert policy.business_hours.default_country == "PE"
    assert policy.queue.max_open_per_agent >= 1 and "callback" in policy.outcomes
    assert all("{" not in item.title for item in policy.canned_responses)


@pytest.mark.parametrize(
    "moment, is_open",
    [
        (lima(2025, 7, 30, 9, 0), True),  # Wednesday, opening time
        (lima(2025, 7, 30, 17, 59), True),
        (lima(2025, 7, 30, 18, 0), False),  # closing time
        (lima(2025, 7, 30, 8, 59), False),
        (lima(2025, 8, 2, 12, 30), True),  # Saturday morning
        (lima(2025, 8, 2, 13, 30), False),
        (lima(2025, 8, 3, 11, 0), False),  # Sunday
        (lima(2025, 7, 28, 11, 0), False),  # Fiestas Patrias
        (lima(2025, 12, 25, 11, 0), False),  # Christmas
        (datetime(2025, 7, 30, 15, 0, tzinfo=timezone.utc), True),  # 10:00 in Lima, whatever zone is given
    ],
)
def test_opening_hours_follow_the_week_and_the_holidays(
    calendar: BusinessCalendar, moment: datetime, is_open: bool
) -> None:
    assert calendar.is_open(moment) is is_open


def test_next_opening_and_callback_slots(calendar: BusinessCalendar) -> None:
    saturday_noon = lima(2025, 8, 2, 12, 45)
    assert calendar.next_open(saturday_noon) == saturday_noon  # open now
    # Lead time 30 min: no full slot fits before 13:00; Sunday is closed.
    assert calendar.callback_slots(saturday_noon)[:2] == [lima(2025, 8, 4, 9, 0), lima(2025, 8, 4, 10, 0)]
    friday_night = lima(2025, 8, 1, 21, 0)
    assert calendar.next_open(friday_night) == lima(2025, 8, 2, 9, 0)
    assert calendar.callback_slots(friday_night) == [
        lima(2025, 8, 2, 9, 0), lima(2025, 8, 2, 10, 0), lima(2025, 8, 2, 11, 0), lima(2025, 8, 2, 12, 0)
    ]
    # Sunday 27 July, then Monday 28 and Tuesday 29 are national holidays.
    assert calendar.next_open(lima(2025, 7, 27, 10, 0)) == lima(2025, 7, 30, 9, 0)


def test_each_country_has_its_own_zone_and_holidays(calendar: BusinessCalendar) -> None:
    peru_holiday = lima(2025, 7, 28, 11, 0)
    assert not calendar.is_open(peru_holiday, "PE")
    assert calendar.is_open(peru_holiday, "MX")  # 10:00 in Mexico City, an ordinary Monday
    mexico_independence = datetime(2025, 9, 16, 11, 0, tzinfo=ZoneInfo("America/Mexico_City"))
    assert not calendar.is_open(mexico_independence, "MX") and calendar.is_open(mexico_independence, "PE")
    assert calendar.next_open(datetime(2025, 7, 30, 7, 30, tzinfo=ZoneInfo("America/Bogota")), "co") == datetime(
        2025, 7, 30, 8, 0, tzinfo=ZoneInfo("America/Bogota"))
    with pytest.raises(UnknownCountry):
        calendar.is_open(peru_holiday, "AR")


def test_the_lenders_own_closing_days(calendar: BusinessCalendar) -> None:
    data = policy_data()
    data["business_hours"]["countries"]["PE"]["closed_dates"] = ["2025-07-31"]
    closing = BusinessCalendar(parse_policy(data).business_hours)
    assert calendar.is_open(lima(2025, 7, 31, 10, 0))
    assert not closing.is_open(lima(2025, 7, 31, 10, 0))
    assert closing.next_open(lima(2025, 7, 30, 20, 0)) == lima(2025, 8, 1, 9, 0)


def test_a_running_clock_starts_where_it_is_told_and_moves_on() -> None:
    clock = running_clock(lima(2025, 7, 28, 11, 0))
    first = clock()
    assert timedelta(0) <= first - lima(2025, 7, 28, 11, 0) < timedelta(seconds=1)
    assert clock() >= first


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d["business_hours"]["countries"]["PE"]["week"].update(mon=["09:00-13:00", "12:00-18:00"]),
         "business_hours.countries.PE.week: mon: ranges overlap"),
        (lambda d: d["business_hours"]["countries"]["PE"]["week"].update(mon=["9-18"]),
         'write a range as "09:00-18:00"'),
        (lambda d: d["business_hours"]["countries"]["PE"].update(timezone="America/Lim"),
         "unknown time zone 'America/Lim'"),
        (lambda d: d["business_hours"].update(default_country="BR"), "default_country BR has no section"),
        (lambda d: d["queue"].update(max_open_per_agent=0), "queue.max_open_per_agent"),
        (lambda d: d["queue"].update(max_agents=3), "queue.max_agents: extra fields not permitted"),
        (lambda d: d.update(outcomes={}), "outcomes: list at least one outcome"),
    ],
)
def test_a_wrong_policy_is_refused_with_where_and_why(change: Any, message: str) -> None:
    data = policy_data()
    change(data)
    with pytest.raises(PolicyError) as error:
        parse_policy(data, "policies/desk.yml")
    assert str(error.value).startswith("policies/desk.yml: ") and message in str(error.value)


@pytest.mark.parametrize(
    "document, shown",
    [("****410", "****410"), ("10117410", "*****410"), ("DNI 10117410-2", "DNI ******10-2"), (None, None),
     ("1234", "1234")],
)
def test_documents_reach_the_console_masked(document: str, shown: str) -> None:
    assert mask_document(document) == shown
