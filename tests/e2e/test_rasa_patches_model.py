"""The prediction patches of ``credia.rasa_patches`` change how fast the trained model answers, never what it
answers: on the project's own model, DIET's and TED's outputs, the graph Rasa runs and the policy ensemble's choice
are those of Rasa's code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio
from rasa.core.agent import Agent, load_agent
from rasa.core.policies.ted_policy import TEDPolicy
from rasa.engine.graph import GraphSchema
from rasa.engine.runner.dask import DaskGraphRunner
from rasa.utils.tensorflow.models import RasaModel

from credia import rasa_patches

MESSAGES = ["hola", "¿cuánto pagaría si pido 5 mil a 12 meses?", "kiero un prestamo", "40236715", "no entiendo nada"]


pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def agent(model: Path) -> Agent:
    rasa_patches.install()
    return await load_agent(model_path=str(model))


def ted_of(agent: Agent) -> TEDPolicy:
    runner = agent.processor.graph_runner
    return next(node._component for node in runner._instantiated_nodes.values()  # type: ignore[attr-defined]
                if isinstance(node._component, TEDPolicy))


async def predictions(agent: Agent, sender: str) -> list[tuple[dict, list[float]]]:
    """For each message: the NLU parse and TED's action probabilities after it."""
    found = []
    ted = ted_of(agent)
    for text in MESSAGES:
        parsed = await agent.parse_message(text)
        await agent.handle_text(text, sender_id=sender)
        tracker = await agent.tracker_store.retrieve(sender)
        found.append((parsed, ted.predict_action_probabilities(tracker, agent.domain).probabilities))
    return found


async def test_diet_and_ted_predict_what_rasas_own_call_predicts(agent: Agent, monkeypatch) -> None:
    patched = await predictions(agent, "patched")
    assert all(getattr(model, rasa_patches.CONCRETE_PREDICT, None) is not None
               for model in (ted_of(agent).model,))  # the fast path was the one taken
    monkeypatch.setattr(RasaModel, "_rasa_predict", rasa_patches._original_rasa_predict)
    original = await predictions(agent, "original")

    for (ours, our_actions), (theirs, their_actions) in zip(patched, original):
        assert ours["intent"]["name"] == theirs["intent"]["name"]
        np.testing.assert_allclose([i["confidence"] for i in ours["intent_ranking"]],
                                   [i["confidence"] for i in theirs["intent_ranking"]], rtol=1e-5, atol=1e-6)
        assert [(e["entity"], e["value"]) for e in ours["entities"]] == \
            [(e["entity"], e["value"]) for e in theirs["entities"]]
        np.testing.assert_allclose(our_actions, their_actions, rtol=1e-5, atol=1e-6)


def test_the_graph_rasa_runs_is_the_same_and_computed_once(agent: Agent, monkeypatch) -> None:
    schema = agent.processor.model_metadata.predict_schema
    targets = [name for name in schema.nodes if "select_prediction" in name or name == "run_RegexMessageHandler"]
    assert targets
    calls = []
    original = rasa_patches._original_minimal_graph_schema

    def counted(self: GraphSchema, wanted: list[str] | None = None) -> GraphSchema:
        calls.append(wanted)
        return original(self, wanted)

    fresh = GraphSchema(dict(schema.nodes))
    monkeypatch.setattr(rasa_patches, "_original_minimal_graph_schema", counted)
    for _ in range(3):
        assert fresh.minimal_graph_schema(targets).nodes == original(fresh, targets).nodes
    assert len(calls) == 1


CONVERSATIONS = [
    ["hola", "¿qué créditos tienen?", "¿cuáles son los requisitos?", "gracias"],
    ["buenas", "kiero un prestamo personal", "cancelar", "quiero hablar con un asesor"],
    ["¿cuánto debo?", "no sé mi dni", "40236715", "21/07/1990", "no puedo pagar, perdí mi trabajo"],
    ["ola", "asdfgh", "el clima está lindo", "¿qué tasa tienen?", "chau"],
]


async def test_asking_the_rules_first_picks_what_the_whole_ensemble_picks(agent: Agent, monkeypatch) -> None:
    """At every prediction of varied conversations (rules, forms, fallbacks, TED's own turns), the shortcut's
    choice is the full ensemble's: same policy, action scores, events and flags."""
    plan = rasa_patches.rules_first(agent.processor.graph_runner)
    assert plan is not None and plan.outranked  # the project's ensemble qualifies
    seen = {"rule certain": 0, "others consulted": 0}

    def compared(self: DaskGraphRunner, inputs: dict | None = None, targets: list | None = None) -> dict:
        ours = rasa_patches._graph_run(self, inputs, targets)
        if targets == [plan.ensemble]:
            theirs = rasa_patches._original_graph_run(self, inputs, targets)[plan.ensemble]
            mine = ours[plan.ensemble]
            assert (mine.policy_name, mine.probabilities, mine.events, mine.optional_events,
                    mine.is_no_user_prediction, mine.is_end_to_end_prediction, mine.hide_rule_turn) == \
                (theirs.policy_name, theirs.probabilities, theirs.events, theirs.optional_events,
                 theirs.is_no_user_prediction, theirs.is_end_to_end_prediction, theirs.hide_rule_turn)
            certain = theirs.policy_name == "RulePolicy" and theirs.max_confidence >= 1.0
            seen["rule certain" if certain else "others consulted"] += 1
        return ours

    monkeypatch.setattr(DaskGraphRunner, "run", compared)
    for number, messages in enumerate(CONVERSATIONS):
        for text in messages:
            await agent.handle_text(text, sender_id=f"rules-first-{number}")
    assert seen["rule certain"] > 10 and seen["others consulted"] > 0, seen


def test_the_rules_are_not_asked_first_when_a_rejected_action_changes_the_scores() -> None:
    from rasa.shared.core.events import ActionExecuted, ActionExecutionRejected, UserUttered
    from rasa.shared.core.trackers import DialogueStateTracker

    rejected = DialogueStateTracker.from_events("c", [ActionExecuted("action_listen"), UserUttered("hola"),
                                                      ActionExecutionRejected("simulation_form")])
    listening = DialogueStateTracker.from_events("c", [ActionExecuted("action_listen"), UserUttered("hola")])
    assert rasa_patches._last_action_rejected(rejected) and not rasa_patches._last_action_rejected(listening)
