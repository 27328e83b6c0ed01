"""What the scheduler reads and calls: core banking (customers, consents, loans, promises, plans), Rasa's tracker
store (where each customer last answered), the agent desk (is the conversation with a person?) and Rasa's HTTP
API (``trigger_intent``, which says the reminder on the customer's channel).

Each is a small synchronous client with a timeout; the scheduler decides what a failure means (skip the
customer until the next run, or treat a delivery as unconfirmed).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Set, Tuple
from urllib.parse import quote
from zoneinfo import ZoneInfo

import requests
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from urllib3.exceptions import NewConnectionError

from credia.analytics.sessions import EVENTS, is_external
from credia.reminders.cadence import InstallmentFacts, LoanFacts, PlanFacts, PlanRow, PromiseFacts
from credia.reminders.store import Route

logger = logging.getLogger(__name__)

REMINDER_INTENT = "EXTERNAL_payment_reminder"
# Core banking counts days (promise and plan dates) in the lender's time zone.
LENDER_ZONE = ZoneInfo("America/Lima")
OPEN_PLAN_STATUSES = ("active", "pending_approval")
# What the desk answers for a handoff that is over; anything else it answers with 200 is a live handoff.
HANDOFF_OVER = frozenset({"closed", "resolved", "returned", "ended", "cancelled", "canceled"})
VERIFIED_SLOT = "verified_customer_id"
WHATSAPP_PREFIX = "whatsapp:"


class SourceError(Exception):
    """A backend did not answer as expected; the scheduler retries at its next run."""


class Undelivered(Exception):
    """Rasa certainly did not take the reminder (refused connection, 4xx): it can be tried again."""


class Unconfirmed(Exception):
    """Rasa may or may not have taken the reminder (timeout, 5xx): the conversation will tell."""


@dataclass(frozen=True)
class ConsentState:
    granted: bool
    withdrawn: bool  # the latest event is a withdrawal (an opt-out), not a channel never asked about


@dataclass(frozen=True)
class CustomerFacts:
    id: int
    country: str
    phone: str
    consents: Mapping[str, ConsentState]


def _decimal(value: Any) -> Decimal:
    return Decimal(str(value or "0"))


def _lender_day(value: str) -> date:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(LENDER_ZONE).date()


class CoreBanking:
    """The core-banking API (``/openapi.json`` of the mock), read through plain HTTP."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.http = requests.Session()

    def _get(self, path: str, **params: Any) -> Any:
        try:
            response = self.http.get(f"{self.base_url}{path}", params=params, timeout=self.timeout)
        except requests.RequestException as exc:
            raise SourceError(f"core banking {path}: {exc}") from None
        if response.status_code != 200:
            raise SourceError(f"core banking {path}: HTTP {response.status_code} {response.text[:200]}")
        return response.json()

    def customer_ids(self) -> Iterator[int]:
        offset, page = 0, 500
        while True:
            customers = self._get("/customers", limit=page, offset=offset)
            yield from (customer["id"] for customer in customers)
            if len(customers) < page:
                return
            offset += page

    def customer(self, customer_id: int) -> CustomerFacts:
        """The customer with the consents as they are now (read again right before each message)."""
        customer = self._get(f"/customers/{customer_id}")
        consents = self._get(f"/customers/{customer_id}/consents")["current"]
        return CustomerFacts(
            id=customer["id"],
            country=customer["country"],
            phone=customer["phone"],
            consents={
                item["channel"]: ConsentState(bool(item["granted"]), not item["granted"] and item["source"] is not None)
                for item in consents
            },
        )

    def loans(self, customer_id: int) -> List[LoanFacts]:
        """The customer's loans; a paid-off one only as such (its planned reminders are settled as paid).
        Reading an active loan's promises makes core banking settle them (kept or broken) and store the result:
        the scheduler's pass is what records a broken promise."""
        return [
            self._loan(loan) if loan["status"] == "active"
            else LoanFacts(loan["id"], loan["customer_id"], loan["currency"], False, (), paid_off=True)
            for loan in self._get(f"/customers/{customer_id}/loans")
        ]

    def _loan(self, summary: Dict[str, Any]) -> LoanFacts:
        loan_id = summary["id"]
        detail = self._get(f"/loans/{loan_id}")
        promises = self._get(f"/loans/{loan_id}/promises")
        plan = None
        if summary.get("active_plan_id"):
            plans = [p for p in self._get(f"/loans/{loan_id}/payment-plans") if p["status"] in OPEN_PLAN_STATUSES]
            if plans:
                plan = self._plan(loan_id, plans[-1])
        return LoanFacts(
            id=loan_id,
            customer_id=summary["customer_id"],
            currency=summary["currency"],
            collections_hold=bool(summary["collections_hold"]),
            installments=tuple(
                InstallmentFacts(
                    number=item["number"],
                    due_date=date.fromisoformat(item["due_date"]),
                    amount=_decimal(item["amount"]),
                    paid_amount=_decimal(item["paid_amount"]),
                    late_interest=_decimal(item["late_interest"]),
                    paid_on=date.fromisoformat(item["paid_on"]) if item.get("paid_on") else None,
                )
                for item in detail["installments"]
            ),
            promises=tuple(
                PromiseFacts(
                    id=promise["id"],
                    amount=_decimal(promise["amount"]),
                    promised_date=date.fromisoformat(promise["promised_date"]),
                    status=promise["status"],
                    created_on=_lender_day(promise["created_at"]),
                )
                for promise in promises
            ),
            plan=plan,
        )

    def _plan(self, loan_id: int, plan: Dict[str, Any]) -> PlanFacts:
        created = datetime.fromisoformat(plan["created_at"].replace("Z", "+00:00"))
        payments = self._get(f"/loans/{loan_id}/payments")
        paid = sum(
            (_decimal(p["amount"]) for p in payments
             if datetime.fromisoformat(p["paid_at"].replace("Z", "+00:00")) >= created),
            Decimal("0.00"),
        )
        return PlanFacts(
            id=plan["id"],
            status=plan["status"],
            created_on=created.astimezone(LENDER_ZONE).date(),
            rows=tuple(
                PlanRow(row["number"], date.fromisoformat(row["due_date"]), _decimal(row["amount"]))
                for row in plan["schedule"]
            ),
            paid_since=paid,
        )


