"""The reminder scheduler with an injected clock and in-memory stand-ins for core banking, Rasa, the tracker
store and the desk: what it sends, where, when it holds a reminder back and why, and what the audit keeps.

The week of 7 December 2026 has two public holidays in Peru (Tue 8, Inmaculada Concepción; Wed 9, Batalla de
Ayacucho), so it exercises the holiday rule as well as the hours.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Dict, List, Optional, Tuple

import pytest

from credia.reminders.cadence import InstallmentFacts, LoanFacts, PlanFacts, PlanRow, PromiseFacts
from credia.reminders.policy import RemindersPolicy, load_policy
from credia.reminders.scheduler import Scheduler
from credia.reminders.sources import ConsentState, CustomerFacts, Unconfirmed, Undelivered
from credia.reminders.store import PENDING, SENDING, SENT, Contact, ContactRow, ContactStore, Route

POLICY = load_policy(lender_path=None)
LIMA_OFFSET = "-05:00"
EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)


def lima(text: str) -> datetime:
    """An instant written in Lima's time: "2026-12-07 10:00"."""
    return datetime.fromisoformat(text.replace(" ", "T") + LIMA_OFFSET)


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@dataclass
class FakeCustomer:
    id: int
    country: str
    phone: str
    # Per channel, the consent events (instant, granted) in order; the latest before now is the state.
    consents: Dict[str, List[Tuple[datetime, bool]]] = field(default_factory=dict)


class FakeBank:
    """Core banking as the scheduler reads it, with consents that change over (the clock's) time."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.customers: Dict[int, FakeCustomer] = {}
        self.loans_of: Dict[int, List[LoanFacts]] = {}

    def add(self, customer_id: int, loans: List[LoanFacts], country: str = "PE", phone: Optional[str] = None,
            consents: Tuple[str, ...] = ("whatsapp",)) -> FakeCustomer:
        customer = FakeCustomer(customer_id, country, phone or f"+5198765{customer_id:04d}")
        for channel in consents:
            customer.consents[channel] = [(EPOCH, True)]
        self.customers[customer_id] = customer
        self.loans_of[customer_id] = loans
        return customer

    def set_consent(self, customer_id: int, channel: str, granted: bool, at: datetime) -> None:
        self.customers[customer_id].consents.setdefault(channel, []).append((at, granted))

    def customer_ids(self) -> List[int]:
        return sorted(self.customers)

    def customer(self, customer_id: int) -> CustomerFacts:
        customer = self.customers[customer_id]
        now = self.clock()
        consents = {}
        for channel, events in customer.consents.items():
            past = [granted for at, granted in events if at <= now]
            if past:
                consents[channel] = ConsentState(past[-1], not past[-1])
        return CustomerFacts(customer.id, customer.country, customer.phone, consents)

    def loans(self, customer_id: int) -> List[LoanFacts]:
        return self.loans_of.get(customer_id, [])


class FakeRasa:
    """Records each reminder; ``fail`` makes the next deliveries raise (Undelivered or Unconfirmed)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.sent: List[Tuple[datetime, Route, Dict[str, str]]] = []
        self.fail: List[Exception] = []
        self.taken_anyway: List[Tuple[str, str]] = []  # (conversation, reminder) Rasa took before failing

    def trigger(self, route: Route, entities: Dict[str, str]) -> None:
        if self.fail:
            error = self.fail.pop(0)
            if isinstance(error, Unconfirmed) and str(error) == "taken":
                self.taken_anyway.append((route.conversation_id, entities["reminder_id"]))
            raise error
        self.sent.append((self.clock(), route, entities))

    def delivered(self, conversation_id: str, reminder_id: str) -> Optional[bool]:
        return (conversation_id, reminder_id) in self.taken_anyway or any(
            route.conversation_id == conversation_id and entities["reminder_id"] == reminder_id
            for _at, route, entities in self.sent
        )


class FakeChannels:
    def __init__(self) -> None:
        self.last: Dict[int, Route] = {}

    def refresh(self) -> None:
        pass

    def last_answered(self, customer_id: int, phone: str) -> Optional[Route]:
        return self.last.get(customer_id)


class FakeDesk:
    def __init__(self) -> None:
        self.answers: Dict[str, Optional[bool]] = {}

    def in_handoff(self, conversation_id: str) -> Optional[bool]:
        return self.answers.get(conversation_id, False)


def installment(number: int, due: date, amount: str = "100.00", paid: str = "0.00",
                paid_on: Optional[date] = None) -> InstallmentFacts:
    return InstallmentFacts(number, due, Decimal(amount), Decimal(paid), Decimal("0.00"), paid_on)


