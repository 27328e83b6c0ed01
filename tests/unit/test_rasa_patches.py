"""The patched action-result validation accepts and refuses exactly what Rasa's does, without re-checking the
schema on every call."""

from __future__ import annotations

import asyncio

import jsonschema
import pytest
from jsonschema import ValidationError
from rasa.core.actions.action import RemoteAction
from rasa.core.agent import Agent

import credia.tracker_store  # noqa: F401  (installs the patches, as Rasa does when it loads the tracker store)
from credia import rasa_patches

VALID = {"events": [{"event": "slot", "name": "amount", "value": 5000, "timestamp": None}],
         "responses": [{"text": "Listo"}]}
INVALID = [{"events": [{"event": "no_such_event"}], "responses": []}, {"responses": "not a list"}, {"events": 3}]


def test_valid_results_pass_and_invalid_ones_raise_rasas_error(monkeypatch) -> None:
    schema = RemoteAction.action_response_format_spec()
    jsonschema.validate(VALID, schema)
    for result in INVALID:
        with pytest.raises(ValidationError):
            jsonschema.validate(result, schema)  # what Rasa's own validation refuses

    action = RemoteAction("action_x", None)
    checks = []
    monkeypatch.setattr(jsonschema.validators.Draft202012Validator, "check_schema",
                        classmethod(lambda cls, checked: checks.append(checked)))
    for _ in range(3):
        assert action._validate_action_result(VALID) is True
    for result in INVALID:
        with pytest.raises(ValidationError, match="Failed to validate Action server response"):
            action._validate_action_result(result)
    assert len(checks) <= 1  # the constant schema is checked once at most, not once per response


async def test_at_most_the_configured_number_of_messages_are_handled_at_once(monkeypatch) -> None:
    monkeypatch.setenv("RASA_CONCURRENT_MESSAGES", "2")
    monkeypatch.setattr(rasa_patches, "_admission", None)
    running, most, order = 0, 0, []

    async def handle(_agent: object, message: str) -> list:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01)  # a turn that waits for the action server
        running -= 1
        order.append(message)
        return []

    monkeypatch.setattr(rasa_patches, "_original_handle_message", handle)
    await asyncio.gather(*(Agent.handle_message(None, f"m{n}") for n in range(8)))  # type: ignore[arg-type]
    assert most == 2
    assert order == [f"m{n}" for n in range(8)]  # admitted in arrival order
