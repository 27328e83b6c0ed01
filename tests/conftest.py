"""Fixtures shared by the unit and end-to-end tests."""

from __future__ import annotations

from typing import Iterator

import pytest

from tests.unit.fake_receiver import FakeReceiver


@pytest.fixture(scope="module")
def fake_rasa() -> Iterator[FakeReceiver]:
    """A stand-in for Rasa's HTTP API and webhooks that records what a service sends it (the desk's messages, the
    payments webhooks; one per test module)."""
    receiver = FakeReceiver()
    receiver.start()
    yield receiver
    receiver.stop()