def loan(loan_id: int, customer_id: int, *installments: InstallmentFacts, **fields: object) -> LoanFacts:
    return LoanFacts(loan_id, customer_id, "PEN", False, tuple(installments), **fields)  # type: ignore[arg-type]


@dataclass
class World:
    clock: Clock
    bank: FakeBank
    rasa: FakeRasa
    channels: FakeChannels
    desk: FakeDesk
    store: ContactStore
    policy: RemindersPolicy = POLICY

    def scheduler(self, **kwargs: object) -> Scheduler:
        return Scheduler(self.policy, self.store, self.bank, self.rasa, self.clock, self.channels, self.desk,
                         **kwargs)  # type: ignore[arg-type]

    def run_at(self, at: datetime, **kwargs: object):  # type: ignore[no-untyped-def]
        self.clock.at = at
        return self.scheduler(**kwargs).run()

    def audit(self, customer_id: int) -> List[Tuple[str, str, Optional[str]]]:
        return [(row["step"], row["outcome"], row["reason"]) for row in self.store.decisions(customer_id)]


@pytest.fixture
def world() -> World:
    clock = Clock(lima("2026-12-07 10:00"))
    store = ContactStore("sqlite://")
    try:
        yield World(clock, FakeBank(clock), FakeRasa(clock), FakeChannels(), FakeDesk(), store)
    finally:
        store.close()


def test_an_overdue_installment_is_reminded_once_with_the_contract_entities(world: World) -> None:
    world.bank.add(1, [loan(3, 1, installment(1, date(2026, 11, 30), "123.45"))], phone="+51987654321")
    world.run_at(lima("2026-12-07 10:00"))
    world.run_at(lima("2026-12-07 15:00"))

    [(at, route, entities)] = world.rasa.sent
    assert at == lima("2026-12-07 10:00")
    assert route == Route("whatsapp", "whatsapp", "51987654321")
    assert entities == {
        "reminder_id": entities["reminder_id"],
        "reminder_kind": "overdue",
        "due_amount": "123.45",
        "due_date": "2026-11-30",
        "loan_id": "3",
    }
    assert entities["reminder_id"].startswith("rem_")
    [decision] = world.store.decisions(1)
    assert (decision["step"], decision["outcome"], decision["channel"]) == ("overdue:7", "sent", "whatsapp")
    assert "Ley 29571" in decision["rule"] and decision["day"] == "2026-12-07"


def test_hours_hold_a_reminder_and_the_audit_keeps_one_decision_per_change(world: World) -> None:
    world.bank.add(1, [loan(3, 1, installment(1, date(2026, 11, 30)))])
    for moment in ("2026-12-07 05:00", "2026-12-07 06:00", "2026-12-07 06:59"):
        world.run_at(lima(moment))
    assert world.rasa.sent == []
    world.run_at(lima("2026-12-07 07:00"))
    assert [at for at, _route, _entities in world.rasa.sent] == [lima("2026-12-07 07:00")]
    assert world.audit(1) == [("overdue:7", "skipped", "outside_hours"), ("overdue:7", "sent", None)]


def test_public_holidays_hold_a_reminder_to_the_next_working_day_within_its_catch_up(world: World) -> None:
    # Due on Tue 8 December (a holiday in Peru); the day after is a holiday too.
    world.bank.add(1, [loan(3, 1, installment(1, date(2026, 12, 8)))])
    world.run_at(lima("2026-12-05 10:00"))  # Saturday: before_due:3 held
    world.run_at(lima("2026-12-07 10:00"))  # Monday: the same before_due step goes out, late but in its window
    world.run_at(lima("2026-12-08 10:00"))  # holiday: due_today held, and it cannot catch up (overdue:1 follows)
    world.run_at(lima("2026-12-09 10:00"))  # holiday: overdue:1 held
    world.run_at(lima("2026-12-10 10:00"))  # Thursday: overdue:1 goes out on its last day
    world.run_at(lima("2026-12-11 10:00"))  # Friday: overdue:3 goes out
    sent = [(at.date(), entities["reminder_kind"]) for at, _route, entities in world.rasa.sent]
    assert sent == [(date(2026, 12, 7), "before_due"), (date(2026, 12, 10), "overdue"), (date(2026, 12, 11), "overdue")]
    audit = world.audit(1)
    assert ("before_due:3", "skipped", "outside_hours") in audit
    assert ("due_today", "skipped", "holiday") in audit and ("due_today", "expired", "holiday") in audit
    assert ("overdue:1", "skipped", "holiday") in audit and ("overdue:1", "sent", None) in audit
    holiday = next(row for row in world.store.decisions(1) if row["reason"] == "holiday")
    assert "Inmaculada" in holiday["rule"] and "Ley 29571" in holiday["rule"]


