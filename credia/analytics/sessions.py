"""Conversation sessions read back from Rasa's SQL tracker store, reduced to the facts the metrics count.

Rasa keeps every event of every conversation in one ``events`` table (``SQLTrackerStore`` in
rasa/core/tracker_store.py: sender_id, type_name, timestamp, intent_name, action_name, and the whole event as
JSON in ``data``), on SQLite by default and PostgreSQL when one machine is not enough. The metrics need no
Rasa domain or model: they read the markers the actions write (slots ``goal_reached`` and ``handoff_reason``,
see actions/base.py) and what the customers said.

A conversation is split into sessions at ``session_started`` events. A ``restart`` ends the current session;
the next customer message opens another one (Rasa starts a new session there anyway).

A customer message starts a journey (or asks for a person, or is not understood: ``nlu_fallback``) by its
intent; while a form is asking, only when the bot leaves the form for it (its next action is not the form): a
form takes its answers whatever NLU read them as (an e-mail address as ``check_debt``, or as nothing).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import groupby
from operator import itemgetter
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from credia import settings
from credia.money import parse_decimal

# Journeys, the customer intents that start them and the goals that complete them.
CREDIT, SIMULATION, STATUS, COLLECTIONS = "credit", "simulation", "status", "collections"
JOURNEYS = (CREDIT, SIMULATION, STATUS, COLLECTIONS)
JOURNEY_INTENTS = {
    "request_credit": CREDIT,
    "simulate_loan": SIMULATION,
    "check_application_status": STATUS,
    **{
        intent: COLLECTIONS
        for intent in (
            "check_debt", "pay_now", "already_paid", "request_payment_plan", "counter_offer", "promise_to_pay",
            "dispute_debt", "report_hardship",
        )
    },
}
# The simulation has no goal slot: running the action that shows the simulated loan is its goal.
SIMULATION_ACTION = "action_simulate_loan"
LOAN_SIMULATED = "loan_simulated"
GOAL_JOURNEYS = {
    "application_submitted": CREDIT,
    LOAN_SIMULATED: SIMULATION,
    "status_answered": STATUS,
    "debt_shown": COLLECTIONS,
    "payment_link": COLLECTIONS,
    "plan_created": COLLECTIONS,
    "promise_created": COLLECTIONS,
}

GOAL_SLOT = "goal_reached"
HANDOFF_SLOT = "handoff_reason"
ASK_HUMAN_INTENT = "ask_human"
EXPLICIT_REQUEST = "explicit_request"
FALLBACK_INTENT = "nlu_fallback"
FALLBACK_ACTION = "action_default_fallback"
PAYMENT_RECEIVED_INTENT = "EXTERNAL_payment_received"
ACCEPT_OFFER_ACTION = "action_accept_offer"
EXTERNAL_TEXT_PREFIX = "EXTERNAL: "  # what Rasa writes as the text of an external event (trigger_intent)

# Published events carry their row id in the tracker store under this key (credia/tracker_store.py), so a store fed
# by the event broker (credia/analytics/consumer.py) keeps the tracker store's order.
EVENT_ID = "credia_event_id"

EVENTS = sa.Table(
    "events",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("sender_id", sa.String(255)),
    sa.Column("type_name", sa.String(255)),
    sa.Column("timestamp", sa.Float),
    sa.Column("intent_name", sa.String(255)),
    sa.Column("action_name", sa.String(255)),
    sa.Column("data", sa.Text),
)


class TrackerStoreError(RuntimeError):
    """The tracker store cannot be read; the message says what to do about it."""


@dataclass
class CustomerMessage:
    """One message the customer wrote (external events and bot messages are not customer messages)."""

    text: str
    timestamp: float
    intent: Optional[str]  # what NLU answered, ``nlu_fallback`` included
    predicted: Optional[str]  # the best real intent, with ``nlu_fallback`` set aside
    confidence: float  # of ``predicted``
    payload: bool  # a button press ("/affirm"): Rasa takes the intent as given, NLU does not read it
    not_understood: bool = False  # nlu_fallback not taken as a form's answer, or answered by action_default_fallback


@dataclass
class JourneyRun:
    """A journey within a session: when it started and when it first reached its goal."""

    started_at: float
    completed_at: Optional[float] = None


@dataclass(frozen=True)
class Payment:
    """A paid link announced in the conversation (the external intent ``EXTERNAL_payment_received``)."""

    payment_id: str
    amount: Decimal


@dataclass
class Session:
    """What the metrics need to know about one conversation session."""

    sender_id: str
    started_at: float
    channel: Optional[str] = None
    messages: list[CustomerMessage] = field(default_factory=list)
    journeys: dict[str, JourneyRun] = field(default_factory=dict)
    goals: list[str] = field(default_factory=list)
    handoff_reasons: list[str] = field(default_factory=list)
    verified: bool = False
    forms: dict[str, list[str]] = field(default_factory=dict)  # form -> fields asked, in order, once each
    last_asked: Optional[tuple[str, str]] = None  # (form, field) the bot asked last
    application_outcomes: list[str] = field(default_factory=list)
    counter_offers_accepted: int = 0
    payments: list[Payment] = field(default_factory=list)

    @property
    def engaged(self) -> bool:
        """The customer wrote at least once; a web chat opened and left, or a payment announced in a fresh
        session, is not a contact."""
        return bool(self.messages)

    @property
    def handed_off(self) -> bool:
        return bool(self.handoff_reasons)

    @property
    def reached_goal(self) -> bool:
        return bool(self.goals)

    @property
    def resolved(self) -> bool:
        """Reached a goal and no person was needed, before or after it."""
        return self.reached_goal and not self.handed_off

    @property
    def abandoned(self) -> bool:
        """Started a journey and ended with neither a goal nor a person."""
        return bool(self.journeys) and not self.reached_goal and not self.handed_off


class _SessionBuilder:
    """Reads one session's events in order and keeps the facts; the order matters (e.g. an action's slot
    events follow the action that set them)."""

    def __init__(self, sender_id: str, started_at: float) -> None:
        self.session = Session(sender_id, started_at)
        self.active_loop: Optional[str] = None
        self.last_action: Optional[str] = None
        self.external_channel: Optional[str] = None
        self.answering: Optional[CustomerMessage] = None  # the message the bot's actions now answer
        self.said_in_form: Optional[CustomerMessage] = None  # said while a form was asking, next action pending

    def add(self, type_name: str, data: dict[str, Any]) -> None:
        if type_name == "user":
            self._user(data)
        elif type_name == "action":
            self._action(data)
        elif type_name == "slot":
            self._slot(data)
        elif type_name == "active_loop":
            self.active_loop = data.get("name")

    def finish(self) -> Session:
        if self.said_in_form is not None:
            self._act_on(self.said_in_form)  # the conversation ended there: the form did not take it
        self.session.channel = self.session.channel or self.external_channel
        return self.session

    def _user(self, data: dict[str, Any]) -> None:
        parse = data.get("parse_data") or {}
        intent_data = parse.get("intent") or {}
        intent = intent_data.get("name")
        text = data.get("text") or ""
        timestamp = _timestamp(data)
        if is_external(intent, text, data):
            self.answering = None
            self.external_channel = self.external_channel or data.get("input_channel")
            if intent == PAYMENT_RECEIVED_INTENT:
                self._payment(parse.get("entities") or data.get("entities") or [])
            return
        ranking = [r for r in parse.get("intent_ranking") or [] if r.get("name") != FALLBACK_INTENT]
        best = ranking[0] if ranking else intent_data
        message = CustomerMessage(
            text=text,
            timestamp=timestamp,
            intent=intent,
            predicted=best.get("name"),
            confidence=float(best.get("confidence") or 0.0),
            payload=text.startswith("/"),
        )
        self.session.messages.append(message)
        self.session.channel = self.session.channel or data.get("input_channel")
        self.answering = message
        if self.active_loop:
            # The form may take the message as its answer whatever NLU read ("ana@correo.pe" as check_debt or
            # nlu_fallback): then it starts nothing and was understood. The next action tells.
            self.said_in_form = message
        else:
            self._act_on(message)

    def _act_on(self, message: CustomerMessage) -> None:
        """What the bot did not take as an answer to a form: a request for a journey or a person, or a
        message not understood."""
        journey = JOURNEY_INTENTS.get(message.intent or "")
        if journey and journey not in self.session.journeys:
            self.session.journeys[journey] = JourneyRun(message.timestamp)
        if message.intent == ASK_HUMAN_INTENT:
            self._handoff(EXPLICIT_REQUEST)
        if message.intent == FALLBACK_INTENT:
            message.not_understood = True

    def _action(self, data: dict[str, Any]) -> None:
        name = data.get("name")
        self.last_action = name
        if self.said_in_form is not None:
            if name != self.active_loop:  # the form gave way to the message (it rejected it, or a rule ran)
                self._act_on(self.said_in_form)
            self.said_in_form = None
        if name == FALLBACK_ACTION and self.answering is not None:
            self.answering.not_understood = True
        elif name == SIMULATION_ACTION:
            self._goal(LOAN_SIMULATED, _timestamp(data))

    def _slot(self, data: dict[str, Any]) -> None:
        name, value = data.get("name"), data.get("value")
        if value is None:
            return
        if name == GOAL_SLOT:
            self._goal(str(value), _timestamp(data))
        elif name == HANDOFF_SLOT:
            self._handoff(str(value))
        elif name == "identity_verified" and value is True:
            self.session.verified = True
        elif name == "requested_slot" and self.active_loop:
            fields = self.session.forms.setdefault(self.active_loop, [])
            if value not in fields:
                fields.append(str(value))
            self.session.last_asked = (self.active_loop, str(value))
        elif name == "application_outcome":
            if self.last_action == ACCEPT_OFFER_ACTION:
                self.session.counter_offers_accepted += 1
            else:
                self.session.application_outcomes.append(str(value))

    def _goal(self, goal: str, timestamp: float) -> None:
        session = self.session
        session.goals.append(goal)
        journey = GOAL_JOURNEYS.get(goal)
        if journey is None:
            return
        run = session.journeys.get(journey)
        if run is None:
            # Reached without one of the journey's intents (e.g. a rephrased request): it started, at the latest,
            # with the session's first message.
            first = session.messages[0].timestamp if session.messages else session.started_at
            run = session.journeys[journey] = JourneyRun(first)
        if run.completed_at is None:
            run.completed_at = timestamp

    def _handoff(self, reason: str) -> None:
        if reason not in self.session.handoff_reasons:
            self.session.handoff_reasons.append(reason)

    def _payment(self, entities: list[dict[str, Any]]) -> None:
        values = {entity.get("entity"): entity.get("value") for entity in entities}
        try:
            amount = parse_decimal(values.get("paid_amount"))
        except ValueError:
            amount = Decimal("0")  # still a paid link; its amount is unreadable
        if values.get("payment_id"):
            self.session.payments.append(Payment(str(values["payment_id"]), amount))


def is_external(intent: Optional[str], text: str, data: dict[str, Any]) -> bool:
    """An event from a system (a paid link, a reminder), not something the customer wrote."""
    return (
        (intent or "").startswith("EXTERNAL_")
        or text.startswith(EXTERNAL_TEXT_PREFIX)
        or bool((data.get("metadata") or {}).get("is_external"))
    )


def _timestamp(data: dict[str, Any]) -> float:
    return float(data.get("timestamp") or 0.0)


def split_sessions(sender_id: str, events: Iterable[tuple[str, dict[str, Any]]]) -> list[Session]:
    """One conversation's events, ``(type_name, data)`` in stored order, as sessions."""
    sessions: list[Session] = []
    builder: Optional[_SessionBuilder] = None
    for type_name, data in events:
        if type_name in ("session_started", "restart"):
            if builder is not None:
                sessions.append(builder.finish())
            builder = _SessionBuilder(sender_id, _timestamp(data)) if type_name == "session_started" else None
            continue
        if builder is None:
            if type_name != "user":
                continue  # bookkeeping of Rasa between a restart (or the very start) and the next message
            builder = _SessionBuilder(sender_id, _timestamp(data))
        builder.add(type_name, data)
    if builder is not None:
        sessions.append(builder.finish())
    return sessions


