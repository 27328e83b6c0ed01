"""Input limits and session protection of the channels, each against the channel as Rasa registers it.

The REST channel and the action server run in-process through ASGI; the socket.io channel runs on a real port
with a real socket.io client, since the session hijack it prevents happens over the socket.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any, Dict, Iterator, List, Optional

import pytest
import redis
import socketio
from rasa.core.channels.channel import UserMessage, register
from sanic import Sanic

from credia.action_server import create_app as create_action_server
from credia.channels import guard as guard_module
from credia.channels.guard import FLOOD_REPLY, Guard, Limits, MemoryCounter, RedisCounter, Verdict
from credia.channels.links import sign_conversation_link
from credia.channels.rest import RestInput
from credia.channels.socketio_channel import SocketIOInput
from credia.processes import free_port
from tests.unit.asgi_client import AsgiClient
from tests.waiting import wait_until

LINK_SECRET = "secreto-de-prueba-para-sesiones"
REDIS_URL = "redis://127.0.0.1:6379/15"


class Recorder:
    """Stands in for Rasa's agent: records what reached the bot and answers "Recibido"."""

    def __init__(self) -> None:
        self.received: List[UserMessage] = []

    async def handle_message(self, message: UserMessage) -> None:
        self.received.append(message)
        await message.output_channel.send_text_message(message.sender_id, f"Recibido: {message.text}")

    def texts(self, sender: Optional[str] = None) -> List[str]:
        return [m.text or "" for m in self.received if sender in (None, m.sender_id)]


def small_guard(**limits: int) -> Guard:
    return Guard(Limits(**{"messages_per_window": 3, "max_text_chars": 50, "max_body_bytes": 1024, **limits}),
                 MemoryCounter(), clock=lambda: 1000.0)


@pytest.fixture()
def limits(monkeypatch: pytest.MonkeyPatch) -> Guard:
    """A guard with small limits (3 messages a window, 50 characters, 1 KiB) for every channel in the test."""
    test_guard = small_guard()
    monkeypatch.setattr(guard_module, "_guard", test_guard)
    return test_guard


def sanic_app(channel: Any, agent: Recorder) -> Sanic:
    app = Sanic(f"security_{uuid.uuid4().hex}", configure_logging=False)
    app.ctx.agent = agent
    register([channel], app, route="/webhooks/")
    return app


# --- the guard itself ---------------------------------------------------------------------------------------


def test_a_flood_is_refused_beyond_the_limit_with_one_polite_answer_and_counts_again_next_window() -> None:
    now = [1000.0]
    guard = Guard(Limits(messages_per_window=3), MemoryCounter(), clock=lambda: now[0])
    verdicts = [asyncio.run(guard.check("51987654321", "hola")) for _ in range(6)]
    assert verdicts == [Verdict.ALLOW] * 3 + [Verdict.FLOOD_FIRST, Verdict.FLOOD, Verdict.FLOOD]
    assert [guard.reply_for(v) for v in verdicts[3:]] == [FLOOD_REPLY, None, None]
    assert asyncio.run(guard.check("51912345678", "hola")) is Verdict.ALLOW  # per customer
    now[0] += 60
    assert asyncio.run(guard.check("51987654321", "hola")) is Verdict.ALLOW


def test_an_oversized_message_is_refused_with_its_limit_in_spanish() -> None:
    guard = small_guard()
    verdict = asyncio.run(guard.check("c", "x" * 51))
    assert verdict is Verdict.TOO_LONG
    assert "máximo 50 caracteres" in guard.reply_for(verdict)
    assert asyncio.run(guard.check("c", "x" * 50)) is Verdict.ALLOW


