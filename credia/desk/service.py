"""What the desk does, independent of HTTP: log agents in, open and route handoffs, record what the customer and
the agents write, hand conversations back, and keep tickets.

Each operation is one transaction. Calls to Rasa are outbox rows written in that same transaction and delivered
afterwards (``credia.desk.outbox``); live events for the consoles are published only after the commit, so a
console that refreshes on an event always finds what the event announced.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from credia.db import utcnow
from credia.desk import auth
from credia.desk.events import Broker, DeskEvent
from credia.desk.hours import BusinessCalendar, Clock
from credia.desk.models import (
    Agent,
    AuthSession,
    DeliveryStatus,
    Handoff,
    HandoffStatus,
    IdempotentRequest,
    LoginThrottle,
    Message,
    MessageKind,
    OutboxItem,
    Role,
    Ticket,
    TicketKind,
)
from credia.desk.outbox import RasaOutbox, RasaTarget, events_path, trigger_path
from credia.desk.policy import CALLBACK_OUTCOME, DeskPolicy
from credia.desk.schemas import CustomerIn, CustomerMessageIn, HandoffIn, TicketIn

logger = logging.getLogger(__name__)

OPEN_STATUSES = (HandoffStatus.QUEUED.value, HandoffStatus.ASSIGNED.value)
# A session's last_seen_at is written at most this often, not on every request.
TOUCH_EVERY = timedelta(seconds=15)
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O or 1/I to confuse on the phone
TICKET_PREFIX = {TicketKind.CALLBACK.value: "LL", TicketKind.TICKET.value: "TK"}
MAX_REPLY = 4000
_DIGIT = re.compile(r"\d")


class DeskError(Exception):
    """A request the desk refuses; ``message`` is shown to the agent (Spanish) or to the integrator."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


@dataclass(frozen=True)
class Viewer:
    """The logged-in agent behind a console request."""

    agent_id: int
    username: str
    display_name: str
    role: str
    session_id: int
    csrf_token: str
    available: bool

    @property
    def is_supervisor(self) -> bool:
        return self.role == Role.SUPERVISOR.value


@dataclass(frozen=True)
class LoginResult:
    token: Optional[str] = None
    locked_minutes: Optional[int] = None
    failures: int = 0


@dataclass(frozen=True)
class AgentLoad:
    agent: Agent
    open_count: int
    online: bool


def mask_document(document: Optional[str]) -> Optional[str]:
    """Only the last three digits of a document ever reach the console, even if the assistant sent more."""
    if not document:
        return document
    digits = len(_DIGIT.findall(document))
    if digits <= 4:
        return document
    seen = 0

    def hide(match: re.Match) -> str:
        nonlocal seen
        seen += 1
        return "*" if seen <= digits - 3 else match.group(0)

    return _DIGIT.sub(hide, document)


def customer_json(customer: CustomerIn) -> Dict[str, Any]:
    data = customer.dict()
    data["document"] = mask_document(data["document"])
    return data


def can_view(viewer: Viewer, handoff: Handoff) -> bool:
    """Supervisors see everything; an agent the queue and their own conversations."""
    return (
        viewer.is_supervisor
        or handoff.status == HandoffStatus.QUEUED.value
        or handoff.agent_id == viewer.agent_id
    )


def can_act(viewer: Viewer, handoff: Handoff) -> bool:
    """Reply, note, transfer and resolve: the assigned agent, or a supervisor."""
    return handoff.status == HandoffStatus.ASSIGNED.value and (
        viewer.is_supervisor or handoff.agent_id == viewer.agent_id
    )