def test_the_channel_is_where_the_customer_last_answered_if_consented_else_whatsapp_else_sms(world: World) -> None:
    due = date(2026, 11, 30)
    world.bank.add(1, [loan(1, 1, installment(1, due))], phone="+51911111111", consents=("whatsapp", "sms"))
    world.bank.add(2, [loan(2, 2, installment(1, due))], phone="+51922222222", consents=("whatsapp",))
    world.bank.add(3, [loan(3, 3, installment(1, due))], phone="+51933333333", consents=("sms", "web"))
    world.bank.add(4, [loan(4, 4, installment(1, due))], phone="+51944444444", consents=("whatsapp", "web"))
    world.channels.last[1] = Route("sms", "twilio_messaging", "+51911111111")
    world.channels.last[2] = Route("sms", "twilio_messaging", "+51922222222")  # no SMS consent
    world.channels.last[4] = Route("web", "socketio", "b7c1a2")
    world.run_at(lima("2026-12-07 10:00"))
    routes = {int(entities["loan_id"]): route for _at, route, entities in world.rasa.sent}
    assert routes == {
        1: Route("sms", "twilio_messaging", "+51911111111"),
        2: Route("whatsapp", "whatsapp", "51922222222"),
        3: Route("sms", "twilio_messaging", "+51933333333"),
        4: Route("web", "socketio", "b7c1a2"),
    }


def test_whatsapp_through_twilio_uses_the_whatsapp_address(world: World) -> None:
    world.policy = POLICY.copy(update={"delivery": POLICY.delivery.copy(update={"whatsapp_via": "twilio"})})
    world.bank.add(1, [loan(1, 1, installment(1, date(2026, 11, 30)))], phone="+51987654321")
    world.run_at(lima("2026-12-07 10:00"))
    [(_at, route, _entities)] = world.rasa.sent
    assert route == Route("whatsapp", "twilio_messaging", "whatsapp:+51987654321")


def test_no_consent_and_opted_out_are_told_apart_and_nothing_is_sent(world: World) -> None:
    due = date(2026, 11, 30)
    world.bank.add(1, [loan(1, 1, installment(1, due))], consents=())
    world.bank.add(2, [loan(2, 2, installment(1, due))], consents=("whatsapp", "email"))
    world.bank.set_consent(2, "whatsapp", False, lima("2026-12-01 18:00"))
    world.bank.add(3, [loan(3, 3, installment(1, due))], consents=("web",))  # web only, never wrote there
    world.run_at(lima("2026-12-07 10:00"))
    assert world.rasa.sent == []
    assert world.audit(1) == [("overdue:7", "skipped", "no_consent")]
    assert world.audit(2) == [("overdue:7", "skipped", "opted_out")]
    assert world.audit(3) == [("overdue:7", "skipped", "no_consent")]


def test_consent_is_read_again_right_before_sending(world: World) -> None:
    world.bank.add(1, [loan(1, 1, installment(1, date(2026, 11, 30)))])
    reads = {"count": 0}
    plain = world.bank.customer

    def withdrawn_on_second_read(customer_id: int) -> CustomerFacts:
        reads["count"] += 1
        facts = plain(customer_id)
        if reads["count"] >= 2:  # the customer wrote BAJA between the decision and the message
            return replace(facts, consents={"whatsapp": ConsentState(False, True)})
        return facts

    world.bank.customer = withdrawn_on_second_read  # type: ignore[method-assign]
    world.run_at(lima("2026-12-07 10:00"))
    assert world.rasa.sent == []
    assert world.audit(1) == [("overdue:7", "skipped", "opted_out")]
    [contact] = _contacts(world)
    assert contact.status == PENDING


