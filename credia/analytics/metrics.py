"""The assistant's metrics, from its sessions (``credia.analytics.sessions``), as plain data.

Every function returns dicts, lists, numbers and strings only, so the same figures go to the command line
(Markdown or JSON) and to a dashboard. A ratio is ``{"count": c, "of": n, "rate": c / n}`` (rate ``None``
when n is 0). The definitions, written once here and in the README section "Metrics":

- **sessions**: sessions in which the customer wrote at least once (a web chat opened and left, or a payment
  announced in a fresh session, is not a contact), selected by the filters: the day the session *started* in
  the lender's time zone (a session across midnight counts on its first day), the channel of its customer
  messages, and the journey (sessions that started it).
- **containment** = sessions without a handoff ÷ sessions.
- **automatic resolution** = sessions that reached a goal and had no handoff (before or after the goal) ÷
  sessions.
- **handoff rate** = sessions with a handoff ÷ sessions; a handoff is a ``handoff_reason`` set by an action
  (case kinds, ``credit_referred``) or a customer message with intent ``ask_human`` (``explicit_request``).
  Per reason: sessions with that reason (a session may have several).
- **abandonment** = sessions that started a journey and reached no goal and had no handoff ÷ sessions that
  started a journey.
- **journeys**: started = sessions that started it (a customer message with one of its intents, counted
  inside a form only when the bot left the form for it; or by reaching its goal);
  completed = sessions that reached its goal after it started; completion rate = completed ÷ started;
  completion time = first goal − start, median and 90th percentile (linear interpolation between ranks).
- **forms**: per form, sessions asked each field (``requested_slot`` while the form was active), and where
  abandoned sessions stopped (the last field the bot asked in the session).
- **NLU**, over customer messages NLU read (button presses and external events left out):
  not understood = intent ``nlu_fallback`` (inside a form, unless the form took it as its answer) or
  answered by ``action_default_fallback``, ÷ messages;
  low confidence = best intent other than ``nlu_fallback`` below the threshold (0.6), ÷ messages.
- **collections**: verified contacts = sessions where ``identity_verified`` became true; promise-to-pay rate
  = promises (goal ``promise_created``) ÷ verified contacts; links sent (goal ``payment_link``); links paid =
  ``EXTERNAL_payment_received`` events (once per payment id), count and sum of ``paid_amount`` (under a
  journey filter, only for collections); plans created (goal ``plan_created``); promise-kept rate = promises
  kept ÷ promises due (kept or broken), from core banking (``promises``), by the day the promise was made.
- **credit**: applications by ``application_outcome`` as decided at submission; accepted counter-offers apart.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from statistics import mean
from typing import Any, Iterable, Optional, Sequence
from zoneinfo import ZoneInfo

from credia.analytics.promises import promise_kept
from credia.analytics.sessions import COLLECTIONS, JOURNEYS, Payment, Session, read_sessions
from credia.analytics.texts import tally
from credia.identity import country_profile

DEFAULT_THRESHOLD = 0.6
TOP_MESSAGES = 10


def _lender_time_zone() -> str:
    return country_profile().time_zone


@dataclass(frozen=True)
class Filters:
    """Which sessions count: by start day (inclusive, in the lender's time zone), channel and journey."""

    start: Optional[date] = None
    end: Optional[date] = None
    channel: Optional[str] = None
    journey: Optional[str] = None
    time_zone: str = field(default_factory=_lender_time_zone)

    def __post_init__(self) -> None:
        if self.journey is not None and self.journey not in JOURNEYS:
            raise ValueError(f"unknown journey {self.journey!r} (known: {', '.join(JOURNEYS)})")

    def day(self, timestamp: float) -> date:
        return datetime.fromtimestamp(timestamp, ZoneInfo(self.time_zone)).date()

    def _when_and_where(self, session: Session) -> bool:
        day = self.day(session.started_at)
        return (
            (self.start is None or day >= self.start)
            and (self.end is None or day <= self.end)
            and (self.channel is None or session.channel == self.channel)
        )

    def admits(self, session: Session) -> bool:
        """A contact the session metrics count."""
        return (
            session.engaged
            and self._when_and_where(session)
            and (self.journey is None or self.journey in session.journeys)
        )

    def admits_payments(self, session: Session) -> bool:
        """Paid links belong to collections, even when announced in a session the customer did not write in."""
        return self._when_and_where(session) and self.journey in (None, COLLECTIONS)

    def as_dict(self) -> dict[str, Any]:
        return {
            "from": self.start.isoformat() if self.start else None,
            "to": self.end.isoformat() if self.end else None,
            "channel": self.channel,
            "journey": self.journey,
            "time_zone": self.time_zone,
        }


def ratio(count: int, of: int) -> dict[str, Any]:
    return {"count": count, "of": of, "rate": count / of if of else None}


def percentile(values: Sequence[float], q: float) -> Optional[float]:
    """The q-th quantile (0–1) with linear interpolation between the closest ranks (NumPy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _most_first(counts: Counter[str]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def session_outcomes(sessions: Sequence[Session]) -> dict[str, Any]:
    """Sessions, containment, automatic resolution, handoffs (with their reasons) and abandonment."""
    total = len(sessions)
    handed_off = sum(session.handed_off for session in sessions)
    reasons = Counter(reason for session in sessions for reason in session.handoff_reasons)
    with_journey = [session for session in sessions if session.journeys]
    return {
        "sessions": total,
        "containment": ratio(total - handed_off, total),
        "automatic_resolution": ratio(sum(session.resolved for session in sessions), total),
        "handoff": {**ratio(handed_off, total), "by_reason": _most_first(reasons)},
        "abandonment": ratio(sum(session.abandoned for session in with_journey), len(with_journey)),
    }


def journey_metrics(sessions: Sequence[Session], journeys: Iterable[str] = JOURNEYS) -> dict[str, dict[str, Any]]:
    """Per journey: started, completed, completion rate, and completion time in seconds (median, p90)."""
    result = {}
    for journey in journeys:
        runs = [session.journeys[journey] for session in sessions if journey in session.journeys]
        times = [run.completed_at - run.started_at for run in runs if run.completed_at is not None]
        result[journey] = {
            "started": len(runs),
            "completed": len(times),
            "completion_rate": len(times) / len(runs) if runs else None,
            "completion_seconds": {"median": percentile(times, 0.5), "p90": percentile(times, 0.9)},
        }
    return result


def form_funnels(sessions: Sequence[Session]) -> dict[str, dict[str, Any]]:
    """Per form, in the order the fields are usually asked: sessions asked each, abandoned sessions stopped at it."""
    asked: dict[str, Counter[str]] = {}
    positions: dict[str, dict[str, list[int]]] = {}
    stopped: dict[str, Counter[str]] = {}
    for session in sessions:
        for form, fields in session.forms.items():
            for position, name in enumerate(fields):
                asked.setdefault(form, Counter())[name] += 1
                positions.setdefault(form, {}).setdefault(name, []).append(position)
        if session.abandoned and session.last_asked is not None:
            form, name = session.last_asked
            stopped.setdefault(form, Counter())[name] += 1
    funnels = {}
    for form in sorted(asked):
        order = sorted(asked[form], key=lambda name: (mean(positions[form][name]), -asked[form][name], name))
        funnels[form] = {
            "sessions": sum(1 for session in sessions if form in session.forms),
            "abandoned": sum(stopped.get(form, Counter()).values()),
            "fields": [
                {"field": name, "asked": asked[form][name], "stopped": stopped.get(form, Counter())[name]}
                for name in order
            ],
        }
    return funnels


def nlu_metrics(
    sessions: Sequence[Session], threshold: float = DEFAULT_THRESHOLD, top: int = TOP_MESSAGES
) -> dict[str, Any]:
    """How often NLU failed the customer: not understood, low confidence, and what was not understood most."""
    messages = [message for session in sessions for message in session.messages if not message.payload]
    not_understood = [message.text for message in messages if message.not_understood]
    return {
        "messages": len(messages),
        "threshold": threshold,
        "not_understood": ratio(len(not_understood), len(messages)),
        "low_confidence": ratio(sum(message.confidence < threshold for message in messages), len(messages)),
        "top_not_understood": [{"text": text, "count": count} for text, count in tally(not_understood)[:top]],
    }


def collections_metrics(sessions: Sequence[Session], payments: Iterable[Payment]) -> dict[str, Any]:
    """Verified contacts, promises to pay and their rate, links sent and paid, plans created."""
    goals = Counter(goal for session in sessions for goal in session.goals)
    verified = sum(session.verified for session in sessions)
    paid = {payment.payment_id: payment.amount for payment in payments}
    return {
        "verified_contacts": verified,
        "promises": goals["promise_created"],
        "promise_to_pay_rate": ratio(goals["promise_created"], verified),
        "links_sent": goals["payment_link"],
        "links_paid": {"count": len(paid), "amount": str(sum(paid.values(), Decimal("0")))},
        "plans_created": goals["plan_created"],
    }


def credit_metrics(sessions: Sequence[Session]) -> dict[str, Any]:
    """Applications by the outcome the pre-evaluation gave, and counter-offers the customer then accepted."""
    outcomes = Counter(outcome for session in sessions for outcome in session.application_outcomes)
    return {
        "applications_by_outcome": _most_first(outcomes),
        "counter_offers_accepted": sum(session.counter_offers_accepted for session in sessions),
    }


def compute_report(
    sessions: Iterable[Session], filters: Filters = Filters(), threshold: float = DEFAULT_THRESHOLD
) -> dict[str, Any]:
    """Every metric over the sessions the filters select."""
    selected: list[Session] = []
    payments: list[Payment] = []
    for session in sessions:
        if filters.admits(session):
            selected.append(session)
        if filters.admits_payments(session):
            payments += session.payments
    return {
        "filters": filters.as_dict(),
        **session_outcomes(selected),
        "journeys": journey_metrics(selected, [filters.journey] if filters.journey else JOURNEYS),
        "forms": form_funnels(selected),
        "nlu": nlu_metrics(selected, threshold),
        "collections": collections_metrics(selected, payments),
        "credit": credit_metrics(selected),
    }


def build_report(
    url: str,
    filters: Filters = Filters(),
    threshold: float = DEFAULT_THRESHOLD,
    core_banking_url: Optional[str] = None,
) -> dict[str, Any]:
    """The report of the tracker store at ``url`` (see ``sessions.tracker_store_url``), with the promise-kept
    rate read from core banking at ``core_banking_url`` (unavailable without one, or when it does not answer)."""
    report = compute_report(read_sessions(url), filters, threshold)
    report["collections"]["promise_kept"] = promise_kept(core_banking_url, filters)
    return report
