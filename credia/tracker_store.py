"""Rasa's SQL tracker store with two changes that matter when many customers talk at once.

Rasa runs the tracker store synchronously inside its event loop, so every millisecond spent there delays every
other customer:

- ``save`` publishes to the event broker exactly the events it stores. Rasa's own ``save`` first reads the whole
  conversation back from the database to work out which events are new (``stream_events``), one extra read and
  deserialisation per message whenever an event broker is configured (ours always is: the handoff forwarder).
  Events are published after they are committed, so a consumer never sees an event the store lost.
- On SQLite (the embedded default) the engine is ``credia.db``'s: pooled connections, WAL and
  ``synchronous=NORMAL`` (a commit does not wait ~20 ms for the disk; a crash of any process loses nothing, only
  a power cut at that instant could lose the last commits). PostgreSQL is left as Rasa configures it.

In endpoints.yml: ``tracker_store: {type: credia.tracker_store.SQLTrackerStore, dialect: ..., db: ...}``.
"""

from __future__ import annotations

import json
from typing import Any

from rasa.core.tracker_store import SQLTrackerStore as RasaSQLTrackerStore
from rasa.shared.core.trackers import DialogueStateTracker
from sqlalchemy.orm import sessionmaker

from credia.db import make_engine
from credia.rasa_patches import install as install_rasa_patches

# Rasa imports this module when it reads endpoints.yml, so the patches are in place in every Rasa server.
install_rasa_patches()


class SQLTrackerStore(RasaSQLTrackerStore):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.engine.dialect.name == "sqlite":
            url = self.engine.url.render_as_string(hide_password=False)
            self.engine.dispose()
            self.engine = make_engine(url, future=False)
            self.sessionmaker = sessionmaker(bind=self.engine)

    async def save(self, tracker: DialogueStateTracker) -> None:
        """Store the events not stored yet, then publish them (Rasa's ``save`` without the read-back)."""
        with self.session_scope() as session:
            events = list(self._additional_events(session, tracker))
            for stored in events:
                data = stored.as_dict()
                session.add(
                    self.SQLEvent(
                        sender_id=tracker.sender_id,
                        type_name=stored.type_name,
                        timestamp=data.get("timestamp"),
                        intent_name=data.get("parse_data", {}).get("intent", {}).get("name"),
                        action_name=data.get("name"),
                        data=json.dumps(data),
                    )
                )
            session.commit()
        if self.event_broker is not None:
            for stored in events:
                self.event_broker.publish({"sender_id": tracker.sender_id, **stored.as_dict()})
