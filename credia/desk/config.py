"""The desk's settings, read once from the environment (see ``credia.settings`` for the shared names)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Optional, Tuple

from credia import settings
from credia.analytics.sessions import tracker_store_url
from credia.desk.auth import MIN_PASSWORD_LENGTH
from credia.desk.hours import Clock, running_clock, system_clock
from credia.desk.models import Role
from credia.desk.outbox import RasaTarget
from credia.desk.policy import DeskPolicy, load_policy


@dataclass(frozen=True)
class DemoUser:
    username: str
    display_name: str
    role: Role
    password_variable: str


DEMO_USERS: Tuple[DemoUser, ...] = (
    DemoUser("supervisor", "Patricia Salazar", Role.SUPERVISOR, "DESK_SUPERVISOR_PASSWORD"),
    DemoUser("agente1", "Andrea Rojas", Role.AGENT, "DESK_AGENT_PASSWORD"),
    DemoUser("agente2", "Miguel Torres", Role.AGENT, "DESK_AGENT_PASSWORD"),
)


@dataclass(frozen=True)
class DeskConfig:
    database_url: str
    api_token: str
    rasa: RasaTarget
    policy: DeskPolicy
    clock: Clock
    passwords: Tuple[Tuple[DemoUser, str], ...]
    cookie_secure: bool = False
    # The dashboard's sources: Rasa's tracker store (DESK_TRACKER_DB, a URL or a SQLite file; default the run's
    # $CREDIA_VAR_DIR/rasa_tracker.db) and core banking for the promise-kept rate (none: shown as unavailable).
    tracker_store_url: str = field(default_factory=tracker_store_url)
    core_banking_url: Optional[str] = None

    @classmethod
    def from_env(cls) -> "DeskConfig":
        """Raise ``RuntimeError`` (or ``PolicyError``) saying what is missing or wrong."""
        passwords = []
        for user in DEMO_USERS:
            password = settings.env(user.password_variable, "")
            if len(password) < MIN_PASSWORD_LENGTH:
                raise RuntimeError(
                    f"{user.password_variable} must be set to at least {MIN_PASSWORD_LENGTH} characters; the "
                    "launcher sets a random one, or export your own."
                )
            passwords.append((user, password))
        start = settings.env("DESK_CLOCK_START", "")
        if start:
            moment = datetime.fromisoformat(start)
            if moment.tzinfo is None:
                raise RuntimeError("DESK_CLOCK_START needs an offset, e.g. 2025-07-30T10:00:00-05:00")
        return cls(
            database_url=settings.desk_database_url(),
            api_token=settings.desk_api_token(),
            rasa=RasaTarget(
                url=settings.desk_rasa_url(),
                token=settings.desk_rasa_token(),
                timeout_seconds=settings.env_float("DESK_RASA_TIMEOUT_SECONDS", 10.0),
                retry_base_seconds=settings.env_float("DESK_RETRY_BASE_SECONDS", 2.0),
                max_retry_seconds=settings.env_float("DESK_RETRY_MAX_SECONDS", 60.0),
                poll_seconds=settings.env_float("DESK_OUTBOX_POLL_SECONDS", 1.0),
            ),
            policy=load_policy(),
            clock=running_clock(moment) if start else system_clock,
            passwords=tuple(passwords),
            cookie_secure=settings.env("DESK_COOKIE_SECURE", "") in ("1", "true", "yes"),
            tracker_store_url=tracker_store_url(settings.env("DESK_TRACKER_DB", "")),
            core_banking_url=settings.core_banking_url(),
        )
