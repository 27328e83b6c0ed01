"""One pass of the reminder scheduler at an instant of its clock: plan what the cadence makes due, decide each
reminder against the loan, consent, channel, contact hours, frequency caps and handoffs, and send what may go.

For every customer (core banking) and active loan, the due steps of the cadence become planned contacts (one row
per step, see ``credia.reminders.store``). A pending contact is decided in this order, the first failing check
giving the reason kept in the audit:

1. the loan: ``paid`` (final), ``disputed``, ``in_plan``, ``promise_pending``;
2. consent: ``opted_out`` (the customer withdrew it) or ``no_consent`` on every channel a reminder can use;
3. the channel: where the customer last answered, if consented, else the policy's fallback order;
4. the contact window: ``outside_hours`` or ``holiday`` in the customer's time zone(s), law first, then lender;
5. the frequency caps: ``frequency_cap`` (checked again inside the claim, see ``credia.reminders.store``);
6. a live handoff on that conversation: ``in_handoff`` (or ``handoff_unknown`` when the desk does not answer);
7. right before sending, consent is read again and the window checked on the clock once more.

Everything not final is tried again at the next run until the step's last day; then it is ``expired`` with
its last reason. A delivery Rasa certainly did not take is ``failed`` and retried after ``RETRY_AFTER``.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable, Dict, Iterable, List, Optional, Protocol, Sequence, Tuple, Union
from zoneinfo import ZoneInfo

from credia.reminders import cadence
from credia.reminders.contact import Block, Contacted, customer_zones, frequency_block, window_block
from credia.reminders.policy import CountryRules, RemindersPolicy, describe, describe_caps
from credia.reminders.sources import CustomerFacts, SourceError, Unconfirmed, Undelivered, default_route
from credia.reminders.store import (
    EXPIRED,
    OUTCOME_EXPIRED,
    OUTCOME_FAILED,
    OUTCOME_SENT,
    OUTCOME_SKIPPED,
    PENDING,
    SKIPPED,
    TAKEN,
    Contact,
    ContactStore,
    Decision,
    DryRunStore,
    Route,
)

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
OPTED_OUT = "opted_out"
NO_CONSENT = "no_consent"
IN_HANDOFF = "in_handoff"
HANDOFF_UNKNOWN = "handoff_unknown"
DELIVERY_FAILED = "delivery_failed"
UNCONFIRMED = "unconfirmed"
# Channels a reminder can go out on, and the consent each needs.
REMINDER_CHANNELS = ("whatsapp", "sms", "web")
RETRY_AFTER = timedelta(minutes=10)


class Bank(Protocol):
    """What the scheduler reads from core banking (``credia.reminders.sources.CoreBanking`` over HTTP)."""

    def customer_ids(self) -> Iterable[int]: ...

    def customer(self, customer_id: int) -> CustomerFacts: ...

    def loans(self, customer_id: int) -> List[cadence.LoanFacts]: ...


class Messenger(Protocol):
    """What the scheduler asks Rasa (``credia.reminders.sources.Rasa``)."""

    def trigger(self, route: Route, entities: Dict[str, str]) -> None: ...

    def delivered(self, conversation_id: str, reminder_id: str) -> Optional[bool]: ...


class Handoffs(Protocol):
    def in_handoff(self, conversation_id: str) -> Optional[bool]: ...


class Channels(Protocol):
    def refresh(self) -> None: ...

    def last_answered(self, customer_id: int, phone: str) -> Optional[Route]: ...


Store = Union[ContactStore, DryRunStore]


@dataclass
class RunReport:
    """What a pass decided (every decision in a dry run; in a real run the ones kept in the audit)."""

    at: datetime
    decisions: List[Decision] = field(default_factory=list)
    errors: List[str] = field(default_factory=list)


class Scheduler:
    """The reminder scheduler on injected sources and clock, so tests and dry runs run the very same code."""

    def __init__(
        self,
        policy: RemindersPolicy,
        store: ContactStore,
        bank: Bank,
        rasa: Messenger,
        clock: Clock,
        channels: Optional[Channels] = None,
        desk: Optional[Handoffs] = None,
        stale_after: timedelta = timedelta(minutes=5),
    ) -> None:
        self.policy = policy
        self.store = store
        self.bank = bank
        self.rasa = rasa
        self.clock = clock
        self.channels = channels
        self.desk = desk
        self.stale_after = stale_after

    def run(
        self,
        dry_run: bool = False,
        customer_ids: Optional[Sequence[int]] = None,
        stopping: Optional[threading.Event] = None,
    ) -> RunReport:
        """One pass at ``clock()``; a dry run reads everything and writes and sends nothing. ``stopping`` ends
        the pass between two customers (the process is being stopped; the next start takes over)."""
        at = self.clock()
        store: Store = DryRunStore(self.store) if dry_run else self.store
        report = RunReport(at)
        if not dry_run:
            self._recover(report)
            self._expire(at, report)
        if self.channels is not None:
            self.channels.refresh()
        try:
            ids = list(customer_ids) if customer_ids is not None else list(self.bank.customer_ids())
        except SourceError as exc:
            report.errors.append(str(exc))
            return report
        for customer_id in ids:
            if stopping is not None and stopping.is_set():
                break
            try:
                self._customer(store, customer_id, report, dry_run)
            except SourceError as exc:  # this customer waits for the next run
                report.errors.append(str(exc))
        if dry_run:
            report.decisions = list(store.recorded)  # type: ignore[union-attr]
        return report

    # --- one customer -------------------------------------------------------------------------------------

    def _customer(self, store: Store, customer_id: int, report: RunReport, dry_run: bool) -> None:
        loans = self.bank.loans(customer_id)
        if not loans:
            return
        customer = self.bank.customer(customer_id)
        if customer.country not in self.policy.law:
            logger.warning("customer %s: no contact rules for country %s", customer_id, customer.country)
            return
        rules = self.policy.rules(customer.country)
        zones = customer_zones(customer.phone, rules)
        today = self.clock().astimezone(zones[0]).date()
        for loan in loans:
            if loan.paid_off:  # reminders planned before the loan was paid off
                for contact in store.pending_of_loan(loan.id):
                    contact = store.finish(contact, SKIPPED)
                    decision = Decision(self.clock(), contact, OUTCOME_SKIPPED, cadence.PAID, "the loan is paid off")
                    if store.note(decision) and not dry_run:
                        report.decisions.append(decision)
        steps = sorted(
            (step for loan in loans for step in cadence.due_steps(loan, today, self.policy.cadence)),
            key=lambda step: (step.priority, step.due_date, step.loan_id),
        )
        for step in steps:
            contact = store.plan(step, zones[0].key)
            if contact.status != PENDING:
                if dry_run:  # say why it will not go out
                    store.note(Decision(self.clock(), contact, OUTCOME_SKIPPED, f"already_{contact.status}"))
                continue
            decision = self._decide(store, contact, step.blocked, customer, rules, zones)
            if decision is not None and store.note(decision) and not dry_run:
                report.decisions.append(decision)

    def _decide(
        self,
        store: Store,
        contact: Contact,
        blocked: Optional[str],
        customer: CustomerFacts,
        rules: CountryRules,
        zones: Tuple[ZoneInfo, ...],
    ) -> Optional[Decision]:
        at = self.clock()
        if contact.not_before is not None and at < contact.not_before:
            return None
        if blocked == cadence.PAID:
            contact = store.finish(contact, SKIPPED)
            return Decision(at, contact, OUTCOME_SKIPPED, cadence.PAID, "the amount reminded is paid")
        if blocked is not None:
            return Decision(at, contact, OUTCOME_SKIPPED, blocked, _LOAN_RULES[blocked])
        route, why = self._route(customer)
        if route is None:
            return Decision(at, contact, OUTCOME_SKIPPED, why, "only channels the customer consented to")
        block = window_block(at, zones, rules)
        if block is not None:
            return Decision(at, contact, OUTCOME_SKIPPED, block.reason, block.rule, route=route)
        block = frequency_block(at, zones, route.channel, store.history(customer.id, at), rules)
        if block is not None:
            return Decision(at, contact, OUTCOME_SKIPPED, block.reason, block.rule, route=route)
        handoff = self.desk.in_handoff(route.conversation_id) if self.desk is not None else False
        if handoff is not False:
            reason = IN_HANDOFF if handoff else HANDOFF_UNKNOWN
            rule = "no reminder while a person has the conversation"
            return Decision(at, contact, OUTCOME_SKIPPED, reason, rule, route=route)
        return self._send(store, contact, customer, route, rules, zones)

    def _route(self, customer: CustomerFacts) -> Tuple[Optional[Route], str]:
        """The consented channel to write on: where the customer last answered, else the fallback order."""
        consented = {channel for channel in REMINDER_CHANNELS if _granted(customer, channel)}
        if not consented:
            withdrawn = any(
                state.withdrawn for channel, state in customer.consents.items() if channel in REMINDER_CHANNELS
            )
            return None, OPTED_OUT if withdrawn else NO_CONSENT
        last = self.channels.last_answered(customer.id, customer.phone) if self.channels is not None else None
        if last is not None and last.channel in consented:
            return last, ""
        for channel in self.policy.delivery.fallback_order:
            if channel in consented:
                return default_route(channel, customer.phone, self.policy.delivery.whatsapp_via), ""
        return None, NO_CONSENT  # only the web chat is consented, and the customer has no conversation there

    def _send(
        self,
        store: Store,
        contact: Contact,
        customer: CustomerFacts,
        route: Route,
        rules: CountryRules,
        zones: Tuple[ZoneInfo, ...],
    ) -> Optional[Decision]:
        at = self.clock()

        def caps(history: List[Contacted]) -> Optional[Block]:
            return frequency_block(at, zones, route.channel, history, rules)

        block = store.claim(contact, route, at, caps)
        if block is TAKEN:
            return None
        if block is not None:
            return Decision(at, contact, OUTCOME_SKIPPED, block.reason, block.rule, route=route)
        # Claimed: consent and the window once more, right before the message goes out.
        try:
            fresh = self.bank.customer(customer.id) if isinstance(store, ContactStore) else customer
        except SourceError:
            store.release(contact)  # consent unknown: nothing goes out, decided again at the next pass
            raise
        now = self.clock()
        late = window_block(now, zones, rules)
        if not _granted(fresh, route.channel) or late is not None:
            store.release(contact)
            if late is not None:
                return Decision(now, contact, OUTCOME_SKIPPED, late.reason, late.rule, route=route)
            state = fresh.consents.get(route.channel)
            reason = OPTED_OUT if state is not None and state.withdrawn else NO_CONSENT
            return Decision(now, contact, OUTCOME_SKIPPED, reason, "consent read again before sending", route=route)
        if isinstance(store, DryRunStore):
            return Decision(now, contact, OUTCOME_SENT, None, _rules_text(rules), "dry run: not sent", route)
        try:
            self.rasa.trigger(route, entities_of(contact))
        except Undelivered as exc:
            store.release(contact, not_before=now + RETRY_AFTER)
            return Decision(now, contact, OUTCOME_FAILED, DELIVERY_FAILED, None, str(exc), route)
        except Unconfirmed as exc:
            # Left "sending": the next runs ask the conversation whether it arrived, and never send it twice.
            logger.warning("reminder %s not confirmed: %s", contact.reminder_id, exc)
            return None
        contact = store.mark_sent(contact)
        return Decision(now, contact, OUTCOME_SENT, None, _rules_text(rules), None, route)

    # --- recovery and expiry ------------------------------------------------------------------------------

    def _recover(self, report: RunReport) -> None:
        """Settle reminders left ``sending`` by an interrupted run or an unconfirmed delivery."""
        at = self.clock()
        for contact in self.store.stale_sending(datetime.now(timezone.utc) - self.stale_after):
            assert contact.conversation_id is not None and contact.channel and contact.output_channel
            route = Route(contact.channel, contact.output_channel, contact.conversation_id)
            delivered = self.rasa.delivered(contact.conversation_id, contact.reminder_id)
            if delivered is None:
                continue  # Rasa cannot be asked now: keep it "sending", never guess
            if delivered:
                contact = self.store.mark_sent(contact)
                decision = Decision(at, contact, OUTCOME_SENT, None, None, "confirmed in the conversation", route)
            else:
                contact = self.store.release(contact)
                decision = Decision(at, contact, OUTCOME_FAILED, UNCONFIRMED, None,
                                    "not in the conversation: to be decided again", route)
            if self.store.note(decision):
                report.decisions.append(decision)

    def _expire(self, at: datetime, report: RunReport) -> None:
        for contact in self.store.overdue_pending(at):
            contact = self.store.finish(contact, EXPIRED)
            reason = contact.last_reason
            decision = Decision(at, contact, OUTCOME_EXPIRED, reason, None, f"last day {contact.last_day} passed")
            if self.store.note(decision):
                report.decisions.append(decision)


_LOAN_RULES = {
    cadence.DISPUTED: "an open dispute holds collection contact on the loan",
    cadence.IN_PLAN: "a payment plan took this installment over",
    cadence.PROMISE_PENDING: "a live promise to pay covers it",
}


def _granted(customer: CustomerFacts, channel: str) -> bool:
    state = customer.consents.get(channel)
    return state is not None and state.granted


def _rules_text(rules: CountryRules) -> str:
    """The rules a reminder went out within: the law's source, the hours and caps that applied."""
    caps = describe_caps(rules.lender)
    return f"{rules.country} law ({rules.law.source}): {describe(rules.lender)}" + (f"; {caps}" if caps else "")


def entities_of(contact: Contact) -> Dict[str, str]:
    """The entities of ``EXTERNAL_payment_reminder`` (all strings, as the Rasa side reads them)."""
    return {
        "reminder_id": contact.reminder_id,
        "reminder_kind": contact.kind,
        "due_amount": f"{contact.due_amount:.2f}",
        "due_date": contact.due_date.isoformat(),
        "loan_id": str(contact.loan_id),
    }


def fixed_clock(at: datetime) -> Clock:
    return lambda: at


def offset_clock(start: datetime) -> Clock:
    """A clock that starts at ``start`` and runs with real time (``REMINDERS_NOW``)."""
    offset = start - datetime.now(timezone.utc)
    return lambda: datetime.now(timezone.utc) + offset


def real_clock() -> datetime:
    return datetime.now(timezone.utc)
