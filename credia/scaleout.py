"""The scaled-out configuration: shared stores on PostgreSQL, Redis and RabbitMQ, several Rasa and action servers.

Selected by the environment (``CREDIA_PROFILE=scaled``); the embedded default (SQLite files, one process of each
kind) needs none of these servers. In the scaled-out profile:

- every store is a PostgreSQL database named ``<CREDIA_DB_PREFIX>_<store>`` on ``POSTGRES_URL``: Rasa's tracker
  store, core banking, payments, the channels' state (WhatsApp/Twilio de-duplication, handoff outbox), the desk,
  the reminders and the metrics store; the launcher creates the databases that do not exist yet;
- Rasa's lock store is Redis (``REDIS_URL``), so two servers never process the same conversation at once;
- Rasa's event broker publishes every event to RabbitMQ (``RABBITMQ_URL``), which ``credia.analytics.consumer``
  stores for the metrics, besides forwarding customer messages of paused conversations to the desk;
- ``RASA_INSTANCES`` Rasa servers and ``ACTION_INSTANCES`` action servers (2 each by default) run behind
  ``credia.balancer`` on the usual Rasa and action ports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from credia import settings

PROFILES = ("embedded", "scaled")
STORES = ("tracker", "core_banking", "payments", "channels", "desk", "reminders", "analytics")
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/1"
DEFAULT_RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"


@dataclass(frozen=True)
class Topology:
    """Where the stores live and how many servers of each kind run."""

    postgres_url: str = ""  # empty: the embedded SQLite files
    redis_url: str = ""
    rabbitmq_url: str = ""
    prefix: str = "credia"  # database names, RabbitMQ queue and exchange, Redis lock keys
    rasa_instances: int = 1
    action_instances: int = 1

    @classmethod
    def from_env(cls) -> "Topology":
        profile = settings.env("CREDIA_PROFILE", "embedded")
        if profile not in PROFILES:
            raise ValueError(f"CREDIA_PROFILE must be one of {', '.join(PROFILES)}, not {profile!r}")
        if profile == "embedded":
            return cls()
        topology = cls(
            postgres_url=settings.env("POSTGRES_URL", DEFAULT_POSTGRES_URL).rstrip("/"),
            redis_url=settings.env("REDIS_URL", DEFAULT_REDIS_URL),
            rabbitmq_url=settings.env("RABBITMQ_URL", DEFAULT_RABBITMQ_URL),
            prefix=settings.env("CREDIA_DB_PREFIX", "credia"),
            rasa_instances=settings.env_int("RASA_INSTANCES", 2),
            action_instances=settings.env_int("ACTION_INSTANCES", 2),
        )
        if topology.rasa_instances < 1 or topology.action_instances < 1:
            raise ValueError("RASA_INSTANCES and ACTION_INSTANCES must be at least 1")
        if not topology.prefix.replace("_", "").isalnum():
            raise ValueError("CREDIA_DB_PREFIX may hold only letters, digits and underscores")
        return topology

    @property
    def scaled(self) -> bool:
        return bool(self.postgres_url)

    def database_url(self, store: str) -> str:
        return f"{self.postgres_url}/{self.prefix}_{store}"

    @property
    def events_queue(self) -> str:
        return f"{self.prefix}_events"

    @property
    def events_exchange(self) -> str:
        return f"{self.prefix}_exchange"

    def service_env(self) -> dict[str, str]:
        """The variables that point every process at the shared stores (nothing in the embedded profile)."""
        if not self.scaled:
            return {}
        return {
            "CORE_BANKING_DATABASE_URL": self.database_url("core_banking"),
            "PAYMENTS_DATABASE_URL": self.database_url("payments"),
            "CHANNELS_DATABASE_URL": self.database_url("channels"),
            "REMINDERS_DATABASE_URL": self.database_url("reminders"),
            "REMINDERS_TRACKER_DB": self.database_url("tracker"),
            "ANALYTICS_DATABASE_URL": self.database_url("analytics"),
            "REDIS_URL": self.redis_url,
            "RABBITMQ_URL": self.rabbitmq_url,
            "RABBITMQ_EVENTS_QUEUE": self.events_queue,
            "RABBITMQ_EXCHANGE": self.events_exchange,
        }

    def endpoints(self, config: dict[str, Any]) -> dict[str, Any]:
        """Rasa's endpoints for the shared stores, from the project's endpoints.yml (its own broker kept)."""
        if not self.scaled:
            return config
        redis = urlsplit(self.redis_url)
        rabbitmq = urlsplit(self.rabbitmq_url)
        return {
            **config,
            "tracker_store": {"type": "credia.tracker_store.SQLTrackerStore", "dialect": "postgresql",
                              "url": self.database_url("tracker")},
            "lock_store": {
                "type": "redis",
                "url": redis.hostname or "127.0.0.1",
                "port": redis.port or 6379,
                "db": int(redis.path.strip("/") or 0),
                "key_prefix": self.prefix.replace("_", ""),  # Rasa accepts only letters and digits
            },
            "event_broker": {
                "type": "credia.brokers.FanOutBroker",
                "brokers": [
                    {"type": "pika", "url": rabbitmq.hostname or "127.0.0.1", "port": rabbitmq.port or 5672,
                     "username": rabbitmq.username or "guest", "password": rabbitmq.password or "guest",
                     "queues": [self.events_queue], "exchange_name": self.events_exchange},
                    config["event_broker"],
                ],
            },
        }

    def create_databases(self) -> None:
        """Create the stores' databases that do not exist yet (each service creates its own tables)."""
        with self._server() as connection:
            existing = {row[0] for row in connection.execute(text("SELECT datname FROM pg_database"))}
            for store in STORES:
                name = f"{self.prefix}_{store}"
                if name not in existing:
                    connection.execute(text(f'CREATE DATABASE "{name}"'))

    def drop_databases(self) -> None:
        """Drop this prefix's databases (the tests' clean-up; never called by the launcher)."""
        with self._server() as connection:
            for store in STORES:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{self.prefix}_{store}" WITH (FORCE)'))

    def _server(self):  # type: ignore[no-untyped-def]
        url = make_url(f"{self.postgres_url}/postgres")
        return create_engine(url, isolation_level="AUTOCOMMIT", future=True).connect()