def tracker_store_url(value: Optional[str] = None) -> str:
    """The tracker store to read: a database URL, a SQLite file path, or where the launcher puts it
    (``$CREDIA_VAR_DIR/rasa_tracker.db``)."""
    if not value:
        return settings.sqlite_url("rasa_tracker.db")
    if "://" in value:
        return value
    return f"sqlite:///{Path(value).resolve()}"


def read_sessions(url: str) -> Iterator[Session]:
    """Every session in the tracker store, one conversation at a time (a large store never sits in memory)."""
    try:
        parsed = make_url(url)
        engine = sa.create_engine(url)
    except sa.exc.ArgumentError as exc:
        raise TrackerStoreError(f"The tracker store URL cannot be used ({exc}).") from None
    where = parsed.render_as_string(hide_password=True)
    try:
        if parsed.drivername.startswith("sqlite") and parsed.database not in (None, "", ":memory:"):
            if not Path(parsed.database).is_file():
                raise TrackerStoreError(
                    f"There is no tracker store at {parsed.database}: start the assistant (./assistant start) so "
                    "conversations are stored, or give the store with --tracker-db."
                )
        try:
            connection = engine.connect()
        except sa.exc.DBAPIError as exc:
            raise TrackerStoreError(f"The tracker store {where} cannot be reached ({exc.orig}).") from None
        with connection:
            query = sa.select(EVENTS.c.sender_id, EVENTS.c.type_name, EVENTS.c.data).order_by(
                EVENTS.c.sender_id, EVENTS.c.id
            )
            try:
                rows = connection.execution_options(stream_results=True).execute(query)
            except sa.exc.DBAPIError as exc:
                raise TrackerStoreError(
                    f"The database {where} has no readable Rasa events table ({exc.orig}); is it the tracker "
                    "store of endpoints.yml?"
                ) from None
            for sender_id, group in groupby(rows, key=itemgetter(0)):
                yield from split_sessions(sender_id, ((row[1], json.loads(row[2])) for row in group))
    finally:
        engine.dispose()
