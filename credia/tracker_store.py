"""Rasa's SQL tracker store with two changes that matter when many customers talk at once.

Rasa runs the tracker store synchronously inside its event loop, so every millisecond spent there delays every
other customer:

- ``save`` publishes to the event broker exactly the events it stores. Rasa's own ``save`` first reads the whole
  conversation back from the database to work out which events are new (``stream_events``), one extra read and
  deserialisation per message whenever an event broker is configured (ours always is: the handoff forwarder).
  Events are published after they are committed, so a consumer never sees an event the store lost.
- ``save`` knows which events are new from the tracker it handed out (it notes how many events were stored),
  where Rasa counts the stored events with a query per save (an eighth of the server's time under load).
- Reads and writes go through SQL statements built once (SQLAlchemy Core, not ORM queries rebuilt per call):
  SQLAlchemy computes a statement's cache key on every execution of a new query object, and loads ORM rows
  where only the ``data`` column is needed; together about a tenth of the server's time under load.
- On SQLite (the embedded default) the engine is ``credia.db``'s: pooled connections, WAL and
  ``synchronous=NORMAL`` (a commit does not wait ~20 ms for the disk; a crash of any process loses nothing, only
  a power cut at that instant could lose the last commits). PostgreSQL is left as Rasa configures it.

In endpoints.yml: ``tracker_store: {type: credia.tracker_store.SQLTrackerStore, dialect: ..., db: ...}``.
"""

from __future__ import annotations

import itertools
import json
from typing import Any, Optional

import sqlalchemy as sa
from rasa.core.tracker_store import SQLTrackerStore as RasaSQLTrackerStore
from rasa.shared.core.events import Event, SessionStarted
from rasa.shared.core.trackers import DialogueStateTracker
from sqlalchemy.orm import sessionmaker

from credia.analytics.sessions import EVENT_ID
from credia.db import make_engine
from credia.rasa_patches import install as install_rasa_patches

# Rasa imports this module when it reads endpoints.yml, so the patches are in place in every Rasa server.
install_rasa_patches()


# Attribute set on the trackers this store hands out: how many of their events are already stored.
STORED_EVENTS = "_credia_stored_events"


class SQLTrackerStore(RasaSQLTrackerStore):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.engine.dialect.name == "sqlite":
            url = self.engine.url.render_as_string(hide_password=False)
            self.engine.dispose()
            self.engine = make_engine(url, future=False)
            self.sessionmaker = sessionmaker(bind=self.engine)
        events = self.SQLEvent.__table__
        sender = sa.bindparam("sender_id")
        latest_session_start = (
            sa.select(sa.func.max(events.c.timestamp))
            .where(events.c.sender_id == sender, events.c.type_name == SessionStarted.type_name)
            .scalar_subquery()
        )
        all_sessions = sa.select(events.c.data).where(events.c.sender_id == sender).order_by(events.c.id)
        # Rasa's ``_event_query``: the events since the latest session start, or all when none started.
        self._select_events = {
            True: all_sessions,
            False: all_sessions.where(
                sa.or_(events.c.timestamp >= latest_session_start, latest_session_start.is_(None))
            ),
        }
        self._insert_event = events.insert()

    async def _retrieve(
        self, sender_id: str, fetch_events_from_all_sessions: bool
    ) -> Optional[DialogueStateTracker]:
        """Rasa's ``_retrieve`` through a statement built once."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                self._select_events[fetch_events_from_all_sessions], {"sender_id": sender_id}
            ).scalars().all()
        if not self.domain or not rows:
            return None
        return DialogueStateTracker.from_dict(sender_id, [json.loads(data) for data in rows], self.domain.slots)

    async def retrieve(self, sender_id: str) -> Optional[DialogueStateTracker]:
        """Rasa's ``retrieve``, noting on the tracker how many of its events are stored already."""
        tracker = await super().retrieve(sender_id)
        if tracker is not None:
            setattr(tracker, STORED_EVENTS, len(tracker.events))
        return tracker

    async def save(self, tracker: DialogueStateTracker) -> None:
        """Store the events not stored yet, then publish them (Rasa's ``save`` without the read-back), each with
        its row id in the store under ``EVENT_ID``: consumers that receive events out of order (several Rasa
        servers publish through RabbitMQ) can put them back in the store's order."""
        published = []
        new_events = self._new_events(tracker)
        with self.engine.begin() as connection:
            for new in new_events:
                data = new.as_dict()
                inserted = connection.execute(self._insert_event, {
                    "sender_id": tracker.sender_id,
                    "type_name": new.type_name,
                    "timestamp": data.get("timestamp"),
                    "intent_name": data.get("parse_data", {}).get("intent", {}).get("name"),
                    "action_name": data.get("name"),
                    "data": json.dumps(data),
                })
                published.append((inserted.inserted_primary_key[0], data))
        setattr(tracker, STORED_EVENTS, len(tracker.events))
        if self.event_broker is not None:
            for event_id, data in published:
                self.event_broker.publish({"sender_id": tracker.sender_id, **data, EVENT_ID: event_id})

    def _new_events(self, tracker: DialogueStateTracker) -> list[Event]:
        """The events after those the tracker was retrieved or last saved with; for a tracker this store did not
        hand out, Rasa's count of the stored events (a query per save). The conversation's lock guarantees nobody
        else stored events in between."""
        stored = getattr(tracker, STORED_EVENTS, None)
        if stored is None or stored > len(tracker.events):
            with self.session_scope() as session:
                return list(self._additional_events(session, tracker))
        return list(itertools.islice(tracker.events, stored, None))
