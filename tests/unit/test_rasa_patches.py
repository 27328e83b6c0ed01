"""The patched action-result validation accepts and refuses exactly what Rasa's does, without re-checking the
schema on every call."""

from __future__ import annotations

import jsonschema
import pytest
from jsonschema import ValidationError
from rasa.core.actions.action import RemoteAction

import credia.tracker_store  # noqa: F401  (installs the patches, as Rasa does when it loads the tracker store)

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
