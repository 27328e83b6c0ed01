"""The WhatsApp connector over real HTTP: Meta's webhooks in, the fake Graph API (a real process) out.

The inbound side runs the channel in a Sanic app wired like ``rasa run`` wires it (``register`` under
``/webhooks/``), whose agent records each ``UserMessage`` and answers through the channel's real output. The
outbound side sends straight through ``WhatsAppOutput`` to the fake Graph API, which refuses what Meta refuses.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, AsyncIterator, Dict, Iterator, List, Optional

import pytest
import requests
from rasa.core.channels.channel import UserMessage, register
from sanic import Sanic

from credia.channels.whatsapp import (
    FAILURE_REPLY,
    UNSUPPORTED_REPLY,
    ChannelStore,
    GraphClient,
    InboundMessage,
    WhatsAppConfig,
    WhatsAppInput,
    WhatsAppOutput,
    signature_of,
)
from credia.processes import free_port
from tests.unit.test_fake_graph import ACCESS_TOKEN, PHONE_NUMBER_ID, FakeGraph, start_fake_graph
from tests.waiting import wait_until

APP_SECRET = "test-app-secret"
VERIFY_TOKEN = "test-verify-token"
MENU = [
    {"title": "Ver créditos", "payload": "/ask_products"},
    {"title": "Mi deuda", "payload": "/check_debt"},
    {"title": "Hablar con una persona", "payload": "/ask_human"},
]


# ------------------------------------------------------------------------------------------------ harness


@dataclass
class Received:
    text: str
    sender_id: str
    message_id: str
    input_channel: str
    metadata: Dict[str, Any]
    started: float
    finished: float = 0.0


class RecordingAgent:
    """Stands in for Rasa's agent: records each message and answers through the message's output channel.

    "lento <s>" takes that many seconds, "falla" raises, "menu" answers with buttons, "opciones" with 12 choices.
    """

    def __init__(self) -> None:
        self.received: List[Received] = []
        self.lock = threading.Lock()

    async def handle_message(self, message: UserMessage) -> None:
        record = Received(message.text or "", message.sender_id, message.message_id, message.input_channel or "",
                          message.metadata or {}, time.monotonic())
        with self.lock:
            self.received.append(record)
        words = record.text.split()
        if words and words[0] == "lento":
            await asyncio.sleep(float(words[1]))
        if record.text == "falla":
            raise RuntimeError("the NLU exploded")
        output = message.output_channel
        if record.text == "menu":
            await output.send_text_with_buttons(message.sender_id, "¿Qué desea hacer?", [dict(b) for b in MENU])
        elif record.text == "opciones":
            choices = [{"title": f"Opción {n}", "payload": f"/opcion{{\"n\": {n}}}"} for n in range(1, 13)]
            await output.send_text_with_buttons(message.sender_id, "Elija una opción", choices)
        else:
            await output.send_text_message(message.sender_id, f"Recibido: {record.text}")
        record.finished = time.monotonic()

    def messages(self) -> List[Received]:
        with self.lock:
            return list(self.received)


class RasaLikeServer:
    """A real Sanic server in a thread with only the WhatsApp channel, registered as ``rasa run`` does."""

    def __init__(self, config: WhatsAppConfig, agent: RecordingAgent) -> None:
        self.config = config
        self.agent = agent
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.thread: Optional[threading.Thread] = None
        self.server: Any = None
        self.channel: Optional[WhatsAppInput] = None
        self.failure: Optional[BaseException] = None

    @property
    def webhook(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhooks/whatsapp/webhook"

    def start(self) -> None:
        ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self.thread.start()
        assert ready.wait(20), "the channel server did not start"
        if self.failure is not None:
            raise RuntimeError("the channel server did not start") from self.failure

    def _serve(self, ready: threading.Event) -> None:
        try:
            self._start_server()
        except BaseException as exc:  # noqa: BLE001 (handed to the test thread)
            self.failure = exc
            ready.set()
            return
        ready.set()
        self.loop.run_forever()

    def _start_server(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.channel = WhatsAppInput(self.config)
        app = Sanic(f"whatsapp_test_{uuid.uuid4().hex}", configure_logging=False)
        app.ctx.agent = self.agent
        register([self.channel], app, route="/webhooks/")
        self.server = self.loop.run_until_complete(
            app.create_server(host="127.0.0.1", port=self.port, return_asyncio_server=True, access_log=False)
        )
        self.loop.run_until_complete(self.server.startup())
        self.loop.run_until_complete(self.server.before_start())
        self.loop.run_until_complete(self.server.after_start())

    def stop(self) -> None:
        """Stop like a server shutting down: background work still running is cancelled."""

        async def shutdown() -> None:
            await self.server.before_stop()
            self.server.close()
            await self.server.wait_closed()
            await self.server.after_stop()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(timeout=20)
        self.loop.call_soon_threadsafe(self.loop.stop)
        assert self.thread is not None
        self.thread.join(timeout=10)
        assert self.channel is not None
        self.channel.store.close()



# ------------------------------------------------------------------------------------------------ webhooks


def envelope(*changes: Dict[str, Any], entries: int = 1) -> Dict[str, Any]:
    """Meta's notification: ``entries`` entries, the changes spread over them."""
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {"id": "102290129340398",
             "changes": [{"field": "messages", "value": value} for value in changes[n::entries]]}
            for n in range(entries)
        ],
    }