class Desk:
    def __init__(
        self,
        sessions: sessionmaker,
        policy: DeskPolicy,
        clock: Clock,
        rasa: RasaTarget,
        broker: Optional[Broker] = None,
    ) -> None:
        self.sessions = sessions
        self.policy = policy
        self.calendar = BusinessCalendar(policy.business_hours)
        self.clock = clock
        self.broker = broker or Broker()
        self.outbox = RasaOutbox(sessions, rasa, self._delivery_changed)
        # Assignments check a limit and then write; one at a time keeps two claims from both passing the check.
        self._assign_lock = threading.Lock()

    # --- agents, sessions, presence -------------------------------------------------------------------------

    def ensure_agent(self, username: str, display_name: str, role: Role, password: str) -> None:
        """Create a demo user, or give it this run's password (the launcher makes a new one per run)."""
        with self.sessions() as session, session.begin():
            agent = session.execute(select(Agent).where(Agent.username == username)).scalar_one_or_none()
            if agent is None:
                session.add(
                    Agent(
                        username=username,
                        display_name=display_name,
                        role=role.value,
                        password_hash=auth.hash_password(password),
                        active=True,
                        available=True,
                        created_at=utcnow(),
                    )
                )
            elif not auth.verify_password(password, agent.password_hash):
                agent.password_hash = auth.hash_password(password)
                session.execute(delete(AuthSession).where(AuthSession.agent_id == agent.id))

    def login(self, username: str, password: str) -> LoginResult:
        username = username.strip().lower()[:64]
        try:
            return self._login(username, password)
        except IntegrityError:  # two first failures for one name at once: the other one was counted
            return LoginResult(failures=1)

    def _login(self, username: str, password: str) -> LoginResult:
        rules = self.policy.security
        now = utcnow()
        with self.sessions() as session, session.begin():
            throttle = session.get(LoginThrottle, username)
            if throttle is not None and throttle.locked_until is not None and throttle.locked_until > now:
                remaining = (throttle.locked_until - now).total_seconds() / 60
                return LoginResult(locked_minutes=max(1, math.ceil(remaining)))
            agent = session.execute(
                select(Agent).where(Agent.username == username, Agent.active.is_(True))
            ).scalar_one_or_none()
            valid = auth.verify_password(password, agent.password_hash if agent else auth.UNKNOWN_USER_HASH)
            if agent is None or not valid:
                return self._failed_login(session, throttle, username, now)
            if throttle is not None:
                session.delete(throttle)
            token = auth.new_token()
            session.add(
                AuthSession(
                    token_hash=auth.token_digest(token),
                    csrf_token=secrets.token_urlsafe(24),
                    agent_id=agent.id,
                    created_at=now,
                    last_seen_at=now,
                    expires_at=now + timedelta(hours=rules.session_max_hours),
                )
            )
            agent.available = True
        self.broker.publish(DeskEvent("agents"))
        return LoginResult(token=token)

    def _failed_login(
        self, session: Session, throttle: Optional[LoginThrottle], username: str, now: datetime
    ) -> LoginResult:
        rules = self.policy.security
        window = timedelta(minutes=rules.login_lock_minutes)
        if throttle is None:
            throttle = LoginThrottle(username=username, failures=0)
            session.add(throttle)
        elif throttle.last_failure_at is None or now - throttle.last_failure_at > window:
            throttle.failures = 0  # old failures (or a lock that ran out) no longer count
        throttle.failures += 1
        throttle.last_failure_at = now
        throttle.locked_until = None
        if throttle.failures >= rules.login_max_failures:
            throttle.locked_until = now + window
            logger.warning("login locked for %r after %d failures", username, throttle.failures)
            return LoginResult(locked_minutes=rules.login_lock_minutes, failures=throttle.failures)
        return LoginResult(failures=throttle.failures)

    def viewer_for(self, token: str) -> Optional[Viewer]:
        """The agent behind a session cookie, or None when the session is unknown, idle too long or expired."""
        now = utcnow()
        idle = timedelta(minutes=self.policy.security.session_idle_minutes)
        with self.sessions() as session, session.begin():
            row = session.execute(
                select(AuthSession).where(AuthSession.token_hash == auth.token_digest(token))
            ).scalar_one_or_none()
            if row is None:
                return None
            if row.expires_at <= now or now - row.last_seen_at > idle or not row.agent.active:
                session.delete(row)
                return None
            if now - row.last_seen_at > TOUCH_EVERY:
                row.last_seen_at = now
            agent = row.agent
            return Viewer(agent.id, agent.username, agent.display_name, agent.role, row.id, row.csrf_token,
                          agent.available)

    def touch(self, session_id: int) -> bool:
        """Keep an open console's session (and its agent's presence) alive; False once the session is gone."""
        now = utcnow()
        with self.sessions() as session, session.begin():
            row = session.get(AuthSession, session_id)
            if row is None or row.expires_at <= now:
                return False
            row.last_seen_at = now
            return True

    def logout(self, session_id: int) -> None:
        with self.sessions() as session, session.begin():
            session.execute(delete(AuthSession).where(AuthSession.id == session_id))
        self.broker.publish(DeskEvent("agents"))

    def set_available(self, viewer: Viewer, available: bool) -> None:
        with self.sessions() as session, session.begin():
            session.get(Agent, viewer.agent_id).available = available
        self.broker.publish(DeskEvent("agents"))

    def _online_ids(self, session: Session) -> Set[int]:
        now = utcnow()
        since = now - timedelta(seconds=self.policy.queue.presence_timeout_seconds)
        return set(
            session.execute(
                select(AuthSession.agent_id)
                .join(Agent, Agent.id == AuthSession.agent_id)
                .where(
                    AuthSession.last_seen_at >= since,
                    AuthSession.expires_at > now,
                    Agent.active.is_(True),
                    Agent.available.is_(True),
                )
            ).scalars()
        )

    def _open_counts(self, session: Session) -> Dict[int, int]:
        rows = session.execute(
            select(Handoff.agent_id, func.count())
            .where(Handoff.status == HandoffStatus.ASSIGNED.value)
            .group_by(Handoff.agent_id)
        ).all()
        return {agent_id: count for agent_id, count in rows}

    def agent_loads(self) -> List[AgentLoad]:
        with self.sessions() as session:
            online = self._online_ids(session)
            counts = self._open_counts(session)
            agents = session.execute(
                select(Agent).where(Agent.active.is_(True)).order_by(Agent.role.desc(), Agent.display_name)
            ).scalars()
            return [AgentLoad(agent, counts.get(agent.id, 0), agent.id in online) for agent in agents]

    # --- service API ----------------------------------------------------------------------------------------

    def idempotent(
        self, scope: str, key: Optional[str], request: Dict[str, Any], operation: Callable[[], Tuple[int, Dict]]
    ) -> Tuple[int, Dict[str, Any]]:
        """Run ``operation`` once per key: a retry with the same key and body gets the first answer again."""
        if not key:
            return operation()
        digest = hashlib.sha256(json.dumps(request, sort_keys=True, default=str).encode()).hexdigest()
        stored = self._stored_answer(scope, key, digest)
        if stored is not None:
            return stored
        status_code, payload = operation()
        try:
            with self.sessions() as session, session.begin():
                session.add(
                    IdempotentRequest(
                        scope=scope, key=key, request_hash=digest, status_code=status_code,
                        response=payload, created_at=utcnow(),
                    )
                )
        except IntegrityError:  # the same key was answered concurrently; both callers get that answer
            stored = self._stored_answer(scope, key, digest)
            if stored is not None:
                return stored
        return status_code, payload

    def _stored_answer(self, scope: str, key: str, digest: str) -> Optional[Tuple[int, Dict[str, Any]]]:
        with self.sessions() as session:
            row = session.execute(
                select(IdempotentRequest).where(IdempotentRequest.scope == scope, IdempotentRequest.key == key)
            ).scalar_one_or_none()
            if row is None:
                return None
            if row.request_hash != digest:
                raise DeskError(409, "Idempotency-Key already used with a different body")
            return row.status_code, row.response

    def open_handoff(self, body: HandoffIn) -> Tuple[int, Dict[str, Any]]:
        """201 queued; 200 with the open handoff of the conversation; 200 closed/no_agents with callback slots."""
        existing = self._open_answer(body.conversation_id)
        if existing is not None:
            return 200, existing
        country, _ = self.calendar.country(body.country)
        now = self.clock()
        if not self.calendar.is_open(now, country):
            return 200, self._unavailable("closed", now, country)
        with self.sessions() as session:
            nobody = not self._online_ids(session)
        if nobody:
            return 200, self._unavailable("no_agents", now, country)
        created = utcnow()
        handoff = Handoff(
            conversation_id=body.conversation_id,
            open_conversation_id=body.conversation_id,
            channel=body.channel,
            country=country,
            reason=body.reason,
            priority=body.priority.value,
            priority_rank=body.priority.rank,
            customer=customer_json(body.customer),
            journey=body.journey,
            values=json.loads(json.dumps(body.values, default=str)),
            offers=json.loads(json.dumps(body.offers, default=str)),
            status=HandoffStatus.QUEUED.value,
            created_at=created,
        )
        handoff.messages = [
            Message(kind=turn.role, text=turn.text, attachments=[], at=turn.at) for turn in body.transcript
        ]
        try:
            with self.sessions() as session, session.begin():
                session.add(handoff)
        except IntegrityError:  # opened concurrently for the same conversation
            existing = self._open_answer(body.conversation_id)
            if existing is not None:
                return 200, existing
            raise
        self.broker.publish(DeskEvent("handoff_created", handoff.id))
        with self.sessions() as session:
            position = self._position(session, handoff)
        return 201, {"handoff_id": handoff.id, "status": HandoffStatus.QUEUED.value, "position": position}

    def _unavailable(self, status: str, now: datetime, country: str) -> Dict[str, Any]:
        next_open = self.calendar.next_open(now, country) if status == "closed" else None
        return {
            "handoff_id": None,
            "status": status,
            "next_open_at": next_open.isoformat() if next_open else None,
            "callback_slots": [slot.isoformat() for slot in self.calendar.callback_slots(now, country)],
        }

    def _open_answer(self, conversation_id: str) -> Optional[Dict[str, Any]]:
        with self.sessions() as session:
            handoff = self._open_handoff(session, conversation_id)
            if handoff is None:
                return None
            return {"handoff_id": handoff.id, "status": handoff.status, "position": self._position(session, handoff)}

    @staticmethod
    def _open_handoff(session: Session, conversation_id: str) -> Optional[Handoff]:
        return session.execute(
            select(Handoff).where(Handoff.open_conversation_id == conversation_id)
        ).scalar_one_or_none()

    @staticmethod
    def _latest_handoff(session: Session, conversation_id: str) -> Optional[Handoff]:
        return session.execute(
            select(Handoff).where(Handoff.conversation_id == conversation_id).order_by(Handoff.id.desc()).limit(1)
        ).scalar_one_or_none()

    @staticmethod
    def _position(session: Session, handoff: Handoff) -> Optional[int]:
        """1 for the next one an agent takes: higher priority first, then who has waited longest."""
        if handoff.status != HandoffStatus.QUEUED.value:
            return None
        ahead = session.execute(
            select(func.count()).where(
                Handoff.status == HandoffStatus.QUEUED.value,
                (Handoff.priority_rank < handoff.priority_rank)
                | ((Handoff.priority_rank == handoff.priority_rank) & (Handoff.created_at < handoff.created_at))
                | (
                    (Handoff.priority_rank == handoff.priority_rank)
                    & (Handoff.created_at == handoff.created_at)
                    & (Handoff.id < handoff.id)
                ),
            )
        ).scalar_one()
        return int(ahead) + 1

    def add_customer_message(self, conversation_id: str, body: CustomerMessageIn) -> str:
        """``accepted`` or ``duplicate`` (an ``event_id`` already received); 404 when not in handoff."""
        with self.sessions() as session:
            owner = session.execute(
                select(Handoff.conversation_id).join(Message).where(Message.event_id == body.event_id)
            ).scalar_one_or_none()
        if owner == conversation_id:
            return "duplicate"
        if owner is not None:
            raise DeskError(409, "event_id already used in another conversation")
        try:
            with self.sessions() as session, session.begin():
                handoff = self._open_handoff(session, conversation_id)
                if handoff is None:
                    raise DeskError(404, "the conversation is not in handoff")
                session.add(
                    Message(
                        handoff_id=handoff.id,
                        kind=MessageKind.CUSTOMER.value,
                        text=body.text,
                        attachments=json.loads(json.dumps(body.attachments, default=str)),
                        event_id=body.event_id,
                        at=body.at,
                    )
                )
                event = DeskEvent("customer_message", handoff.id, handoff.agent_id)
        except IntegrityError:  # the same event delivered twice at once
            return "duplicate"
        self.broker.publish(event)
        return "accepted"

    def handoff_status(self, conversation_id: str) -> Dict[str, Any]:
        with self.sessions() as session:
            handoff = self._latest_handoff(session, conversation_id)
            if handoff is None:
                raise DeskError(404, "no handoff for this conversation")
            return {
                "handoff_id": handoff.id,
                "conversation_id": handoff.conversation_id,
                "status": handoff.status,
                "position": self._position(session, handoff),
                "agent": handoff.agent.display_name if handoff.agent else None,
                "outcome": handoff.outcome,
                "created_at": handoff.created_at,
                "assigned_at": handoff.assigned_at,
                "resolved_at": handoff.resolved_at,
            }

    def record_survey(self, conversation_id: str, rating: int) -> Dict[str, Any]:
        with self.sessions() as session, session.begin():
            handoff = session.execute(
                select(Handoff)
                .where(Handoff.conversation_id == conversation_id, Handoff.status == HandoffStatus.RESOLVED.value)
                .order_by(Handoff.id.desc())
                .limit(1)
            ).scalar_one_or_none()
            if handoff is None:
                raise DeskError(404, "no resolved handoff for this conversation")
            handoff.survey_rating = rating
            handoff.survey_at = utcnow()
            answer = {"handoff_id": handoff.id, "rating": rating}
        self.broker.publish(DeskEvent("survey", handoff.id, handoff.agent_id))
        return answer

    def create_ticket(self, body: TicketIn, created_by: Optional[int] = None) -> Dict[str, Any]:
        if body.kind is TicketKind.CALLBACK:
            self._check_callback_time(body.callback_at)
        with self.sessions() as session, session.begin():
            ticket = self._new_ticket(
                session,
                kind=body.kind.value,
                conversation_id=body.conversation_id,
                callback_at=body.callback_at if body.kind is TicketKind.CALLBACK else None,
                contact=body.contact,
                summary=body.summary,
                customer=customer_json(body.customer),
                created_by=created_by,
            )
            answer = {"ticket_id": ticket.id, "code": ticket.code}
        self.broker.publish(DeskEvent("ticket"))
        return answer

    def _check_callback_time(self, callback_at: Optional[datetime], country: Optional[str] = None) -> None:
        if callback_at is None:
            raise DeskError(422, "callback_at is required for a callback")
        if callback_at <= self.clock():
            raise DeskError(422, "callback_at must be in the future")
        if not self.calendar.is_open(callback_at, country):
            raise DeskError(422, "callback_at is outside business hours; offer one of the callback_slots")

    @staticmethod
    def _new_ticket(session: Session, **fields: Any) -> Ticket:
        prefix = TICKET_PREFIX[fields["kind"]]
        while True:
            code = f"{prefix}-" + "".join(secrets.choice(CODE_ALPHABET) for _ in range(6))
            if session.execute(select(Ticket.id).where(Ticket.code == code)).first() is None:
                break
        created_by = fields.pop("created_by")
        ticket = Ticket(code=code, created_by_id=created_by, created_at=utcnow(), **fields)
        session.add(ticket)
        session.flush()
        return ticket

    # --- console: reading -----------------------------------------------------------------------------------

    def queue(self) -> List[Handoff]:
        with self.sessions() as session:
            return list(
                session.execute(
                    select(Handoff)
                    .where(Handoff.status == HandoffStatus.QUEUED.value)
                    .order_by(Handoff.priority_rank, Handoff.created_at, Handoff.id)
                ).scalars()
            )

    def active(self, viewer: Viewer) -> List[Handoff]:
        """Assigned conversations: the viewer's own, or all of them for a supervisor."""
        query = select(Handoff).where(Handoff.status == HandoffStatus.ASSIGNED.value)
        if not viewer.is_supervisor:
            query = query.where(Handoff.agent_id == viewer.agent_id)
        with self.sessions() as session:
            return list(session.execute(query.order_by(Handoff.assigned_at)).scalars())

    def recently_resolved(self, viewer: Viewer, limit: int = 20) -> List[Handoff]:
        query = select(Handoff).where(Handoff.status == HandoffStatus.RESOLVED.value)
        if not viewer.is_supervisor:
            query = query.where(Handoff.agent_id == viewer.agent_id)
        with self.sessions() as session:
            return list(session.execute(query.order_by(Handoff.resolved_at.desc()).limit(limit)).scalars())

    def conversation(self, viewer: Viewer, handoff_id: int) -> Handoff:
        with self.sessions() as session:
            handoff = session.get(Handoff, handoff_id)
            if handoff is None:
                raise DeskError(404, "No existe esa conversación.")
            if not can_view(viewer, handoff):
                raise DeskError(403, "Esta conversación está asignada a otra persona.")
            return handoff

    def tickets(self, limit: int = 200) -> List[Ticket]:
        with self.sessions() as session:
            return list(
                session.execute(
                    select(Ticket)
                    .order_by(Ticket.done_at.is_not(None), Ticket.callback_at.is_(None), Ticket.callback_at,
                              Ticket.created_at.desc())
                    .limit(limit)
                ).scalars()
            )

    # --- console: acting ------------------------------------------------------------------------------------

    def claim(self, viewer: Viewer, handoff_id: int) -> None:
        self._assign(viewer, handoff_id, viewer.agent_id, from_queue_only=True)

    def assign(self, viewer: Viewer, handoff_id: int, agent_id: int) -> None:
        if not viewer.is_supervisor:
            raise DeskError(403, "Solo un supervisor puede asignar conversaciones.")
        self._assign(viewer, handoff_id, agent_id, from_queue_only=False)

    def transfer(self, viewer: Viewer, handoff_id: int, agent_id: int) -> None:
        self._assign(viewer, handoff_id, agent_id, from_queue_only=False, transfer=True)

    def _assign(
        self, viewer: Viewer, handoff_id: int, agent_id: int, from_queue_only: bool, transfer: bool = False
    ) -> None:
        with self._assign_lock, self.sessions() as session, session.begin():
            handoff = session.execute(
                select(Handoff).where(Handoff.id == handoff_id).with_for_update(of=Handoff)
            ).scalar_one_or_none()
            if handoff is None:
                raise DeskError(404, "No existe esa conversación.")
            target = session.get(Agent, agent_id)
            if target is None or not target.active:
                raise DeskError(404, "No existe ese agente.")
            if handoff.status == HandoffStatus.RESOLVED.value:
                raise DeskError(409, "La conversación ya fue resuelta.")
            if from_queue_only and handoff.status != HandoffStatus.QUEUED.value:
                raise DeskError(409, "Otra persona ya tomó esta conversación.")
            if transfer and not can_act(viewer, handoff):
                raise DeskError(403, "Solo quien atiende la conversación o un supervisor puede transferirla.")
            if agent_id != viewer.agent_id and agent_id not in self._online_ids(session):
                raise DeskError(409, f"{target.display_name} no está conectado(a) ahora.")
            if handoff.agent_id == agent_id:
                raise DeskError(409, f"La conversación ya está asignada a {target.display_name}.")
            limit = self.policy.queue.max_open_per_agent
            if self._open_counts(session).get(agent_id, 0) >= limit:
                who = "Usted ya tiene" if agent_id == viewer.agent_id else f"{target.display_name} ya tiene"
                raise DeskError(409, f"{who} {limit} conversaciones abiertas, el máximo permitido.")
            previous = handoff.agent
            handoff.status = HandoffStatus.ASSIGNED.value
            handoff.agent_id = agent_id
            handoff.assigned_at = utcnow()
            if previous is not None:
                text = f"{viewer.display_name} transfirió la conversación de {previous.display_name} a " \
                       f"{target.display_name}."
            elif agent_id == viewer.agent_id:
                text = f"{target.display_name} tomó la conversación."
            else:
                text = f"{viewer.display_name} asignó la conversación a {target.display_name}."
            session.add(self._system(handoff.id, text, viewer.agent_id))
        self.broker.publish(DeskEvent("assigned", handoff_id, agent_id))

    @staticmethod
    def _system(handoff_id: int, text: str, author_id: Optional[int]) -> Message:
        return Message(
            handoff_id=handoff_id, kind=MessageKind.SYSTEM.value, text=text, attachments=[], author_id=author_id,
            at=utcnow(),
        )

    def _acting_on(self, session: Session, viewer: Viewer, handoff_id: int) -> Handoff:
        handoff = session.get(Handoff, handoff_id)
        if handoff is None:
            raise DeskError(404, "No existe esa conversación.")
        if handoff.status != HandoffStatus.ASSIGNED.value:
            raise DeskError(409, "Primero tome la conversación." if handoff.status == HandoffStatus.QUEUED.value
                            else "La conversación ya fue resuelta.")
        if not can_act(viewer, handoff):
            raise DeskError(403, "Esta conversación está asignada a otra persona.")
        return handoff

    def reply(self, viewer: Viewer, handoff_id: int, text: str) -> None:
        """The agent's words go to the customer on their channel, through Rasa, as a bot event."""
        text = _clean_text(text)
        with self.sessions() as session, session.begin():
            handoff = self._acting_on(session, viewer, handoff_id)
            message = Message(
                handoff_id=handoff.id, kind=MessageKind.AGENT.value, text=text, attachments=[],
                author_id=viewer.agent_id, at=utcnow(),
            )
            session.add(message)
            session.flush()
            event = {"event": "bot", "text": text, "metadata": {"from": "agent", "agent": viewer.display_name}}
            self._enqueue(session, handoff, "reply", events_path(handoff.conversation_id), [event], message.id)
            assignee = handoff.agent_id
        self.outbox.wake()
        self.broker.publish(DeskEvent("message", handoff_id, assignee))

    def note(self, viewer: Viewer, handoff_id: int, text: str) -> None:
        """An internal note: stored for the team, never sent anywhere."""
        text = _clean_text(text)
        with self.sessions() as session, session.begin():
            handoff = self._acting_on(session, viewer, handoff_id)
            session.add(
                Message(
                    handoff_id=handoff.id, kind=MessageKind.NOTE.value, text=text, attachments=[],
                    author_id=viewer.agent_id, at=utcnow(),
                )
            )
            assignee = handoff.agent_id
        self.broker.publish(DeskEvent("message", handoff_id, assignee))

    def resolve(
        self, viewer: Viewer, handoff_id: int, outcome: str, survey: bool, callback_at: Optional[datetime]
    ) -> Optional[str]:
        """Close the handoff and hand the conversation back: ``resume``, then ``EXTERNAL_handoff_resolved``.

        Returns the callback's ticket code when the outcome is a callback."""
        if outcome not in self.policy.outcomes:
            raise DeskError(422, "Elija un resultado de la lista.")
        code = None
        with self.sessions() as session, session.begin():
            handoff = self._acting_on(session, viewer, handoff_id)
            if outcome == CALLBACK_OUTCOME:
                try:
                    self._check_callback_time(callback_at, handoff.country)
                except DeskError:
                    raise DeskError(422, "Indique una fecha y hora futura, dentro del horario de atención, para "
                                    "la llamada.") from None
                code = self._new_ticket(
                    session, kind=TicketKind.CALLBACK.value, conversation_id=handoff.conversation_id,
                    callback_at=callback_at, contact=None,
                    summary=f"Llamada acordada por {viewer.display_name} al resolver la conversación.",
                    customer=handoff.customer, created_by=viewer.agent_id,
                ).code
            handoff.status = HandoffStatus.RESOLVED.value
            handoff.open_conversation_id = None
            handoff.outcome = outcome
            handoff.resolved_at = utcnow()
            handoff.survey_requested = survey
            label = self.policy.outcomes[outcome]
            session.add(self._system(handoff.id, f"{viewer.display_name} resolvió la conversación: {label}.",
                                     viewer.agent_id))
            cid = handoff.conversation_id
            self._enqueue(session, handoff, "resume", events_path(cid), [{"event": "resume"}])
            trigger = {"name": "EXTERNAL_handoff_resolved", "entities": {"survey": "yes" if survey else "no"}}
            self._enqueue(session, handoff, "handback", trigger_path(cid), trigger)
            assignee = handoff.agent_id
        self.outbox.wake()
        self.broker.publish(DeskEvent("resolved", handoff_id, assignee))
        if code:
            self.broker.publish(DeskEvent("ticket"))
        return code

    @staticmethod
    def _enqueue(
        session: Session, handoff: Handoff, kind: str, path: str, body: Any, message_id: Optional[int] = None
    ) -> None:
        now = utcnow()
        session.add(
            OutboxItem(
                handoff_id=handoff.id, conversation_id=handoff.conversation_id, message_id=message_id, kind=kind,
                path=path, body=body, status=DeliveryStatus.PENDING.value, attempts=0, next_attempt_at=now,
                created_at=now,
            )
        )

    def undelivered(self, handoff_id: int) -> List[OutboxItem]:
        with self.sessions() as session:
            return list(
                session.execute(
                    select(OutboxItem)
                    .where(OutboxItem.handoff_id == handoff_id, OutboxItem.status != DeliveryStatus.DELIVERED.value)
                    .order_by(OutboxItem.id)
                ).scalars()
            )

    def retry_delivery(self, viewer: Viewer, item_id: int) -> int:
        """Send a refused call again now (after, say, fixing Rasa's token); returns its handoff id."""
        with self.sessions() as session, session.begin():
            item = session.get(OutboxItem, item_id)
            if item is None:
                raise DeskError(404, "No existe ese envío.")
            handoff = session.get(Handoff, item.handoff_id)
            if not (viewer.is_supervisor or handoff.agent_id == viewer.agent_id):
                raise DeskError(403, "Esta conversación está asignada a otra persona.")
            if item.status != DeliveryStatus.DELIVERED.value:
                item.status = DeliveryStatus.PENDING.value
                item.next_attempt_at = utcnow()
            handoff_id = handoff.id
        self.outbox.wake()
        return handoff_id

    def ticket_done(self, viewer: Viewer, ticket_id: int) -> None:
        with self.sessions() as session, session.begin():
            ticket = session.get(Ticket, ticket_id)
            if ticket is None:
                raise DeskError(404, "No existe ese ticket.")
            if ticket.done_at is None:
                ticket.done_at = utcnow()
                ticket.done_by_id = viewer.agent_id
        self.broker.publish(DeskEvent("ticket"))

    def _delivery_changed(self, handoff_id: int, status: str) -> None:
        with self.sessions() as session:
            assignee = session.execute(select(Handoff.agent_id).where(Handoff.id == handoff_id)).scalar_one_or_none()
        self.broker.publish(DeskEvent("delivery", handoff_id, assignee, {"status": status}))

    def check_database(self) -> None:
        with self.sessions() as session:
            session.execute(select(func.count()).select_from(Agent)).scalar_one()


def _clean_text(text: str) -> str:
    text = (text or "").strip()
    if not text:
        raise DeskError(422, "Escriba un texto.")
    if len(text) > MAX_REPLY:
        raise DeskError(422, f"El texto no puede pasar de {MAX_REPLY} caracteres.")
    return text

