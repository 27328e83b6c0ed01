"""Fixtures that run the real assistant: every process started as `./assistant start` starts it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
import requests

from credia.channels.links import sign_conversation_link
from credia.launcher import Ports, build_processes, start_all, stop_all
from credia.processes import ManagedProcess, free_port


@pytest.fixture(scope="session")
def model() -> Path:
    """The trained model: the one `./assistant test` passes in, or trained now if inputs changed."""
    if os.environ.get("CREDIA_MODEL"):
        return Path(os.environ["CREDIA_MODEL"])
    from credia.devtools.model import ensure_model

    return ensure_model()


def free_ports() -> Ports:
    return Ports(core_banking=free_port(), payments=free_port(), actions=free_port(), rasa=free_port())


class Chat:
    """One customer talking to the bot through the REST channel."""

    def __init__(self, rasa_url: str, sender: str) -> None:
        self.url = f"{rasa_url}/webhooks/rest/webhook"
        self.sender = sender

    def send(self, message: str) -> list[dict]:
        """Send a message and return the bot's replies as the REST channel gives them (text, buttons)."""
        response = requests.post(self.url, json={"sender": self.sender, "message": message}, timeout=60)
        response.raise_for_status()
        return response.json()

    def say(self, message: str) -> str:
        """Send a message and return all the bot's reply texts joined by newlines."""
        return "\n".join(reply.get("text", "") for reply in self.send(message))


@dataclass
class Assistant:
    """Every process of the assistant, started for real on free ports and a fresh var directory."""

    processes: dict[str, ManagedProcess]
    ports: Ports

    @property
    def rasa_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.rasa}"

    @property
    def core_banking_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.core_banking}"

    @property
    def payments_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.payments}"

    def tracker(self, sender: str) -> dict:
        """The conversation as Rasa stores it, through its token-protected HTTP API."""
        token = self.processes["rasa"].env["RASA_AUTH_TOKEN"]
        response = requests.get(
            f"{self.rasa_url}/conversations/{sender}/tracker", params={"token": token}, timeout=30
        )
        response.raise_for_status()
        return response.json()

    def chat(self, sender: str) -> Chat:
        return Chat(self.rasa_url, sender)

    def webchat_session(self, sender: str) -> dict:
        """The ``session_request`` that joins ``sender``'s conversation on socket.io: its id and signed token."""
        secret = self.processes["rasa"].env["CONVERSATION_LINK_SECRET"]
        return {"session_id": sender, "session_token": sign_conversation_link(sender, secret=secret)}


# A Monday at 10:00 in Lima: the desk is open whatever time the tests run at (its clock runs on from there).
DESK_OPEN_AT = "2026-12-07T10:00:00-05:00"


@pytest.fixture(scope="session")
def assistant(model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Assistant]:
    """One running assistant for the end-to-end tests that only talk to it (each uses its own senders)."""
    ports = free_ports()
    processes = build_processes(model, tmp_path_factory.mktemp("assistant") / "var", ports)
    processes["desk"].env = {**processes["desk"].env, "DESK_CLOCK_START": DESK_OPEN_AT}
    try:
        start_all(processes)
        yield Assistant(processes, ports)
    finally:
        stop_all(processes)
