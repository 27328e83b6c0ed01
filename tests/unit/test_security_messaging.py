"""Input limits on the channels that must answer 200 to their provider: WhatsApp and Twilio (SMS, WhatsApp).

A flood gets one polite "más despacio" on the customer's channel, not one per message, and the messages over the
limit never reach the bot; a message that is too long is explained and not processed.
"""

from __future__ import annotations

import time
from typing import Any, Iterator

import pytest

from credia.channels import guard as guard_module
from credia.channels.guard import FLOOD_REPLY, Guard, Limits, MemoryCounter
from tests.unit.test_twilio_channel import Setup, fake_twilio, new_customer, setup  # noqa: F401 (fixtures of that module, reused)
from tests.unit.test_whatsapp_channel import (  # noqa: F401 (fixtures)
    Meta,
    RecordingAgent,
    agent,
    bot_messages,
    config,
    graph,
    meta,
    new_sender,
    sanic_test_mode,
    server,
    text,
)

LIMIT, MAX_CHARS = 3, 80


@pytest.fixture(autouse=True)
def small_limits(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(guard_module, "_guard", Guard(Limits(messages_per_window=LIMIT, max_text_chars=MAX_CHARS),
                                                      MemoryCounter(), clock=lambda: 7200.0))
    yield


def test_whatsapp_flood_gets_one_polite_answer_and_the_excess_is_not_processed(
    meta: Meta, agent: RecordingAgent, graph: Any  # noqa: F811 (the fixtures imported above)
) -> None:
    customer = new_sender()
    for n in range(LIMIT + 3):
        assert meta.send(text(customer, f"mensaje {n}")).status_code == 200
    said = [m["text"]["body"] for m in bot_messages(graph, customer, LIMIT + 1)]
    assert sorted(said) == sorted([f"Recibido: mensaje {n}" for n in range(LIMIT)] + [FLOOD_REPLY])
    time.sleep(1.0)  # the messages over the limit had time to reach the bot, had they been let through
    assert len(graph.messages(to=customer, status="accepted")) == LIMIT + 1
    assert [m.text for m in agent.messages() if m.sender_id == customer] == [f"mensaje {n}" for n in range(LIMIT)]


def test_whatsapp_message_too_long_is_explained_and_not_processed(
    meta: Meta, agent: RecordingAgent, graph: Any  # noqa: F811 (the fixtures imported above)
) -> None:
    customer = new_sender()
    assert meta.send(text(customer, "x" * (MAX_CHARS + 1))).status_code == 200
    [answer] = bot_messages(graph, customer, 1)
    assert f"máximo {MAX_CHARS} caracteres" in answer["text"]["body"]
    assert [m for m in agent.messages() if m.sender_id == customer] == []


def test_twilio_flood_gets_one_polite_answer_and_the_excess_is_not_processed(setup: Setup) -> None:  # noqa: F811
    customer = new_customer()
    for n in range(LIMIT + 3):
        assert setup.send(customer, f"mensaje {n}").status_code == 200
    setup.fake.wait_accepted(customer, LIMIT + 1)
    time.sleep(1.0)
    bodies = [m["body"] for m in setup.fake.accepted(customer)]
    assert sorted(bodies) == sorted([f"Recibido: mensaje {n}" for n in range(LIMIT)] + [FLOOD_REPLY])
    assert [m.text for m in setup.agent.messages_from(customer)] == [f"mensaje {n}" for n in range(LIMIT)]


def test_twilio_message_too_long_is_explained_and_not_processed(setup: Setup) -> None:  # noqa: F811
    customer = new_customer()
    assert setup.send(customer, "x" * (MAX_CHARS + 1)).status_code == 200
    setup.fake.wait_accepted(customer, 1)
    assert f"máximo {MAX_CHARS} caracteres" in setup.fake.accepted(customer)[0]["body"]
    assert setup.agent.messages_from(customer) == []