def messages_value(*messages: Dict[str, Any], contacts: Optional[List[Dict[str, Any]]] = None) -> Dict[str, Any]:
    if contacts is None:
        contacts = [{"profile": {"name": "María Quispe"}, "wa_id": m["from"], "user_id": f"PE.{m['from']}"}
                    for m in messages if m.get("from")]
    return {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID},
        "contacts": contacts,
        "messages": list(messages),
    }


def message(sender: str, kind: str = "text", content: Any = None, sent: Optional[datetime] = None,
            message_id: Optional[str] = None) -> Dict[str, Any]:
    content = {"body": "hola"} if content is None and kind == "text" else content
    raw: Dict[str, Any] = {
        "from": sender,
        "id": message_id or f"wamid.{uuid.uuid4().hex}",
        "timestamp": str(int((sent or datetime.now(timezone.utc)).timestamp())),
        "type": kind,
    }
    if content is not None:
        raw[kind] = content
    return raw


def text(sender: str, body: str, **kwargs: Any) -> Dict[str, Any]:
    return message(sender, "text", {"body": body}, **kwargs)


def new_sender() -> str:
    return "519" + str(uuid.uuid4().int)[:8]


class Meta:
    """Sends notifications like Meta: raw JSON bytes signed with the app secret."""

    def __init__(self, url: str, secret: str = APP_SECRET) -> None:
        self.url = url
        self.secret = secret

    def post(self, payload: Any, signature: Optional[str] = "sign", raw: Optional[bytes] = None) -> requests.Response:
        body = raw if raw is not None else json.dumps(payload, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json"}
        if signature == "sign":
            headers["X-Hub-Signature-256"] = signature_of(self.secret, body)
        elif signature is not None:
            headers["X-Hub-Signature-256"] = signature
        return requests.post(self.url, data=body, headers=headers, timeout=10)

    def send(self, *messages: Dict[str, Any], **kwargs: Any) -> requests.Response:
        response = self.post(envelope(messages_value(*messages, **kwargs)))
        assert response.status_code == 200, response.text
        return response


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module", autouse=True)
def sanic_test_mode() -> Iterator[None]:
    """Sanic 21.12 rewrites its response class at each app start; test mode makes several starts in one process safe."""
    before, Sanic.test_mode = Sanic.test_mode, True
    yield
    Sanic.test_mode = before


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeGraph]:
    fake = start_fake_graph(tmp_path_factory.mktemp("whatsapp_graph"))
    try:
        yield fake
    finally:
        fake.process.stop()


def make_config(graph: FakeGraph, database: Path) -> WhatsAppConfig:
    return WhatsAppConfig(
        app_secret=APP_SECRET,
        verify_token=VERIFY_TOKEN,
        access_token=ACCESS_TOKEN,
        phone_number_id=PHONE_NUMBER_ID,
        graph_url=graph.graph_url,
        database_url=f"sqlite:///{database}",
        timeout_seconds=5,
        max_attempts=3,
        retry_base_seconds=0.05,
    )


@pytest.fixture
def config(graph: FakeGraph, tmp_path: Path) -> WhatsAppConfig:
    graph.reset()
    return make_config(graph, tmp_path / "channels.db")


@pytest.fixture
def agent() -> RecordingAgent:
    return RecordingAgent()


@pytest.fixture
def server(config: WhatsAppConfig, agent: RecordingAgent) -> Iterator[RasaLikeServer]:
    running = RasaLikeServer(config, agent)
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def meta(server: RasaLikeServer) -> Meta:
    return Meta(server.webhook)


def bot_messages(graph: FakeGraph, to: str, count: int, timeout: float = 10.0) -> List[Dict[str, Any]]:
    """The first ``count`` accepted messages to ``to``, waiting until they arrived."""
    found = wait_until(lambda: (lambda m: m if len(m) >= count else None)(graph.messages(to=to, status="accepted")),
                       timeout, f"{count} messages to {to}")
    return [m["message"] for m in found[:count]]