def route_of(sender_id: str, input_channel: Optional[str]) -> Optional[Route]:
    """Where a conversation can be written to first: WhatsApp (Cloud API or Twilio), SMS, or the web chat."""
    if input_channel == "whatsapp":
        return Route("whatsapp", "whatsapp", sender_id)
    if input_channel == "twilio_messaging":
        channel = "whatsapp" if sender_id.startswith(WHATSAPP_PREFIX) else "sms"
        return Route(channel, "twilio_messaging", sender_id)
    if input_channel == "socketio":
        return Route("web", "socketio", sender_id)
    return None


def default_route(channel: str, phone: str, whatsapp_via: str) -> Route:
    """The conversation of a customer's phone on a channel: WhatsApp Cloud API ids are the number's digits
    (the ``wa_id``), Twilio's are ``+51…`` for SMS and ``whatsapp:+51…``."""
    if channel == "whatsapp":
        if whatsapp_via == "twilio":
            return Route("whatsapp", "twilio_messaging", WHATSAPP_PREFIX + phone)
        return Route("whatsapp", "whatsapp", phone.lstrip("+"))
    return Route("sms", "twilio_messaging", phone)


def addresses_of(phone: str) -> Tuple[str, ...]:
    """Every conversation id a customer's phone can have: the ``wa_id``, the SMS and the Twilio WhatsApp ids."""
    return phone.lstrip("+"), phone, WHATSAPP_PREFIX + phone


class ConversationIndex:
    """Where each customer last wrote, read from Rasa's SQL tracker store (the ``events`` table).

    A conversation counts for a customer when its id is one of their addresses, or, for the sessions in which
    they proved who they are, when the slot ``verified_customer_id`` holds their id (a web chat, say).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Optional[sa.engine.Engine] = None
        self.verified: Dict[str, Set[str]] = {}

    def _connect(self) -> Optional[sa.engine.Engine]:
        if self.engine is None:
            parsed = make_url(self.url)
            if parsed.drivername.startswith("sqlite") and parsed.database and not Path(parsed.database).is_file():
                return None  # Rasa has not stored a conversation yet
            self.engine = sa.create_engine(self.url)
        return self.engine

    def refresh(self) -> None:
        """Re-read which conversations verified which customer (once per run)."""
        self.verified = {}
        engine = self._connect()
        if engine is None:
            return
        query = sa.select(EVENTS.c.sender_id, EVENTS.c.data).where(
            EVENTS.c.type_name == "slot", EVENTS.c.data.like(f'%"{VERIFIED_SLOT}"%')
        )
        try:
            with engine.connect() as connection:
                for sender_id, data in connection.execute(query):
                    event = json.loads(data)
                    if event.get("name") == VERIFIED_SLOT and event.get("value"):
                        self.verified.setdefault(str(event["value"]), set()).add(sender_id)
        except sa.exc.DBAPIError as exc:
            logger.warning("tracker store not readable (%s); reminders go to the default channels", exc.orig)

    def last_answered(self, customer_id: int, phone: str) -> Optional[Route]:
        """The route of the latest message the customer wrote (not an external event), if any."""
        engine = self._connect()
        addresses = set(addresses_of(phone))
        senders = addresses | self.verified.get(str(customer_id), set())
        if engine is None or not senders:
            return None
        query = (
            sa.select(EVENTS.c.sender_id, EVENTS.c.type_name, EVENTS.c.data)
            .where(EVENTS.c.sender_id.in_(sorted(senders)),
                   EVENTS.c.type_name.in_(("user", "slot", "session_started", "restart")))
            .order_by(EVENTS.c.sender_id, EVENTS.c.id)
        )
        latest: Optional[Tuple[float, Route]] = None
        try:
            with engine.connect() as connection:
                rows = list(connection.execute(query))
        except sa.exc.DBAPIError as exc:
            logger.warning("tracker store not readable (%s)", exc.orig)
            return None
        for sender_id, messages in _sessions_of(rows, str(customer_id), addresses):
            for timestamp, channel in messages:
                route = route_of(sender_id, channel)
                if route is not None and (latest is None or timestamp > latest[0]):
                    latest = (timestamp, route)
        return latest[1] if latest else None

    def close(self) -> None:
        if self.engine is not None:
            self.engine.dispose()


def _sessions_of(
    rows: Sequence[Tuple[str, str, str]], customer_id: str, addresses: Set[str]
) -> Iterator[Tuple[str, List[Tuple[float, Optional[str]]]]]:
    """Per session, the customer's own messages (timestamp, input channel) when the session is theirs."""
    sender: Optional[str] = None
    owner: Optional[str] = None
    messages: List[Tuple[float, Optional[str]]] = []

    def flush() -> Iterator[Tuple[str, List[Tuple[float, Optional[str]]]]]:
        if sender is not None and messages and (sender in addresses or owner == customer_id):
            yield sender, list(messages)

    for sender_id, type_name, data in rows:
        if sender_id != sender or type_name in ("session_started", "restart"):
            yield from flush()
            sender, owner, messages = sender_id, None, []
        event = json.loads(data)
        if type_name == "slot" and event.get("name") == VERIFIED_SLOT and event.get("value"):
            owner = str(event["value"])
        elif type_name == "user":
            intent = ((event.get("parse_data") or {}).get("intent") or {}).get("name")
            if not is_external(intent, event.get("text") or "", event):
                messages.append((float(event.get("timestamp") or 0.0), event.get("input_channel")))
    yield from flush()


