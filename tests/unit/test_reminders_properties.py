"""Property-based: across random instants, countries, consents, opt-outs and loan histories, the scheduler (with
an injected clock) never contacts anyone outside the law's window, over a frequency cap, without consent or
after an opt-out, and never sends a reminder twice.

The oracle below is written from the law itself (hours per country, public holidays from the ``holidays``
package, the customer's zones from their number) rather than from the scheduler's own rule functions.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Dict, List, Optional, Sequence, Tuple
from zoneinfo import ZoneInfo

import holidays
import phonenumbers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from phonenumbers import timezone as phone_zones

from credia.reminders.scheduler import Scheduler
from credia.reminders.store import ContactStore, Route
from tests.unit.test_reminders_scheduler import POLICY, Clock, FakeBank, FakeChannels, FakeRasa, installment, loan

START = datetime(2026, 11, 30, tzinfo=timezone.utc)  # a span with Peru's, Colombia's and Chile's holidays
SPAN_DAYS = 24
MON_FRI, MON_SAT, EVERY_DAY = range(5), range(6), range(7)
# country: (days allowed, from, to, contact on public holidays, zones when the number does not tell)
LAW = {
    "PE": ((MON_FRI, time(7), time(20)), None, False, ("America/Lima",)),
    "CO": ((MON_FRI, time(7), time(19)), (range(5, 6), time(8), time(15)), False, ("America/Bogota",)),
    "MX": ((EVERY_DAY, time(7), time(22)), None, True,
           ("America/Mexico_City", "America/Cancun", "America/Chihuahua", "America/Mazatlan", "America/Tijuana")),
    "CL": ((MON_SAT, time(8), time(20)), None, False, ("America/Santiago",)),
}
PHONES = {
    "PE": ["+51987654321", "+51912345678"],
    "CO": ["+573001234567", "+573151234567"],
    "MX": ["+525512345678", "+526641234567", "+5215512345678"],  # Mexico City, Tijuana, unknown zone
    "CL": ["+56912345678", "+56221234567"],
}
CHANNELS = ("whatsapp", "sms", "web", "email")


def zones_of(country: str, phone: str) -> List[ZoneInfo]:
    names = [n for n in phone_zones.time_zones_for_number(phonenumbers.parse(phone)) if n != "Etc/Unknown"]
    return [ZoneInfo(name) for name in (names or LAW[country][3])]


def lawful_moment(country: str, phone: str, at: datetime) -> bool:
    weekdays, saturday, on_holidays, _zones = LAW[country]
    for zone in zones_of(country, phone):
        local = at.astimezone(zone)
        windows = [w for w in (weekdays, saturday) if w is not None and local.weekday() in w[0]]
        if not any(start <= local.time() < end for _days, start, end in windows):
            return False
        if not on_holidays and local.date() in holidays.country_holidays(country, years=local.year):
            return False
    return True


@dataclass(frozen=True)
class CustomerPlan:
    country: str
    phone: str
    consents: Tuple[str, ...]
    changes: Tuple[Tuple[str, int, bool], ...]  # (channel, minutes after START, granted)
    dues: Tuple[Tuple[int, bool], ...]  # (days after START, paid)
    last: Optional[str]


@st.composite
def customers(draw: st.DrawFn) -> CustomerPlan:
    country = draw(st.sampled_from(sorted(LAW)))
    minutes = st.integers(0, SPAN_DAYS * 24 * 60)
    return CustomerPlan(
        country=country,
        phone=draw(st.sampled_from(PHONES[country])),
        consents=tuple(draw(st.sets(st.sampled_from(CHANNELS)))),
        changes=tuple(draw(st.lists(st.tuples(st.sampled_from(CHANNELS), minutes, st.booleans()), max_size=3))),
        dues=tuple(draw(st.lists(st.tuples(st.integers(-35, SPAN_DAYS + 3), st.booleans()), min_size=1,
                                 max_size=3))),
        last=draw(st.sampled_from([None, "whatsapp", "sms", "web"])),
    )


# Any minute of the day, but mostly around Latin American office hours (11:00–03:00 UTC), so that many runs are
# close to a window's edges and reminders do go out.
minute_of_day = st.one_of(st.integers(11 * 60, 24 * 60 + 3 * 60), st.integers(0, 24 * 60 - 1))
instants = st.lists(st.tuples(st.integers(0, SPAN_DAYS - 1), minute_of_day), min_size=10, max_size=40).map(
    lambda moments: sorted(START + timedelta(days=day, minutes=minute) for day, minute in moments)
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plans=st.lists(customers(), min_size=2, max_size=5), moments=instants)
def test_no_contact_outside_the_window_over_a_cap_without_consent_or_after_an_opt_out(
    plans: List[CustomerPlan], moments: Sequence[datetime]
) -> None:
    clock = Clock(moments[0])
    bank, rasa, channels = FakeBank(clock), FakeRasa(clock), FakeChannels()
    for number, plan in enumerate(plans, start=1):
        dues = [(START.date() + timedelta(days=days), paid) for days, paid in sorted(plan.dues)]
        items = [installment(index + 1, due, paid="100.00" if paid else "0.00", paid_on=due if paid else None)
                 for index, (due, paid) in enumerate(dues)]
        bank.add(number, [loan(number, number, *items)], country=plan.country, phone=plan.phone,
                 consents=plan.consents)
        for channel, minutes, granted in sorted(plan.changes, key=lambda change: change[1]):
            bank.set_consent(number, channel, granted, START + timedelta(minutes=minutes))
        if plan.last is not None:
            channels.last[number] = {"whatsapp": Route("whatsapp", "whatsapp", plan.phone.lstrip("+")),
                                     "sms": Route("sms", "twilio_messaging", plan.phone),
                                     "web": Route("web", "socketio", f"web-{number}")}[plan.last]
    store = ContactStore("sqlite://")
    try:
        for moment in moments:
            clock.at = moment
            Scheduler(POLICY, store, bank, rasa, clock, channels).run()
    finally:
        store.close()

    reminder_ids = [entities["reminder_id"] for _at, _route, entities in rasa.sent]
    assert len(reminder_ids) == len(set(reminder_ids)), "a reminder was sent twice"
    sent: Dict[int, List[Tuple[datetime, str]]] = defaultdict(list)
    for at, route, entities in rasa.sent:
        number = int(entities["loan_id"])
        plan = plans[number - 1]
        assert lawful_moment(plan.country, plan.phone, at), f"{plan.country} {plan.phone} contacted at {at}"
        events = [(START - timedelta(days=1), True)] if route.channel in plan.consents else []
        events += [(START + timedelta(minutes=m), g) for c, m, g in sorted(plan.changes, key=lambda c: c[1])
                   if c == route.channel]
        consented = [granted for when, granted in events if when <= at]
        assert consented and consented[-1], f"no consent on {route.channel} at {at}"
        sent[number].append((at, route.channel))
    for number, contacts in sent.items():
        check_caps(plans[number - 1], sorted(contacts))


def check_caps(plan: CustomerPlan, contacts: List[Tuple[datetime, str]]) -> None:
    """Colombia: one a day, one channel a week; Chile: two a week, 48 hours apart; everywhere the lender's one a
    day (policies/reminders.yml)."""
    zone = zones_of(plan.country, plan.phone)[0]
    per_day: Dict[date, int] = defaultdict(int)
    for at, _channel in contacts:
        per_day[at.astimezone(zone).date()] += 1
    assert max(per_day.values()) <= 1, contacts
    for index, (at, _channel) in enumerate(contacts):
        week = [c for c in contacts[index:] if c[0] - at < timedelta(days=7)]
        if plan.country == "CO":
            assert len({channel for _at, channel in week}) <= 1, contacts
        if plan.country == "CL":
            assert len(week) <= 2, contacts
            if index + 1 < len(contacts):
                assert contacts[index + 1][0] - at >= timedelta(hours=48), contacts
