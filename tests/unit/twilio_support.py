"""Test helpers for the Twilio channels: Twilio's request signing, the fake Twilio API process, and a real Sanic
server with a channel registered as Rasa registers it, in front of a scripted bot that answers through the
channel's own output channel and keeps its messages in a real tracker store (as Rasa does).
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import requests
from rasa.core.actions.action import create_bot_utterance
from rasa.core.channels.channel import InputChannel, UserMessage, register
from rasa.core.tracker_store import InMemoryTrackerStore
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import UserUttered
from sanic import Sanic
from twilio.request_validator import RequestValidator

from credia.processes import ManagedProcess, free_port

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "test-twilio-auth-token"
Params = Sequence[Tuple[str, str]]


def twilio_sign(auth_token: str, url: str, params: Params) -> str:
    """The ``X-Twilio-Signature`` Twilio would send, computed by Twilio's own helper library."""
    return RequestValidator(auth_token).compute_signature(url, dict(params))


def post_signed(
    url: str, params: Params, auth_token: str = AUTH_TOKEN, signed_url: Optional[str] = None, **headers: str
) -> requests.Response:
    """POST form fields as Twilio does, signed for ``signed_url`` (the public URL Twilio called) or ``url``."""
    signature = twilio_sign(auth_token, signed_url or url, params)
    return requests.post(url, data=list(params), headers={"X-Twilio-Signature": signature, **headers}, timeout=30)


class FakeTwilioProcess:
    """``python -m credia.channels.fake_twilio`` on a free port, accepting ``ACCOUNT_SID``/``AUTH_TOKEN``."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.process = ManagedProcess(
            name="fake-twilio",
            command=[sys.executable, "-m", "credia.channels.fake_twilio", "--port", str(self.port)],
            health_url=f"{self.url}/health",
            env={"TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN},
            log_path=directory / "fake_twilio.log",
            cwd=PROJECT_ROOT,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process.start()
        self.process.wait_healthy(30)

    def stop(self) -> None:
        self.process.stop()

    def messages(self, to: str) -> List[Dict[str, Any]]:
        response = requests.get(f"{self.url}/_test/messages", params={"to": to}, timeout=10)
        response.raise_for_status()
        return response.json()

    def accepted(self, to: str) -> List[Dict[str, Any]]:
        return [message for message in self.messages(to) if message["http_status"] == 201]

    def wait_accepted(self, to: str, count: int, timeout: float = 15.0) -> List[Dict[str, Any]]:
        """The messages Twilio accepted for ``to``, once there are ``count`` of them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            accepted = self.accepted(to)
            if len(accepted) >= count:
                return accepted
            time.sleep(0.05)
        raise AssertionError(f"expected {count} messages to {to}; got {self.messages(to)}\n{self.process.log_tail()}")

    def fail_next(self, error: int, **details: Any) -> None:
        response = requests.post(f"{self.url}/_test/failures", json={"error": error, **details}, timeout=10)
        assert response.status_code == 201, response.text


Reply = Dict[str, Any]


class ScriptedAgent:
    """Stands in for Rasa's agent: answers by script through the message's output channel, then stores the turn
    in a real tracker store like Rasa's processor does (bot events with ``data.buttons``)."""

    def __init__(self, script: Callable[[str], List[Reply]], delay: Callable[[str], float] = lambda _text: 0.0):
        self.script = script
        self.delay = delay
        self.tracker_store = InMemoryTrackerStore(Domain.empty())
        self.received: List[UserMessage] = []
        self.finished: List[UserMessage] = []

    async def handle_message(self, message: UserMessage) -> None:
        self.received.append(message)
        await asyncio.sleep(self.delay(message.text or ""))
        replies = self.script(message.text or "")
        tracker = await self.tracker_store.get_or_create_tracker(message.sender_id)
        tracker.update(UserUttered(message.text, input_channel=message.input_channel, metadata=message.metadata))
        for reply in replies:
            await message.output_channel.send_response(message.sender_id, dict(reply))
            tracker.update(create_bot_utterance(dict(reply)))
        await self.tracker_store.save(tracker)
        self.finished.append(message)

    def messages_from(self, sender: str) -> List[UserMessage]:
        return [message for message in self.received if message.sender_id == sender]

    def wait_received_from(self, sender: str, count: int, timeout: float = 15.0) -> List[UserMessage]:
        """The messages from ``sender`` that reached the bot, once there are ``count``."""
        return _wait(lambda: self.messages_from(sender), count, timeout, f"messages from {sender}")

    def wait_finished(self, sender: str, count: int, timeout: float = 15.0) -> List[UserMessage]:
        """The turns of ``sender`` the bot has completed, once there are ``count``."""
        finished = lambda: [message for message in self.finished if message.sender_id == sender]  # noqa: E731
        return _wait(finished, count, timeout, f"finished turns of {sender}")


def _wait(items: Callable[[], List[Any]], count: int, timeout: float, what: str) -> List[Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = items()
        if len(found) >= count:
            return found
        time.sleep(0.02)
    raise AssertionError(f"expected {count} {what}, got {len(items())}")


class ChannelServer:
    """A real Sanic server in a thread with ``channels`` registered under ``/webhooks/`` exactly as Rasa does."""

    def __init__(self, channels: Iterable[InputChannel], agent: ScriptedAgent, port: Optional[int] = None) -> None:
        self.port = port or free_port()
        # Sanic 21.12 rewrites some of its methods at each app start; test mode (as sanic-testing sets it) makes
        # several starts in one process work from the originals.
        self._test_mode, Sanic.test_mode = Sanic.test_mode, True
        self.app = Sanic(f"twilio_test_{uuid.uuid4().hex}", configure_logging=False)
        self.app.ctx.agent = agent
        register(list(channels), self.app, route="/webhooks/")
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="channel-server", daemon=True)
        self._ready = threading.Event()
        self._server: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self._server = self.loop.run_until_complete(
            self.app.create_server(host="127.0.0.1", port=self.port, return_asyncio_server=True, access_log=False)
        )
        self.loop.run_until_complete(self._server.startup())
        self.loop.run_until_complete(self._server.before_start())
        self.loop.run_until_complete(self._server.after_start())
        self._ready.set()
        self.loop.run_forever()

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(15), "channel server did not start"

    def stop(self) -> None:
        async def shutdown() -> None:
            await self._server.before_stop()
            self._server.close()
            await self._server.wait_closed()
            await self._server.after_stop()

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(15)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(15)
        Sanic.test_mode = self._test_mode