class Desk:
    """Asks the agent desk whether a person has the conversation (``GET /api/handoffs/{conversation_id}``)."""

    def __init__(self, base_url: str, token: str, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"}
        self.timeout = timeout

    def in_handoff(self, conversation_id: str) -> Optional[bool]:
        """True or False; ``None`` when the desk cannot tell now (down, or an unexpected answer)."""
        if not self.base_url:
            return False
        url = f"{self.base_url}/api/handoffs/{quote(conversation_id, safe='')}"
        try:
            response = requests.get(url, headers=self.headers, timeout=self.timeout)
        except requests.RequestException as exc:
            logger.warning("desk not reachable: %s", exc)
            return None
        if response.status_code == 404:
            return False
        if response.status_code != 200:
            logger.warning("desk answered %s for a handoff look-up", response.status_code)
            return None
        try:
            status = str((response.json() or {}).get("status", "")).lower()
        except ValueError:
            return None
        return status not in HANDOFF_OVER


def _never_connected(exc: requests.RequestException) -> bool:
    """The request never reached the server, so nothing can have been sent."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(exc, requests.ConnectionError) and isinstance(reason, NewConnectionError)


class Rasa:
    """Rasa's HTTP API: the reminder as the external intent, and the conversation to confirm it arrived."""

    def __init__(self, base_url: str, token: str, timeout: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def _conversation(self, conversation_id: str) -> str:
        return f"{self.base_url}/conversations/{quote(conversation_id, safe=':+@')}"

    def trigger(self, route: Route, entities: Dict[str, str]) -> None:
        url = f"{self._conversation(route.conversation_id)}/trigger_intent"
        body = {"name": REMINDER_INTENT, "entities": entities}
        params = {"output_channel": route.output_channel, "token": self.token}
        try:
            response = requests.post(url, params=params, json=body, timeout=self.timeout)
        except requests.RequestException as exc:
            if _never_connected(exc):
                raise Undelivered(f"Rasa not reachable: {type(exc).__name__}") from None
            raise Unconfirmed(f"no answer from Rasa: {type(exc).__name__}") from None
        if 200 <= response.status_code < 300:
            return
        detail = f"Rasa answered HTTP {response.status_code}: {response.text[:200]}"
        if 400 <= response.status_code < 500:
            raise Undelivered(detail)
        raise Unconfirmed(detail)

    def delivered(self, conversation_id: str, reminder_id: str) -> Optional[bool]:
        """Whether the conversation holds the reminder; ``None`` when Rasa cannot be asked now."""
        try:
            response = requests.get(
                f"{self._conversation(conversation_id)}/tracker",
                params={"token": self.token, "include_events": "ALL"},
                timeout=self.timeout,
            )
        except requests.RequestException:
            return None
        if response.status_code != 200:
            return None
        for event in response.json().get("events") or []:
            parse = event.get("parse_data") or {}
            if event.get("event") == "user" and (parse.get("intent") or {}).get("name") == REMINDER_INTENT:
                entities = parse.get("entities") or event.get("entities") or []
                if any(e.get("entity") == "reminder_id" and e.get("value") == reminder_id for e in entities):
                    return True
        return False