def test_what_the_loan_says_paid_disputed_plan_and_live_promise(world: World) -> None:
    due = date(2026, 11, 30)
    world.bank.add(1, [loan(1, 1, installment(1, date(2026, 12, 10), paid="100.00"))])  # paid early
    world.bank.add(2, [replace(loan(2, 2, installment(1, due)), collections_hold=True)])
    promise = PromiseFacts(7, Decimal("100.00"), date(2026, 12, 12), "pending", date(2026, 12, 2))
    world.bank.add(3, [loan(3, 3, installment(1, due), promises=(promise,))])
    plan = PlanFacts(4, "active", date(2026, 12, 3), (PlanRow(0, date(2026, 12, 3), Decimal("20.00")),),
                     Decimal("0.00"))
    world.bank.add(4, [loan(4, 4, installment(1, due), plan=plan)])
    world.run_at(lima("2026-12-07 10:00"))
    world.run_at(lima("2026-12-07 11:00"))
    assert world.rasa.sent == []
    assert world.audit(1) == [("before_due:3", "skipped", "paid")]
    assert world.audit(2) == [("overdue:7", "skipped", "disputed")]
    assert world.audit(3) == [("overdue:7", "skipped", "promise_pending")]
    assert world.audit(4) == [("overdue:7", "skipped", "in_plan")]
    statuses = {contact.customer_id: contact.status for contact in _contacts(world)}
    assert statuses == {1: "skipped", 2: PENDING, 3: PENDING, 4: PENDING}


def test_a_reminder_held_back_and_then_paid_off_is_settled_as_paid(world: World) -> None:
    world.bank.add(1, [loan(1, 1, installment(1, date(2026, 11, 30)))])
    world.run_at(lima("2026-12-07 06:00"))
    world.bank.loans_of[1] = [replace(loan(1, 1), paid_off=True)]  # paid in full at dawn
    world.run_at(lima("2026-12-07 09:00"))
    assert world.rasa.sent == []
    assert world.audit(1) == [("overdue:7", "skipped", "outside_hours"), ("overdue:7", "skipped", "paid")]
    assert {contact.status for contact in _contacts(world)} == {"skipped"}


def test_a_conversation_with_a_person_is_not_interrupted_and_a_silent_desk_means_later(world: World) -> None:
    world.bank.add(1, [loan(1, 1, installment(1, date(2026, 11, 30)))], phone="+51987654321")
    world.desk.answers["51987654321"] = True
    world.run_at(lima("2026-12-07 10:00"))
    world.desk.answers["51987654321"] = None  # the desk does not answer
    world.run_at(lima("2026-12-07 11:00"))
    world.desk.answers["51987654321"] = False
    world.run_at(lima("2026-12-07 12:00"))
    assert len(world.rasa.sent) == 1
    assert world.audit(1) == [
        ("overdue:7", "skipped", "in_handoff"),
        ("overdue:7", "skipped", "handoff_unknown"),
        ("overdue:7", "sent", None),
    ]


def test_a_refused_delivery_is_retried_later_and_an_unconfirmed_one_is_never_guessed(world: World) -> None:
    world.bank.add(1, [loan(1, 1, installment(1, date(2026, 11, 30)))])
    world.bank.add(2, [loan(2, 2, installment(1, date(2026, 11, 30)))])
    world.rasa.fail = [Undelivered("Rasa answered HTTP 404"), Unconfirmed("taken")]
    world.run_at(lima("2026-12-07 10:00"), stale_after=timedelta(0))
    assert world.rasa.sent == []
    assert world.audit(1) == [("overdue:7", "failed", "delivery_failed")]
    statuses = {contact.customer_id: contact.status for contact in _contacts(world)}
    assert statuses == {1: PENDING, 2: SENDING}

    world.run_at(lima("2026-12-07 10:05"), stale_after=timedelta(0))
    # Customer 2's reminder reached the conversation before the answer was lost: recorded, not sent again.
    assert world.rasa.sent == []
    assert world.audit(2) == [("overdue:7", "sent", None)]
    assert "confirmed" in world.store.decisions(2)[0]["detail"]

    world.run_at(lima("2026-12-07 10:11"), stale_after=timedelta(0))
    assert [entities["loan_id"] for _at, _route, entities in world.rasa.sent] == ["1"]
    assert {contact.status for contact in _contacts(world)} == {SENT}


def test_an_unconfirmed_delivery_that_never_arrived_is_decided_again(world: World) -> None:
    world.bank.add(1, [loan(1, 1, installment(1, date(2026, 11, 30)))])
    world.rasa.fail = [Unconfirmed("timeout")]
    world.run_at(lima("2026-12-07 10:00"), stale_after=timedelta(0))
    world.run_at(lima("2026-12-07 10:01"), stale_after=timedelta(0))
    assert len(world.rasa.sent) == 1
    assert world.audit(1) == [("overdue:7", "failed", "unconfirmed"), ("overdue:7", "sent", None)]