# ------------------------------------------------------------------------------------------------ verification


def test_verification_handshake(server: RasaLikeServer) -> None:
    good = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"}
    response = requests.get(server.webhook, params=good, timeout=5)
    assert response.status_code == 200 and response.text == "1158201444"
    for wrong in ({"hub.verify_token": "otro"}, {"hub.mode": "unsubscribe"}, {"hub.verify_token": ""}):
        assert requests.get(server.webhook, params={**good, **wrong}, timeout=5).status_code == 403
    assert requests.get(server.webhook, timeout=5).status_code == 403
    assert requests.get(server.webhook.rsplit("/", 1)[0] + "/", timeout=5).json() == {"status": "ok"}


# ------------------------------------------------------------------------------------------------ signatures


def test_signed_text_reaches_rasa_with_metadata_and_the_reply_reaches_the_customer(
    meta: Meta, agent: RecordingAgent, graph: FakeGraph
) -> None:
    sender = new_sender()
    sent = text(sender, "Hola, ¿cuánto debo? 😊 Señor Núñez")
    response = meta.send(sent)
    assert response.json()["messages"] == 1
    [received] = wait_until(agent.messages, what="the message in Rasa")
    assert received.text == "Hola, ¿cuánto debo? 😊 Señor Núñez"
    assert (received.sender_id, received.message_id, received.input_channel) == (sender, sent["id"], "whatsapp")
    assert received.metadata["whatsapp"] == {
        "wa_id": sender,
        "user_id": f"PE.{sender}",
        "profile_name": "María Quispe",
        "message_id": sent["id"],
        "timestamp": sent["timestamp"],
        "type": "text",
        "phone_number_id": PHONE_NUMBER_ID,
    }
    [reply] = bot_messages(graph, sender, 1)
    assert reply["to"] == sender and reply["text"]["body"] == "Recibido: Hola, ¿cuánto debo? 😊 Señor Núñez"


def test_bad_or_missing_signatures_are_refused_and_nothing_is_processed(meta: Meta, agent: RecordingAgent) -> None:
    payload = envelope(messages_value(text(new_sender(), "hola")))
    body = json.dumps(payload, ensure_ascii=False).encode()
    assert meta.post(payload, signature=None).status_code == 401
    assert meta.post(payload, signature="sha256=" + "0" * 64).status_code == 403
    assert meta.post(payload, signature=signature_of("otro-secreto", body)).status_code == 403
    assert meta.post(payload, signature="sha1=abc").status_code == 403
    # The signature covers the raw bytes: the same JSON serialised another way (escaped accents) does not match.
    assert meta.post(payload, signature=signature_of(APP_SECRET, json.dumps(payload).encode()),
                     raw=body).status_code == 403
    time.sleep(0.3)
    assert agent.messages() == []


def test_oversized_and_malformed_bodies_are_refused_without_harm(meta: Meta, agent: RecordingAgent) -> None:
    huge = b'{"object": "' + b"x" * (1024 * 1024 + 10) + b'"}'
    assert meta.post(None, raw=huge).status_code == 413
    assert meta.post(None, raw=b'{"object": "whatsapp_business_account", "entry": [').status_code == 400
    assert meta.post(None, raw=b"\xff\xfe not json").status_code == 400
    assert meta.post(["a", "list"]).status_code == 400
    weird = {"object": "whatsapp_business_account", "entry": [
        "texto", {"changes": "no"}, {"changes": [{"value": {"messages": [{"type": "text"}, 3], "statuses": [{}]}}]},
    ]}
    assert meta.post(weird).status_code == 200
    sender = new_sender()
    meta.send(text(sender, "sigo aquí"))
    assert [m.text for m in wait_until(agent.messages)] == ["sigo aquí"]


# ------------------------------------------------------------------------------------------------ inbound types


