"""The metrics store fed by RabbitMQ keeps the tracker store's order and stores a redelivered event once."""

from __future__ import annotations

from pathlib import Path

from credia.analytics.consumer import EventStore, row_of
from credia.analytics.sessions import EVENT_ID, read_sessions
from credia.db import make_engine


def event(kind: str, timestamp: float, event_id: int, **fields: object) -> dict:
    return {"sender_id": "cliente-9", "event": kind, "timestamp": timestamp, EVENT_ID: event_id, **fields}


def test_events_delivered_out_of_order_read_back_in_the_tracker_stores_order(tmp_path: Path) -> None:
    first_turn = [
        event("action", 1.0, 11, name="action_session_start"), event("session_started", 1.1, 12),
        event("action", 1.2, 13, name="action_listen"),
        event("user", 1.3, 14, text="hola", parse_data={"intent": {"name": "greet", "confidence": 0.9}}),
        event("bot", 1.4, 15, text="¡Hola!"), event("action", 1.5, 16, name="action_listen"),
    ]
    second_turn = [
        event("user", 2.0, 31, text="gracias", parse_data={"intent": {"name": "thank", "confidence": 0.9}}),
        event("bot", 2.1, 32, text="¡Con gusto!"), event("action", 2.2, 33, name="action_listen"),
    ]
    store = EventStore(make_engine(f"sqlite:///{tmp_path / 'analytics.db'}"))
    # The second server's turn arrives first, and RabbitMQ redelivers one event after a crash.
    for published in second_turn + first_turn + [first_turn[3]]:
        store.add([row_of(published)])

    [session] = list(read_sessions(f"sqlite:///{tmp_path / 'analytics.db'}"))
    assert [message.text for message in session.messages] == ["hola", "gracias"]
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM events").scalar() == 9


def test_an_event_that_is_not_a_rasa_event_is_refused() -> None:
    assert row_of({"event": "user"}) is None
    assert row_of({"sender_id": "x"}) is None
