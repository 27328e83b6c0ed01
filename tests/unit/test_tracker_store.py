"""The project's SQL tracker store: stores and publishes each event once, without reading the conversation back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rasa.core.brokers.broker import EventBroker
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, BotUttered, SessionStarted, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker
from sqlalchemy import text

from credia.analytics.sessions import EVENT_ID
from credia.tracker_store import SQLTrackerStore


class RecordingBroker(EventBroker):
    def __init__(self) -> None:
        self.published: list[dict[str, Any]] = []

    def publish(self, event: dict[str, Any]) -> None:
        self.published.append(event)


def store_at(path: Path, broker: EventBroker) -> SQLTrackerStore:
    return SQLTrackerStore(domain=Domain.empty(), dialect="sqlite", db=str(path), event_broker=broker)


async def test_each_new_event_is_stored_and_published_once_without_a_read_back(tmp_path: Path, monkeypatch) -> None:
    broker = RecordingBroker()
    store = store_at(tmp_path / "tracker.db", broker)
    tracker = DialogueStateTracker.from_events("cliente-1", [
        ActionExecuted("action_session_start"), SessionStarted(), ActionExecuted("action_listen"),
        UserUttered("hola", {"name": "greet", "confidence": 0.98}),
    ])
    reads: list[str] = []
    retrieve = store.retrieve

    async def counted_retrieve(sender_id: str) -> DialogueStateTracker | None:
        reads.append(sender_id)
        return await retrieve(sender_id)

    monkeypatch.setattr(store, "retrieve", counted_retrieve)
    await store.save(tracker)
    tracker = await store.retrieve("cliente-1")  # as Rasa does for the next message
    tracker.update(BotUttered("¡Hola!"))
    tracker.update(ActionExecuted("action_listen"))
    await store.save(tracker)
    await store.save(tracker)  # nothing new: nothing stored, nothing published

    assert reads == ["cliente-1"]  # only the read above: saving reads nothing back
    assert [event["event"] for event in broker.published] == [
        "action", "session_started", "action", "user", "bot", "action"
    ]
    assert all(event["sender_id"] == "cliente-1" for event in broker.published)
    stored = await store.retrieve_full_tracker("cliente-1")
    assert [event.as_dict() for event in stored.events] == [
        {key: value for key, value in event.items() if key not in ("sender_id", EVENT_ID)}
        for event in broker.published
    ]
    with store.engine.connect() as connection:
        intents = connection.execute(text("SELECT intent_name FROM events WHERE type_name = 'user'")).scalars().all()
        assert intents == ["greet"]
        ids = connection.execute(text("SELECT id FROM events ORDER BY id")).scalars().all()
    assert [event[EVENT_ID] for event in broker.published] == ids  # each event carries its row id


def test_sqlite_commits_do_not_wait_for_a_disk_flush(tmp_path: Path) -> None:
    store = store_at(tmp_path / "tracker.db", RecordingBroker())
    with store.engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL


async def test_a_retrieved_tracker_is_saved_without_counting_the_stored_events(tmp_path: Path, monkeypatch) -> None:
    broker = RecordingBroker()
    store = store_at(tmp_path / "tracker.db", broker)
    await store.save(DialogueStateTracker.from_events("cliente-2", [
        ActionExecuted("action_session_start"), SessionStarted(), ActionExecuted("action_listen"),
    ]))
    tracker = await store.retrieve("cliente-2")

    def no_count(*_args: Any) -> None:
        raise AssertionError("the stored events were counted again")

    monkeypatch.setattr(store, "_additional_events", no_count)
    tracker.update(UserUttered("cuánto debo", {"name": "ask_debt", "confidence": 0.9}))
    await store.save(tracker)
    tracker.update(BotUttered("Para eso necesito verificar su identidad."))
    await store.save(tracker)
    monkeypatch.undo()

    stored = await store.retrieve_full_tracker("cliente-2")
    assert [event.type_name for event in stored.events] == ["action", "session_started", "action", "user", "bot"]
    assert [event["event"] for event in broker.published] == ["action", "session_started", "action", "user", "bot"]


async def test_reads_return_what_rasas_own_store_returns(tmp_path: Path) -> None:
    """The statements built once select what Rasa's ORM queries select: the latest session, or every session."""
    from rasa.core.tracker_store import SQLTrackerStore as RasaSQLTrackerStore

    store = store_at(tmp_path / "tracker.db", RecordingBroker())
    first = [ActionExecuted("action_session_start", timestamp=1.0), SessionStarted(timestamp=1.0),
             ActionExecuted("action_listen", timestamp=1.0), UserUttered("hola", timestamp=2.0)]
    second = [ActionExecuted("action_session_start", timestamp=9.0), SessionStarted(timestamp=9.0),
              ActionExecuted("action_listen", timestamp=9.0), UserUttered("cuánto debo", timestamp=10.0),
              BotUttered("Necesito verificar su identidad.", timestamp=11.0)]
    await store.save(DialogueStateTracker.from_events("cliente-3", first + second))
    await store.save(DialogueStateTracker.from_events("otro", first))
    rasa = RasaSQLTrackerStore(domain=Domain.empty(), dialect="sqlite", db=str(tmp_path / "tracker.db"))

    ours, theirs = await store.retrieve("cliente-3"), await rasa.retrieve("cliente-3")
    assert [event.as_dict() for event in ours.events] == [event.as_dict() for event in theirs.events]
    assert [event.timestamp for event in ours.events] == [9.0, 9.0, 9.0, 10.0, 11.0]
    ours, theirs = await store.retrieve_full_tracker("cliente-3"), await rasa.retrieve_full_tracker("cliente-3")
    assert [event.as_dict() for event in ours.events] == [event.as_dict() for event in theirs.events]
    assert len(ours.events) == len(first + second)
    assert await store.retrieve("nadie") is None