def test_every_inbound_type(meta: Meta, agent: RecordingAgent, graph: FakeGraph) -> None:
    sender = new_sender()
    inbound = [
        message(sender, "interactive",
                {"type": "button_reply", "button_reply": {"id": "/check_debt", "title": "Mi deuda"}}),
        message(sender, "interactive", {"type": "list_reply",
                                        "list_reply": {"id": "/ask_products", "title": "Ver créditos",
                                                       "description": "Montos y tasas"}}),
        message(sender, "button", {"payload": "/pay_now", "text": "Pagar ahora"}),
        message(sender, "location", {"latitude": -12.0464, "longitude": -77.0428, "name": "Mercado Central",
                                     "address": "Jr. Ayacucho 100, Lima"}),
        message(sender, "image", {"id": "1479537139650973", "mime_type": "image/jpeg", "sha256": "abc",
                                  "caption": "mi DNI"}),
        message(sender, "document", {"id": "2479537139650974", "mime_type": "application/pdf",
                                     "filename": "boleta.pdf"}),
        message(sender, "audio", {"id": "3479537139650975", "mime_type": "audio/ogg; codecs=opus", "voice": True}),
        message(sender, "sticker", {"id": "4479537139650976", "mime_type": "image/webp"}),
        message(sender, "unsupported", None),
        message(sender, "reaction", {"message_id": "wamid.x", "emoji": "👍"}),
    ]
    for n, raw in enumerate(inbound):
        raw["timestamp"] = str(int(time.time()) - len(inbound) + n)
    meta.send(*inbound)
    received = wait_until(lambda: (lambda m: m if len(m) >= 7 else None)(agent.messages()), what="7 messages")
    assert [r.text for r in received] == [
        "/check_debt", "/ask_products", "/pay_now",
        "Ubicación compartida: Mercado Central, Jr. Ayacucho 100, Lima (-12.0464, -77.0428)",
        "/send_document", "/send_document", "/send_document",
    ]
    assert received[0].metadata["reply_title"] == "Mi deuda"
    assert received[3].metadata["location"] == {"latitude": -12.0464, "longitude": -77.0428,
                                                "name": "Mercado Central", "address": "Jr. Ayacucho 100, Lima",
                                                "url": None}
    assert received[4].metadata["attachments"] == [
        {"filename": "image-1479537139650973.jpg", "content_type": "image/jpeg", "media_id": "1479537139650973"}
    ]
    assert received[4].metadata["caption"] == "mi DNI"
    assert received[5].metadata["attachments"][0] == {"filename": "boleta.pdf", "content_type": "application/pdf",
                                                      "media_id": "2479537139650974"}
    assert received[6].metadata["attachments"][0]["content_type"] == "audio/ogg"
    assert all(r.metadata["whatsapp"]["wa_id"] == sender for r in received)
    # Sticker and unsupported: a polite answer each, without Rasa; the reaction: nothing at all.
    replies = bot_messages(graph, sender, 9)
    polite = [m for m in replies if m["type"] == "text" and m["text"]["body"] == UNSUPPORTED_REPLY]
    assert len(polite) == 2
    time.sleep(0.3)
    assert len(agent.messages()) == 7 and len(graph.messages(to=sender)) == 9


def test_sender_without_phone_number_is_its_business_scoped_id(meta: Meta, agent: RecordingAgent,
                                                               graph: FakeGraph) -> None:
    user_id = f"PE.{uuid.uuid4().int % 10 ** 18}"
    raw = text("0", "hola, soy usuario")
    del raw["from"]
    raw["from_user_id"] = user_id
    meta.send(raw, contacts=[{"profile": {"name": "Ana"}, "user_id": user_id}])
    [received] = wait_until(agent.messages)
    assert received.sender_id == user_id
    assert received.metadata["whatsapp"]["wa_id"] is None and received.metadata["whatsapp"]["user_id"] == user_id
    [reply] = bot_messages(graph, user_id, 1)
    assert reply["recipient"] == user_id and "to" not in reply


def test_several_entries_changes_and_messages_in_one_post(meta: Meta, agent: RecordingAgent) -> None:
    first, second = new_sender(), new_sender()
    payload = envelope(
        messages_value(text(first, "uno"), text(second, "a")),
        messages_value(text(first, "dos")),
        messages_value(text(second, "b"), text(first, "tres")),
        entries=2,
    )
    assert len(payload["entry"]) == 2
    response = meta.post(payload)
    assert response.status_code == 200 and response.json()["messages"] == 5
    received = wait_until(lambda: (lambda m: m if len(m) == 5 else None)(agent.messages()), what="5 messages")
    assert sorted(r.text for r in received if r.sender_id == first) == ["dos", "tres", "uno"]
    assert sorted(r.text for r in received if r.sender_id == second) == ["a", "b"]


# ------------------------------------------------------------------------------------------------ duplicates


def test_duplicates_are_answered_once_even_after_a_restart(config: WhatsAppConfig, graph: FakeGraph) -> None:
    agent = RecordingAgent()
    sender = new_sender()
    raw = text(sender, "quiero pagar")
    first = RasaLikeServer(config, agent)
    first.start()
    try:
        meta = Meta(first.webhook)
        assert meta.send(raw).json()["messages"] == 1
        assert meta.send(raw).json()["duplicates"] == 1
        bot_messages(graph, sender, 1)
    finally:
        first.stop()
    second = RasaLikeServer(config, agent)
    second.start()
    try:
        response = Meta(second.webhook).send(raw)
        assert response.json() == {"status": "received", "messages": 0, "duplicates": 1, "statuses": 0}
        time.sleep(0.5)
    finally:
        second.stop()
    assert [r.text for r in agent.messages()] == ["quiero pagar"]
    assert len(graph.messages(to=sender)) == 1