@pytest.mark.parametrize("value", ["0", "-5", "veinte"])
def test_bad_limits_in_the_environment_are_refused_with_the_variable_named(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CREDIA_RATE_LIMIT", value)
    with pytest.raises(ValueError, match="CREDIA_RATE_LIMIT"):
        Limits.from_env()


@pytest.fixture()
def redis_db() -> Iterator[None]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    client.flushdb()
    yield
    client.flushdb()


def test_with_redis_two_servers_share_one_limit_per_customer(redis_db: None) -> None:
    async def scenario() -> List[Verdict]:
        limits = Limits(messages_per_window=4)
        first, second = RedisCounter(REDIS_URL), RedisCounter(REDIS_URL)
        servers = [Guard(limits, first, clock=lambda: 5000.0), Guard(limits, second, clock=lambda: 5000.0)]
        try:
            return [await servers[n % 2].check("+51987654321", "hola") for n in range(6)]
        finally:
            await first.close()
            await second.close()

    assert asyncio.run(scenario()) == [Verdict.ALLOW] * 4 + [Verdict.FLOOD_FIRST, Verdict.FLOOD]
    keys = [key.decode() for key in redis.Redis.from_url(REDIS_URL).keys("credia:rate:*")]
    assert keys and not any("51987654321" in key for key in keys)  # hashed: no phone number in Redis


def test_with_redis_down_each_server_still_limits_on_its_own() -> None:
    async def scenario() -> List[Verdict]:
        counter = RedisCounter(f"redis://127.0.0.1:{free_port()}/0")
        guard = Guard(Limits(messages_per_window=2), counter, clock=lambda: 5000.0)
        return [await guard.check("c", "hola") for _ in range(3)]

    assert asyncio.run(scenario()) == [Verdict.ALLOW, Verdict.ALLOW, Verdict.FLOOD_FIRST]


# --- REST ---------------------------------------------------------------------------------------------------


@pytest.fixture()
def rest(limits: Guard) -> Iterator[tuple[AsgiClient, Recorder]]:
    agent = Recorder()
    with AsgiClient(sanic_app(RestInput(), agent)) as client:
        yield client, agent


def test_rest_answers_a_normal_message_on_the_rest_channel_whatever_the_caller_claims(rest: Any) -> None:
    client, agent = rest
    answer = client.request("POST", "/webhooks/rest/webhook",
                            json={"sender": "c1", "message": "hola", "input_channel": "whatsapp"})
    assert answer.status == 200 and answer.json() == [{"recipient_id": "c1", "text": "Recibido: hola"}]
    assert agent.received[0].input_channel == "rest"


def test_rest_refuses_an_oversized_message_and_body_without_processing_them(rest: Any) -> None:
    client, agent = rest
    long_text = client.request("POST", "/webhooks/rest/webhook", json={"sender": "c1", "message": "x" * 51})
    big_body = client.request("POST", "/webhooks/rest/webhook",
                              json={"sender": "c1", "message": "hola", "metadata": {"relleno": "x" * 2000}})
    assert (long_text.status, big_body.status) == (413, 413)
    assert "50 characters" in long_text.json()["detail"] and "1024 bytes" in big_body.json()["detail"]
    assert agent.received == []


def test_rest_answers_429_to_a_flood_and_the_messages_over_the_limit_are_not_processed(rest: Any) -> None:
    client, agent = rest
    statuses = [client.request("POST", "/webhooks/rest/webhook", json={"sender": "c1", "message": f"m{n}"}).status
                for n in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    assert agent.texts() == ["m0", "m1", "m2"]
    refused = client.request("POST", "/webhooks/rest/webhook", json={"sender": "c1", "message": "otra"})
    assert refused.headers["retry-after"] == "60"
    assert client.request("POST", "/webhooks/rest/webhook", json={"sender": "c2", "message": "hola"}).status == 200


@pytest.mark.parametrize("body", [
    b"no es json", b"[1, 2]", b'{"message": "hola"}', b'{"sender": 5, "message": "hola"}',
    b'{"sender": "c1"}', b'{"sender": "c1", "message": "hola", "metadata": "x"}',
    b'{"sender": "' + b"s" * 300 + b'", "message": "hola"}',
])
def test_rest_refuses_a_malformed_request_with_400_and_a_reason(rest: Any, body: bytes) -> None:
    client, agent = rest
    answer = client.request("POST", "/webhooks/rest/webhook", body=body,
                            headers={"content-type": "application/json"})
    assert answer.status == 400 and answer.json()["detail"]
    assert agent.received == []


# --- the action server --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def action_server() -> Iterator[AsgiClient]:
    with AsgiClient(create_action_server("token-de-prueba")) as client:
        yield client


@pytest.mark.parametrize("authorization", [None, "Bearer otro", "token-de-prueba", "Bearer token-de-prueba "])
def test_the_action_server_refuses_a_request_without_rasas_token(
    action_server: AsgiClient, authorization: Optional[str]
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    call = {"next_action": "action_collections_start", "tracker": {"sender_id": "51987654321"}, "domain": {}}
    assert action_server.request("POST", "/webhook", json=call, headers=headers).status == 401
    assert action_server.request("GET", "/actions", headers=headers).status == 401


def test_the_action_server_runs_actions_for_rasa_and_keeps_health_open(action_server: AsgiClient) -> None:
    assert action_server.request("GET", "/health").status == 200
    listed = action_server.request("GET", "/actions", headers={"Authorization": "Bearer token-de-prueba"})
    assert listed.status == 200 and {"name": "action_collections_start"} in listed.json()
    garbage = action_server.request("POST", "/webhook", body=b"{", headers={
        "Authorization": "Bearer token-de-prueba", "content-type": "application/json"})
    assert garbage.status == 400 and "{" not in garbage.json()["error"]


def test_the_action_server_needs_a_token_to_be_built() -> None:
    with pytest.raises(ValueError, match="ACTION_SERVER_TOKEN"):
        create_action_server("")


def test_rasa_sends_the_token_from_its_environment_in_a_header_not_in_the_url(tmp_path: Any) -> None:
    from rasa.utils.endpoints import read_endpoint_config

    from credia.launcher import Ports, write_endpoints

    path = write_endpoints(tmp_path, Ports())
    assert "${ACTION_SERVER_TOKEN}" in path.read_text()  # the secret itself is not written to disk
    with pytest.MonkeyPatch.context() as env:
        env.setenv("ACTION_SERVER_TOKEN", "valor-del-entorno")
        endpoint = read_endpoint_config(str(path), "action_endpoint")
    assert endpoint.headers == {"Authorization": "Bearer valor-del-entorno"} and endpoint.token is None


# --- socket.io: signed sessions -----------------------------------------------------------------------------


class SocketServer:
    """The socket.io channel on a real port in a thread, registered as ``rasa run`` does."""

    def __init__(self, agent: Recorder) -> None:
        self.agent = agent
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.server: Any = None

    def start(self) -> None:
        ready = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(self.loop)
            channel = SocketIOInput.from_credentials({"session_persistence": True})
            app = sanic_app(channel, self.agent)
            self.server = self.loop.run_until_complete(app.create_server(
                host="127.0.0.1", port=self.port, return_asyncio_server=True, access_log=False))
            self.loop.run_until_complete(self.server.startup())
            ready.set()
            self.loop.run_forever()

        threading.Thread(target=serve, daemon=True).start()
        assert ready.wait(20)

    def stop(self) -> None:
        async def close() -> None:
            self.server.close()
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture()
def socket_server(limits: Guard, monkeypatch: pytest.MonkeyPatch) -> Iterator[SocketServer]:
    monkeypatch.setenv("CONVERSATION_LINK_SECRET", LINK_SECRET)
    server = SocketServer(Recorder())
    server.start()
    yield server
    server.stop()


class Browser:
    """A socket.io client that records every event the server sends it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.client = socketio.AsyncClient()
        self.events: asyncio.Queue = asyncio.Queue()
        for name in ("session_confirm", "session_token", "session_rejected", "bot_uttered"):
            self.client.on(name, self._recorder(name))

    def _recorder(self, name: str) -> Any:
        async def record(data: Any = None) -> None:
            await self.events.put((name, data))
        return record

    async def __aenter__(self) -> "Browser":
        await self.client.connect(f"http://127.0.0.1:{self.port}", socketio_path="/socket.io",
                                  transports=["polling"])
        return self

    async def __aexit__(self, *_exc: Any) -> None:
        await self.client.disconnect()

    async def next(self, name: str) -> Any:
        while True:
            event, data = await asyncio.wait_for(self.events.get(), 10)
            if event == name:
                return data

    async def request_session(self, data: Dict[str, Any]) -> tuple[str, Any]:
        await self.client.emit("session_request", data)
        event, payload = await asyncio.wait_for(self.events.get(), 10)
        return event, payload


def test_a_new_web_chat_session_gets_a_token_that_rejoins_it_later(socket_server: SocketServer) -> None:
    async def scenario() -> List[str]:
        async with Browser(socket_server.port) as first:
            event, issued = await first.request_session({})
            assert event == "session_token"
            assert await first.next("session_confirm") == issued["session_id"]
            await first.client.emit("user_uttered", {"session_id": issued["session_id"], "message": "hola"})
            await first.next("bot_uttered")
        async with Browser(socket_server.port) as again:
            event, _ = await again.request_session(issued)
            assert event == "session_token"
            assert await again.next("session_confirm") == issued["session_id"]
            await again.client.emit("user_uttered", {"message": "sigo aquí"})
            return [(await again.next("bot_uttered"))["text"]]

    assert asyncio.run(scenario()) == ["Recibido: sigo aquí"]


@pytest.mark.parametrize("credentials", [
    {"session_id": "51987654321"},
    {"session_id": "51987654321", "session_token": "inventado.token"},
    {"session_id": "51987654321", "session_token": sign_conversation_link("51912345678", secret=LINK_SECRET)},
    {"session_id": "51987654321", "session_token": sign_conversation_link("51987654321", secret="otro")},
    {"session_id": "51987654321",
     "session_token": sign_conversation_link("51987654321", 60, secret=LINK_SECRET, now=1_000_000)},
])
def test_knowing_a_session_id_without_its_token_neither_joins_nor_writes_to_the_conversation(
    socket_server: SocketServer, credentials: Dict[str, Any]
) -> None:
    async def scenario() -> tuple[str, Any, Any]:
        async with Browser(socket_server.port) as intruder:
            event, payload = await intruder.request_session(credentials)
            await intruder.client.emit("user_uttered", {"session_id": "51987654321", "message": "quiero pagar"})
            refusal = await intruder.next("session_rejected")
            return event, payload, refusal

    event, payload, refusal = asyncio.run(scenario())
    assert event == "session_rejected" and payload["detail"] and refusal["reason"] == "unconfirmed"
    assert socket_server.agent.texts("51987654321") == []


def test_a_confirmed_socket_cannot_write_into_another_conversation(socket_server: SocketServer) -> None:
    async def scenario() -> Any:
        async with Browser(socket_server.port) as browser:
            await browser.request_session({})
            await browser.next("session_confirm")
            await browser.client.emit("user_uttered", {"session_id": "51987654321", "message": "quiero pagar"})
            return await browser.next("session_rejected")

    assert asyncio.run(scenario())["reason"] == "unconfirmed"
    assert socket_server.agent.texts("51987654321") == []


def test_the_web_chat_gets_one_polite_answer_to_a_flood_and_an_explanation_for_a_long_message(
    socket_server: SocketServer,
) -> None:
    async def scenario() -> List[str]:
        async with Browser(socket_server.port) as browser:
            _, issued = await browser.request_session({})
            await browser.next("session_confirm")
            await browser.client.emit("user_uttered", {"message": "x" * 51})
            answers = [(await browser.next("bot_uttered"))["text"]]
            for n in range(6):
                await browser.client.emit("user_uttered", {"message": f"m{n}"})
            await asyncio.sleep(1.0)
            while not browser.events.empty():
                event, data = browser.events.get_nowait()
                answers.append(data["text"])
            return answers

    answers = asyncio.run(scenario())
    assert "máximo 50 caracteres" in answers[0]
    assert answers[1:] == ["Recibido: m0", "Recibido: m1", FLOOD_REPLY]
    wait_until(lambda: len(socket_server.agent.received) == 2)