def test_a_reminder_that_never_fits_expires_with_its_last_reason(world: World) -> None:
    world.bank.add(1, [loan(1, 1, installment(1, date(2026, 11, 30)))])
    world.run_at(lima("2026-12-07 21:00"))
    world.run_at(lima("2026-12-08 10:00"))  # holiday
    world.run_at(lima("2026-12-09 23:00"))
    world.run_at(lima("2026-12-10 10:00"))  # overdue:7's last day (9 December) has passed
    assert world.rasa.sent == []
    assert world.audit(1) == [
        ("overdue:7", "skipped", "outside_hours"),
        ("overdue:7", "skipped", "holiday"),
        ("overdue:7", "skipped", "outside_hours"),
        ("overdue:7", "expired", "outside_hours"),
    ]


def test_colombia_one_contact_a_day_and_one_channel_a_week(world: World) -> None:
    # Two loans due the same day: one reminder a day. Then WhatsApp consent is withdrawn: SMS may not be used
    # within the week of the WhatsApp contact.
    loans = [loan(1, 1, installment(1, date(2026, 12, 10))), loan(2, 1, installment(1, date(2026, 12, 10)))]
    world.bank.add(1, loans, country="CO", phone="+573001234567", consents=("whatsapp", "sms"))
    world.run_at(datetime.fromisoformat("2026-12-07T10:00-05:00"))
    assert len(world.rasa.sent) == 1
    assert ("before_due:3", "skipped", "frequency_cap") in world.audit(1)
    world.bank.set_consent(1, "whatsapp", False, datetime.fromisoformat("2026-12-07T12:00-05:00"))
    world.run_at(datetime.fromisoformat("2026-12-09T10:00-05:00"))
    assert len(world.rasa.sent) == 1
    cap = [row for row in world.store.decisions(1) if row["reason"] == "frequency_cap"][-1]
    assert "channel" in cap["rule"] and "Ley 2300" in cap["rule"]


def test_chile_at_most_two_a_week_at_least_48_hours_apart(world: World) -> None:
    world.bank.add(1, [loan(1, 1, installment(1, date(2026, 12, 4)))], country="CL", phone="+56912345678")
    for day in range(5, 13):  # 5 to 12 December, every day at 11:00 in Santiago (UTC-3 in summer)
        world.run_at(datetime.fromisoformat(f"2026-12-{day:02d}T11:00-03:00"))
    sent = [at.date() for at, _route, _entities in world.rasa.sent]
    # overdue:1 on Saturday 5, overdue:3 on Monday 7 (48 hours later); overdue:7 is capped on Friday 11 (two in
    # the 7 days before) and goes out on Saturday 12, its catch-up day, when the 5th has left the week.
    assert sent == [date(2026, 12, 5), date(2026, 12, 7), date(2026, 12, 12)]
    assert ("overdue:7", "skipped", "frequency_cap") in world.audit(1)
    capped = next(row for row in world.store.decisions(1) if row["reason"] == "frequency_cap")
    assert "at most 2 in any 7 days" in capped["rule"] and "Ley 19.496" in capped["rule"]


def test_mexico_hours_are_the_customers_own_time_zone(world: World) -> None:
    # 22:30 in Mexico City is 20:30 in Tijuana: a Tijuana number may be written to, a capital's number not.
    due = date(2026, 12, 4)
    world.bank.add(1, [loan(1, 1, installment(1, due))], country="MX", phone="+526641234567")
    world.bank.add(2, [loan(2, 2, installment(1, due))], country="MX", phone="+525512345678")
    world.run_at(datetime.fromisoformat("2026-12-07T22:30-06:00"))
    assert [entities["loan_id"] for _at, _route, entities in world.rasa.sent] == ["1"]
    assert world.audit(2) == [("overdue:3", "skipped", "outside_hours")]


def test_a_dry_run_reports_every_decision_and_stores_and_sends_nothing(world: World) -> None:
    world.bank.add(1, [loan(1, 1, installment(1, date(2026, 11, 30)))])
    world.bank.add(2, [loan(2, 2, installment(1, date(2026, 11, 30)))], consents=())
    world.clock.at = lima("2026-12-07 10:00")
    report = world.scheduler().run(dry_run=True)
    assert [(d.contact.customer_id, d.outcome, d.reason) for d in report.decisions] == [
        (1, "sent", None),
        (2, "skipped", "no_consent"),
    ]
    assert "dry run" in report.decisions[0].detail
    assert world.rasa.sent == [] and world.store.decisions() == [] and _contacts(world) == []


def _contacts(world: World) -> List[Contact]:
    with world.store.sessions() as session:
        return [Contact.of(row) for row in session.query(ContactRow).order_by(ContactRow.id)]