def test_concurrent_redeliveries_are_processed_once(meta: Meta, agent: RecordingAgent) -> None:
    raw = text(new_sender(), "hola")
    payload = envelope(messages_value(raw))
    threads = [threading.Thread(target=meta.post, args=(payload,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wait_until(agent.messages)
    time.sleep(0.3)
    assert len(agent.messages()) == 1


def test_a_stop_lets_the_turn_in_progress_finish_and_the_next_start_takes_the_waiting_messages(
    config: WhatsAppConfig, graph: FakeGraph
) -> None:
    agent = RecordingAgent()
    sender = new_sender()
    first = RasaLikeServer(config, agent)
    first.start()
    try:
        meta = Meta(first.webhook)
        meta.send(text(sender, "lento 0.5"))
        meta.send(text(sender, "después"))
        wait_until(agent.messages, what="the slow message started")
    finally:
        first.stop()
    assert [r.text for r in agent.messages()] == ["lento 0.5"]
    assert [m["message"]["text"]["body"] for m in graph.messages(to=sender)] == ["Recibido: lento 0.5"]
    second = RasaLikeServer(config, agent)
    second.start()
    try:
        wait_until(lambda: len(agent.messages()) == 2, what="the waiting message after the restart")
        assert agent.messages()[-1].text == "después"
        bot_messages(graph, sender, 2)
    finally:
        second.stop()


def test_a_turn_cut_short_by_a_stop_is_not_replayed(config: WhatsAppConfig, graph: FakeGraph) -> None:
    agent = RecordingAgent()
    sender = new_sender()
    impatient = replace(config, shutdown_grace_seconds=0.2)
    first = RasaLikeServer(impatient, agent)
    first.start()
    try:
        Meta(first.webhook).send(text(sender, "lento 30"))
        wait_until(agent.messages, what="the slow message started")
    finally:
        first.stop()
    second = RasaLikeServer(impatient, agent)
    second.start()
    try:
        time.sleep(0.5)
    finally:
        second.stop()
    # It may have been half answered: replaying it could repeat an action, so it stays as it was.
    assert [r.text for r in agent.messages()] == ["lento 30"]
    assert graph.messages(to=sender) == []


# ------------------------------------------------------------------------------------------------ statuses


def test_statuses_are_recorded_and_never_reach_rasa(meta: Meta, agent: RecordingAgent, config: WhatsAppConfig) -> None:
    recipient = new_sender()
    sent_id = f"wamid.{uuid.uuid4().hex}"
    now = int(time.time())

    def status(name: str, **extra: Any) -> Dict[str, Any]:
        return {"id": sent_id, "status": name, "timestamp": str(now), "recipient_id": recipient, **extra}

    failure = {"code": 131026, "title": "Message undeliverable", "error_data": {"details": "not on WhatsApp"}}
    value = {"messaging_product": "whatsapp", "metadata": {"phone_number_id": PHONE_NUMBER_ID},
             "statuses": [status("sent"), status("delivered"), status("read"), status("failed", errors=[failure])]}
    response = meta.post(envelope(value))
    assert response.status_code == 200 and response.json()["statuses"] == 4
    assert meta.post(envelope(value)).json()["statuses"] == 0  # redelivered: recorded once
    time.sleep(0.3)
    assert agent.messages() == []
    store = ChannelStore(config.database_url)
    try:
        recorded = asyncio.run(store.statuses(sent_id))
    finally:
        store.close()
    assert [row["status"] for row in recorded] == ["sent", "delivered", "read", "failed"]
    assert recorded[-1]["errors"][0]["code"] == 131026


def test_a_failed_status_for_a_closed_window_resends_the_text_as_a_template(
    meta: Meta, agent: RecordingAgent, graph: FakeGraph
) -> None:
    sender = new_sender()
    meta.send(text(sender, "hola"))
    bot_messages(graph, sender, 1)
    [sent] = graph.messages(to=sender, status="accepted")
    failed = {"id": sent["id"], "status": "failed", "timestamp": str(int(time.time())), "recipient_id": sender,
              "errors": [{"code": 131047, "title": "Re-engagement message"}]}
    meta.post(envelope({"messaging_product": "whatsapp", "statuses": [failed]}))
    _first, resent = bot_messages(graph, sender, 2)
    assert resent["type"] == "template"
    assert resent["template"]["components"][0]["parameters"][0]["text"] == "Recibido: hola"


# ------------------------------------------------------------------------------------------------ background work


def test_acknowledged_before_a_slow_conversation_turn_finishes(meta: Meta, agent: RecordingAgent) -> None:
    started = time.monotonic()
    meta.send(text(new_sender(), "lento 2"))
    acknowledged = time.monotonic() - started
    assert acknowledged < 1.0
    [received] = wait_until(agent.messages)
    assert received.finished == 0.0  # still being processed after the acknowledgement
    wait_until(lambda: agent.messages()[0].finished, timeout=5)


def test_messages_of_one_customer_are_processed_in_order_and_customers_in_parallel(
    meta: Meta, agent: RecordingAgent
) -> None:
    first, second = new_sender(), new_sender()
    for n, delay in enumerate([0.4, 0.1, 0.3, 0.0, 0.2]):
        meta.send(text(first, f"lento {delay} #{n}"))
    meta.send(text(second, "lento 0.1 otro"))
    done = wait_until(lambda: (lambda m: m if len(m) == 6 and all(r.finished for r in m) else None)(agent.messages()),
                      what="6 processed messages")
    mine = [r for r in done if r.sender_id == first]
    assert [r.text.split("#")[1] for r in mine] == ["0", "1", "2", "3", "4"]
    assert all(later.started >= earlier.finished for earlier, later in zip(mine, mine[1:]))
    other = next(r for r in done if r.sender_id == second)
    assert other.finished < mine[-1].finished  # not queued behind another customer


def test_a_failing_message_is_logged_apologised_for_and_the_next_one_still_runs(
    meta: Meta, agent: RecordingAgent, graph: FakeGraph, config: WhatsAppConfig
) -> None:
    sender = new_sender()
    broken = text(sender, "falla")
    meta.send(broken)
    meta.send(text(sender, "hola"))
    wait_until(lambda: len(agent.messages()) == 2)
    apology, answer = bot_messages(graph, sender, 2)
    assert apology["text"]["body"] == FAILURE_REPLY and answer["text"]["body"] == "Recibido: hola"
    store = ChannelStore(config.database_url)
    try:
        assert asyncio.run(store.state_of(broken["id"])) == "failed"
    finally:
        store.close()


# ------------------------------------------------------------------------------------------------ replies


def test_menu_as_reply_buttons_and_a_button_reply_continues(
    meta: Meta, agent: RecordingAgent, graph: FakeGraph
) -> None:
    sender = new_sender()
    meta.send(text(sender, "menu"))
    [menu] = bot_messages(graph, sender, 1)
    assert menu["type"] == "interactive" and menu["interactive"]["type"] == "button"
    buttons = menu["interactive"]["action"]["buttons"]
    assert [b["reply"]["id"] for b in buttons] == ["/ask_products", "/check_debt", "/ask_human"]
    assert all(len(b["reply"]["title"]) <= 20 for b in buttons)
    assert buttons[2]["reply"]["title"] == "Hablar con una…"
    reply = buttons[0]["reply"]
    meta.send(message(sender, "interactive", {"type": "button_reply", "button_reply": reply}))
    wait_until(lambda: len(agent.messages()) == 2)
    assert agent.messages()[-1].text == "/ask_products"


def test_many_choices_as_numbered_text_and_the_number_picks_the_payload(
    meta: Meta, agent: RecordingAgent, graph: FakeGraph
) -> None:
    sender = new_sender()
    meta.send(text(sender, "opciones"))
    [numbered] = bot_messages(graph, sender, 1)
    assert numbered["type"] == "text" and "12. Opción 12" in numbered["text"]["body"]
    meta.send(text(sender, "2"))
    meta.send(text(sender, "2"))  # the choices were used: a second "2" is just "2"
    wait_until(lambda: len(agent.messages()) == 3)
    assert [r.text for r in agent.messages()[1:]] == ['/opcion{"n": 2}', "2"]


def test_reply_outside_the_service_window_is_a_template(meta: Meta, graph: FakeGraph) -> None:
    sender = new_sender()
    meta.send(text(sender, "hola de ayer", sent=datetime.now(timezone.utc) - timedelta(hours=25)))
    [reply] = bot_messages(graph, sender, 1)
    assert reply["type"] == "template"
    assert reply["template"]["components"][0]["parameters"][0]["text"] == "Recibido: hola de ayer"


# ------------------------------------------------------------------------------------------------ outbound


@pytest.fixture
async def output(config: WhatsAppConfig) -> AsyncIterator[WhatsAppOutput]:
    store = ChannelStore(config.database_url)
    client = GraphClient(config)
    yield WhatsAppOutput(client, store)
    await client.close()
    store.close()


async def deliver_with(output: WhatsAppOutput, config: WhatsAppConfig, customer: str) -> Optional[str]:
    """Send "Hola" through a client with another configuration (and close it)."""
    client = GraphClient(config)
    try:
        return await WhatsAppOutput(client, output.store).deliver(customer, {"type": "text", "text": {"body": "Hola"}},
                                                                  "Hola")
    finally:
        await client.close()


async def open_window(output: WhatsAppOutput, customer: str, hours_ago: float = 0.0) -> None:
    """The customer wrote ``hours_ago``: what opens (or, past 24, closed) the service window."""
    await output.store.add_inbound(InboundMessage(
        f"wamid.{uuid.uuid4().hex}", customer, "message", "hola", {},
        datetime.now(timezone.utc) - timedelta(hours=hours_ago),
    ))


async def test_long_text_is_split_under_the_limit(output: WhatsAppOutput, graph: FakeGraph) -> None:
    customer = new_sender()
    await open_window(output, customer)
    paragraph = "Su cronograma de pagos incluye cuotas mensuales con intereses. " * 30
    await output.send_text_message(customer, "\n\n".join([paragraph] * 5))
    sent = graph.messages(to=customer)
    assert len(sent) == 3 and all(m["status"] == "accepted" for m in sent)
    assert all(len(m["message"]["text"]["body"]) <= 4096 for m in sent)


async def test_buttons_fit_the_limits_and_a_long_body_is_sent_before_them(
    output: WhatsAppOutput, graph: FakeGraph
) -> None:
    customer = new_sender()
    await open_window(output, customer)
    long_text = ("Le explico las condiciones de su plan de pagos con todo detalle. " * 25).strip()
    buttons = [{"title": "Acepto el plan de pagos propuesto", "payload": "/affirm"},
               {"title": "No, gracias", "payload": "/deny"}]
    await output.send_text_with_buttons(customer, long_text, buttons)
    sent = graph.messages(to=customer)
    assert [m["status"] for m in sent] == ["accepted", "accepted"]
    lead, interactive = sent[0]["message"], sent[1]["message"]["interactive"]
    assert lead["type"] == "text"
    assert len(interactive["body"]["text"]) <= 1024
    assert " ".join((lead["text"]["body"] + " " + interactive["body"]["text"]).split()) == long_text
    assert [b["reply"]["title"] for b in interactive["action"]["buttons"]] == ["Acepto el plan de…", "No, gracias"]


async def test_four_to_ten_choices_are_a_list(output: WhatsAppOutput, graph: FakeGraph) -> None:
    customer = new_sender()
    await open_window(output, customer)
    products = ["Préstamo Personal", "Crédito Vehicular", "Crédito Negocio Pyme para capital de trabajo",
                "Préstamo por Convenio", "Crédito Hipotecario"]
    await output.send_text_with_buttons(customer, "¿Qué crédito le interesa?",
                                        [{"title": p, "payload": f"/ask_products{{\"product\": \"{p}\"}}"}
                                         for p in products])
    [sent] = graph.messages(to=customer)
    assert sent["status"] == "accepted", sent["error"]
    listing = sent["message"]["interactive"]
    assert listing["type"] == "list" and len(listing["action"]["button"]) <= 20
    rows = listing["action"]["sections"][0]["rows"]
    assert [len(r["title"]) <= 24 for r in rows] == [True] * 5
    assert rows[2]["description"] == "Crédito Negocio Pyme para capital de trabajo"


async def test_images_and_documents(output: WhatsAppOutput, graph: FakeGraph) -> None:
    customer = new_sender()
    await open_window(output, customer)
    await output.send_response(customer, {"text": "Su constancia:", "attachment": "https://credia.example/c/123.pdf",
                                          "image": "https://credia.example/i/plan.png"})
    await output.send_custom_json(customer, {"whatsapp": {"type": "document", "document": {
        "link": "https://credia.example/cronograma.pdf", "filename": "cronograma.pdf"}}})
    sent = [m["message"] for m in graph.messages(to=customer, status="accepted")]
    assert [m["type"] for m in sent] == ["text", "image", "document", "document"]
    assert sent[2]["document"] == {"link": "https://credia.example/c/123.pdf", "filename": "123.pdf"}


async def test_outside_the_window_a_template_carries_the_text_and_the_choices(
    output: WhatsAppOutput, graph: FakeGraph
) -> None:
    customer = new_sender()
    await open_window(output, customer, hours_ago=30)
    await output.send_text_with_buttons(customer, "Su pago fue registrado.\n¿Algo más?", [dict(b) for b in MENU])
    [sent] = graph.messages(to=customer)
    assert sent["status"] == "accepted" and sent["message"]["type"] == "template"
    parameter = sent["message"]["template"]["components"][0]["parameters"][0]["text"]
    assert parameter.startswith("Su pago fue registrado. ¿Algo más? 1. Ver créditos 2. Mi deuda")
    choices = await output.store.take_choices(customer)
    assert [c.payload for c in choices] == ["/ask_products", "/check_debt", "/ask_human"]


async def test_window_closed_per_meta_is_retried_as_a_template(output: WhatsAppOutput, graph: FakeGraph) -> None:
    customer = new_sender()
    await open_window(output, customer)  # the store believes the window open; Meta knows better
    graph.set_window(customer, open_=False)
    assert await output.deliver(customer, {"type": "text", "text": {"body": "Hola"}}, "Hola")
    attempts = graph.messages(to=customer)
    assert [(m["status"], m["message"]["type"]) for m in attempts] == [("rejected", "text"), ("accepted", "template")]
    assert attempts[0]["error"]["code"] == 131047


@pytest.mark.parametrize("code", [130429, 131056, 131000])
async def test_rate_limits_and_server_errors_are_retried(output: WhatsAppOutput, graph: FakeGraph, code: int) -> None:
    customer = new_sender()
    await open_window(output, customer)
    graph.fail_next(code, count=2, to=customer)
    message_id = await output.deliver(customer, {"type": "text", "text": {"body": "Hola"}}, "Hola")
    attempts = graph.messages(to=customer)
    assert [m["status"] for m in attempts] == ["rejected", "rejected", "accepted"]
    assert message_id == attempts[-1]["id"]


async def test_retries_stop_after_the_configured_attempts(output: WhatsAppOutput, graph: FakeGraph) -> None:
    customer = new_sender()
    await open_window(output, customer)
    graph.fail_next(130429, count=10, to=customer)
    assert await output.deliver(customer, {"type": "text", "text": {"body": "Hola"}}, "Hola") is None
    assert len(graph.messages(to=customer)) == 3


async def test_undeliverable_and_other_client_errors_are_not_retried(output: WhatsAppOutput, graph: FakeGraph) -> None:
    customer = new_sender()
    await open_window(output, customer)
    graph.fail_next(131026, to=customer)
    assert await output.deliver(customer, {"type": "text", "text": {"body": "Hola"}}, "Hola") is None
    await output.send_text_message(customer, "")  # nothing to send
    assert await deliver_with(output, replace(output.client.config, access_token="wrong"), customer) is None
    assert [m["error"]["code"] for m in graph.messages(to=customer)] == [131026]


async def test_unreachable_graph_api_is_retried_then_given_up(output: WhatsAppOutput) -> None:
    customer = new_sender()
    await open_window(output, customer)
    gone = replace(output.client.config, graph_url=f"http://127.0.0.1:{free_port()}/v23.0")
    started = time.monotonic()
    assert await deliver_with(output, gone, customer) is None
    assert time.monotonic() - started < 5


# ------------------------------------------------------------------------------------------------ settings


def test_settings_come_from_the_environment_and_missing_secrets_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("APP_SECRET", "VERIFY_TOKEN", "ACCESS_TOKEN", "PHONE_NUMBER_ID", "GRAPH_URL", "TEMPLATE_NAME"):
        monkeypatch.delenv(f"WHATSAPP_{name}", raising=False)
    monkeypatch.setenv("WHATSAPP_APP_SECRET", "secreto")
    monkeypatch.setenv("WHATSAPP_PHONE_NUMBER_ID", "123")
    with pytest.raises(RuntimeError, match="WHATSAPP_VERIFY_TOKEN, WHATSAPP_ACCESS_TOKEN"):
        WhatsAppConfig.from_env(None)
    monkeypatch.setenv("WHATSAPP_VERIFY_TOKEN", "verificar")
    monkeypatch.setenv("WHATSAPP_ACCESS_TOKEN", "token")
    monkeypatch.setenv("WHATSAPP_GRAPH_URL", "http://127.0.0.1:9/v23.0/")
    config = WhatsAppConfig.from_env({"template_name": "recordatorio_pago", "template_language": None})
    assert (config.app_secret, config.verify_token, config.access_token, config.phone_number_id) == (
        "secreto", "verificar", "token", "123")
    assert config.graph_url == "http://127.0.0.1:9/v23.0"
    assert (config.template_name, config.template_language) == ("recordatorio_pago", "es")
    assert config.database_url.endswith("channels.db")
