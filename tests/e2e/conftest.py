"""Fixtures that run the real assistant: every process started as `./assistant start` starts it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import requests

from credia.launcher import Ports
from credia.processes import free_port


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

    def say(self, message: str) -> str:
        """Send a message and return all the bot's reply texts joined by newlines."""
        response = requests.post(self.url, json={"sender": self.sender, "message": message}, timeout=60)
        response.raise_for_status()
        return "\n".join(reply.get("text", "") for reply in response.json())
