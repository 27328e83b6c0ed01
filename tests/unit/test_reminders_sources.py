"""What the scheduler reads and calls: where a customer last answered (Rasa's tracker store), whether the desk
has the conversation, and how Rasa's answers to ``trigger_intent`` are read (sent, certainly not, or unknown)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest
import sqlalchemy as sa

from credia.analytics.sessions import EVENTS
from credia.processes import free_port
from credia.reminders.sources import (
    ConversationIndex,
    Desk,
    Rasa,
    Unconfirmed,
    Undelivered,
    addresses_of,
    default_route,
)
from credia.reminders.store import Route

PHONE = "+51911111111"


def tracker_store(path: Path, events: List[Tuple[str, str, Dict[str, Any]]]) -> str:
    url = f"sqlite:///{path}"
    engine = sa.create_engine(url)
    EVENTS.metadata.create_all(engine)
    with engine.begin() as connection:
        for sender_id, type_name, data in events:
            connection.execute(EVENTS.insert().values(
                sender_id=sender_id, type_name=type_name, timestamp=data.get("timestamp", 0),
                intent_name=((data.get("parse_data") or {}).get("intent") or {}).get("name"),
                data=json.dumps({"event": type_name, **data}),
            ))
    engine.dispose()
    return url


def said(text: str, at: float, channel: str, intent: str = "greet") -> Tuple[str, Dict[str, Any]]:
    return "user", {"text": text, "timestamp": at, "input_channel": channel,
                    "parse_data": {"intent": {"name": intent}, "entities": []}}


def verified(customer_id: int, at: float) -> Tuple[str, Dict[str, Any]]:
    return "slot", {"name": "verified_customer_id", "value": str(customer_id), "timestamp": at}


def session(at: float) -> Tuple[str, Dict[str, Any]]:
    return "session_started", {"timestamp": at}


def test_the_last_channel_is_the_latest_message_in_a_conversation_of_the_customer(tmp_path: Path) -> None:
    rows = [
        ("51911111111", *said("hola", 100, "whatsapp")),
        ("+51911111111", *said("hola", 150, "twilio_messaging")),
        ("51911111111", *said("EXTERNAL: EXTERNAL_payment_reminder", 500, "whatsapp", "EXTERNAL_payment_reminder")),
        ("web-abc", *session(180)),
        ("web-abc", *said("quiero pagar", 190, "socketio")),  # before proving who they are, same session
        ("web-abc", *verified(7, 195)),
        ("web-abc", *session(300)),
        ("web-abc", *said("hola otra vez", 400, "socketio")),  # a later session nobody verified
        ("web-xyz", *session(10)),
        ("web-xyz", *verified(8, 20)),
        ("web-xyz", *said("soy otra persona", 900, "socketio")),
    ]
    index = ConversationIndex(tracker_store(tmp_path / "tracker.db", rows))
    try:
        index.refresh()
        assert index.last_answered(7, PHONE) == Route("web", "socketio", "web-abc")
        assert index.last_answered(8, "+51922222222") == Route("web", "socketio", "web-xyz")
        assert index.last_answered(9, "+51933333333") is None
    finally:
        index.close()
    sms_later = rows[:2] + [("+51911111111", *said("y ahora?", 600, "twilio_messaging"))]
    index = ConversationIndex(tracker_store(tmp_path / "tracker2.db", sms_later))
    try:
        index.refresh()
        assert index.last_answered(7, PHONE) == Route("sms", "twilio_messaging", PHONE)
    finally:
        index.close()


def test_no_tracker_store_yet_means_no_preference(tmp_path: Path) -> None:
    index = ConversationIndex(f"sqlite:///{tmp_path / 'absent.db'}")
    index.refresh()
    assert index.last_answered(7, PHONE) is None
    assert not (tmp_path / "absent.db").exists()


def test_conversation_ids_of_each_channel() -> None:
    assert addresses_of(PHONE) == ("51911111111", PHONE, "whatsapp:" + PHONE)
    assert default_route("whatsapp", PHONE, "whatsapp") == Route("whatsapp", "whatsapp", "51911111111")
    assert default_route("whatsapp", PHONE, "twilio") == Route("whatsapp", "twilio_messaging", "whatsapp:" + PHONE)
    assert default_route("sms", PHONE, "whatsapp") == Route("sms", "twilio_messaging", PHONE)


class Scripted:
    """An HTTP server answering by path: {path: (status, json body)}; records what it received."""

    def __init__(self, answers: Dict[str, Tuple[int, Any]], delay: float = 0.0) -> None:
        self.port = free_port()
        self.received: List[Tuple[str, str, Dict[str, str], bytes]] = []
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            def reply(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                scripted.received.append((self.command, self.path, dict(self.headers), body))
                if delay:
                    threading.Event().wait(delay)
                status, payload = answers.get(self.path.split("?")[0], (404, {"detail": "not found"}))
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up waiting (the timeout tests)

            do_GET = do_POST = reply  # noqa: N815

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def desk_server() -> Iterator[Scripted]:
    server = Scripted({
        "/api/handoffs/51911111111": (200, {"status": "assigned"}),
        "/api/handoffs/whatsapp%3A%2B51922222222": (200, {"status": "queued"}),
        "/api/handoffs/51933333333": (200, {"status": "resolved"}),
        "/api/handoffs/51944444444": (503, {"detail": "down"}),
    })
    try:
        yield server
    finally:
        server.stop()


def test_the_desk_says_whether_a_person_has_the_conversation(desk_server: Scripted) -> None:
    desk = Desk(desk_server.url, "desk-token")
    assert desk.in_handoff("51911111111") is True
    assert desk.in_handoff("whatsapp:+51922222222") is True
    assert desk.in_handoff("51933333333") is False  # resolved: handed back
    assert desk.in_handoff("51955555555") is False  # 404: never handed off
    assert desk.in_handoff("51944444444") is None  # the desk cannot tell now
    assert Desk(f"http://127.0.0.1:{free_port()}", "t").in_handoff("51911111111") is None  # desk down
    assert Desk("", "t").in_handoff("51911111111") is False  # no desk configured
    assert {headers["Authorization"] for _m, _p, headers, _b in desk_server.received} == {"Bearer desk-token"}


def test_rasa_answers_are_read_as_sent_not_sent_or_unknown() -> None:
    route = Route("whatsapp", "whatsapp", "51911111111")
    entities = {"reminder_id": "rem_1", "reminder_kind": "overdue", "due_amount": "10.00", "due_date": "2026-12-01",
                "loan_id": "3"}
    server = Scripted({
        "/conversations/51911111111/trigger_intent": (200, {"tracker": {}}),
        "/conversations/51922222222/trigger_intent": (404, {"message": "intent not in domain"}),
        "/conversations/51933333333/trigger_intent": (500, {"message": "ConversationError"}),
        "/conversations/51911111111/tracker": (200, {"events": [
            {"event": "user", "parse_data": {"intent": {"name": "EXTERNAL_payment_reminder"},
                                             "entities": [{"entity": "reminder_id", "value": "rem_1"}]}},
        ]}),
    })
    try:
        rasa = Rasa(server.url, "rasa-token", timeout=5)
        rasa.trigger(route, entities)
        method, path, _headers, body = server.received[-1]
        assert (method, path.split("?")[0]) == ("POST", "/conversations/51911111111/trigger_intent")
        assert "output_channel=whatsapp" in path and "token=rasa-token" in path
        assert json.loads(body) == {"name": "EXTERNAL_payment_reminder", "entities": entities}
        with pytest.raises(Undelivered):
            rasa.trigger(Route("whatsapp", "whatsapp", "51922222222"), entities)
        with pytest.raises(Unconfirmed):
            rasa.trigger(Route("whatsapp", "whatsapp", "51933333333"), entities)
        assert rasa.delivered("51911111111", "rem_1") is True
        assert rasa.delivered("51911111111", "rem_2") is False
    finally:
        server.stop()
    with pytest.raises(Undelivered):  # nothing listens: certainly not sent
        Rasa(f"http://127.0.0.1:{free_port()}", "t").trigger(route, entities)
    slow = Scripted({"/conversations/51911111111/trigger_intent": (200, {})}, delay=2)
    try:
        with pytest.raises(Unconfirmed):  # it may have been taken: the conversation will tell
            Rasa(slow.url, "t", timeout=0.5).trigger(route, entities)
        assert Rasa(slow.url, "t", timeout=0.5).delivered("51911111111", "rem_1") is None
    finally:
        slow.stop()
