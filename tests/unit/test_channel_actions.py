"""The action that moves a conversation to the web chat hands out a link to this very conversation."""

from __future__ import annotations

import re

import pytest
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from actions.channels import ActionSendWebLink
from credia.channels.links import verify_conversation_token


async def test_the_web_link_opens_the_same_conversation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVERSATION_LINK_SECRET", "a-test-secret-of-enough-length-123456")
    monkeypatch.setenv("WEBCHAT_PUBLIC_URL", "https://chat.credia.example")
    tracker = Tracker("51987654321", {}, {}, [], False, None, {}, "action_listen")
    dispatcher = CollectingDispatcher()

    assert await ActionSendWebLink().run(dispatcher, tracker, {}) == []

    [message] = dispatcher.messages
    url = re.search(r"https://chat\.credia\.example/\S+", message["text"]).group(0)
    token = re.search(r"[?&]t=([^&\s]+)", url).group(1)
    assert verify_conversation_token(token) == "51987654321"
    assert "30 minutos" in message["text"]
