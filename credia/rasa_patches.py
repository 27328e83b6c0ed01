"""Targeted fixes to Rasa 3.6 for speed under load; each keeps Rasa's behaviour and says why it exists.

``install()`` is called when Rasa loads ``credia.tracker_store`` (named in endpoints.yml), so every Rasa server
of the project runs with them; it is idempotent.

- ``RemoteAction._validate_action_result`` calls ``jsonschema.validate`` on every action server response, and
  ``jsonschema.validate`` first checks the (constant) schema itself against the JSON Schema meta-schema: under
  load that was about a quarter of the Rasa server's CPU time. The patch validates against a validator built once
  for the same schema, raising the same ``ValidationError`` with the same message.
- ``Agent.handle_message`` admits at most ``RASA_CONCURRENT_MESSAGES`` (2) messages at a time, the others wait
  their turn in arrival order. Rasa interleaves every message in progress on one event loop, so without a limit a
  turn that waits for the action server three times queues behind every other customer three times: with 50
  customers talking, those turns took 4-5 s while simple ones took 0.3 s. Admission in order keeps the same
  throughput and roughly halves the slowest replies (the benchmark, ``credia.devtools.benchmark``, shows it);
  limits of 1, 2 and 4 measured alike on REST; 1 and 2 gave WhatsApp's replies a lower p95 than 4.
- ``RasaModel._rasa_predict`` (DIET, TED) calls its ``tf.function`` with the batch, and TensorFlow matches the
  batch's nested structure against the function's signature on every call before running the graph, a Python
  walk over dozens of arrays that cost more than the graph itself. The signature is fixed (Rasa builds it from
  the first batch with every dimension left open), so the patch resolves the concrete function once and calls it
  with the batch's tensors; the same graph runs on the same inputs. Under load: 29 → 39 messages a second.
- ``DaskGraphRunner.run`` asks every policy for each next action, then keeps the most confident one, the
  RulePolicy's on a tie (highest priority). When a rule applies, its prediction has confidence 1.0 and wins
  whatever TED and memoization say, so their work is wasted; TED alone was about 40% of the server's time under
  load, and most turns of this assistant follow rules (forms, menus, answers). The patch runs the RulePolicy
  first and, when it is certain, gives the others' places in the ensemble a prediction of zeros, so the ensemble
  picks exactly what it would have picked. It stands aside (everything runs as in Rasa) whenever that could
  differ: the last action was rejected (the ensemble then zeroes that action in every prediction), TED was trained
  end to end (its text-based predictions overrule intent-based ones), or the ensemble has any policy other than
  one RulePolicy, TED and memoization, or a policy ranked above the RulePolicy.
- ``GraphSchema.minimal_graph_schema`` walks the prediction graph from the targets on every run (twice or more
  per message: parsing, then each action prediction), recursing without memory; the schema never changes once
  loaded, so the patch keeps each result per targets.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Dict, List, Optional, Tuple

import tensorflow as tf
from jsonschema import ValidationError
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for
from keras.utils import tf_utils
from rasa.core.actions.action import RemoteAction
from rasa.core.agent import Agent
from rasa.core.channels.channel import UserMessage
from rasa.core.policies.ensemble import PolicyPredictionEnsemble
from rasa.core.policies.memoization import MemoizationPolicy
from rasa.core.policies.policy import Policy
from rasa.core.policies.rule_policy import RulePolicy
from rasa.core.policies.ted_policy import TEDPolicy
from rasa.core.policies.unexpected_intent_policy import UnexpecTEDIntentPolicy
from rasa.engine.constants import PLACEHOLDER_TRACKER
from rasa.engine.graph import GraphSchema
from rasa.engine.runner.dask import DaskGraphRunner
from rasa.shared.constants import DIAGNOSTIC_DATA, DOCS_BASE_URL
from rasa.shared.core.events import ActionExecuted, ActionExecutionRejected
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.nlu.constants import TEXT
from rasa.utils.tensorflow.models import RasaModel

from credia import settings


@lru_cache(maxsize=1)
def _action_result_validator() -> Validator:
    schema = RemoteAction.action_response_format_spec()
    validator_class = validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema)


def _validate_action_result(self: RemoteAction, result: Dict[str, Any]) -> bool:
    try:
        _action_result_validator().validate(result)
        return True
    except ValidationError as error:
        error.message += (
            ". Failed to validate Action server response from API, make sure your response from the Action "
            f"endpoint is valid. For more information about the format visit {DOCS_BASE_URL}/custom-actions"
        )
        raise error


_original_handle_message = Agent.handle_message
_admission: Optional[asyncio.Semaphore] = None


async def _handle_message(self: Agent, message: UserMessage) -> Optional[List[Dict[str, Any]]]:
    global _admission
    if _admission is None:
        limit = settings.env_int("RASA_CONCURRENT_MESSAGES", 2)
        if limit < 1:
            raise ValueError(f"RASA_CONCURRENT_MESSAGES must be at least 1, not {limit}")
        _admission = asyncio.Semaphore(limit)
    async with _admission:
        return await _original_handle_message(self, message)


_original_rasa_predict = RasaModel._rasa_predict
# Attribute of a RasaModel: its prediction function, resolved once for its fixed signature.
CONCRETE_PREDICT = "_credia_concrete_predict"


def _rasa_predict(self: RasaModel, batch_in: Tuple[Any, ...]) -> Dict[str, Any]:
    if self._run_eagerly:
        return _original_rasa_predict(self, batch_in)
    concrete = getattr(self, CONCRETE_PREDICT, None)
    if concrete is None:
        _original_rasa_predict(self, batch_in)  # prepares the model and builds its tf.function, as Rasa does
        concrete = self._tf_predict_step.get_concrete_function()
        setattr(self, CONCRETE_PREDICT, concrete)
    self._training = False
    tensors = [tf.convert_to_tensor(value) for value in batch_in]
    outputs = tf_utils.sync_to_numpy_or_python_type(concrete._call_flat(tensors, concrete.captured_inputs))
    if DIAGNOSTIC_DATA in outputs:
        outputs[DIAGNOSTIC_DATA] = self._empty_lists_to_none_in_dict(outputs[DIAGNOSTIC_DATA])
    return outputs


_original_minimal_graph_schema = GraphSchema.minimal_graph_schema
# Attribute of a GraphSchema: its minimal schemas by targets.
MINIMAL_SCHEMAS = "_credia_minimal_schemas"


def _minimal_graph_schema(self: GraphSchema, targets: Optional[List[str]] = None) -> GraphSchema:
    known = self.__dict__.setdefault(MINIMAL_SCHEMAS, {})
    key = tuple(targets) if targets else None
    if key not in known:
        known[key] = _original_minimal_graph_schema(self, targets)
    return known[key]


@dataclass(frozen=True)
class RulesFirst:
    """Where a prediction run can ask the RulePolicy first: the nodes of the ensemble, of the domain, of the
    RulePolicy, and of the policies a certain rule makes irrelevant."""

    ensemble: str
    domain: str
    rules: str
    outranked: Tuple[str, ...]


# Attribute of a DaskGraphRunner: its RulesFirst plan, or None when the shortcut could change a prediction.
RULES_FIRST = "_credia_rules_first"


def rules_first(runner: DaskGraphRunner) -> Optional[RulesFirst]:
    """The runner's plan, worked out once (its graph and components never change once loaded)."""
    if not hasattr(runner, RULES_FIRST):
        setattr(runner, RULES_FIRST, _plan_rules_first(runner))
    return getattr(runner, RULES_FIRST)


def _plan_rules_first(runner: DaskGraphRunner) -> Optional[RulesFirst]:
    nodes = runner._graph_schema.nodes
    ensembles = [name for name, node in nodes.items() if issubclass(node.uses, PolicyPredictionEnsemble)]
    if len(ensembles) != 1 or "domain" not in nodes[ensembles[0]].needs:
        return None
    needs = nodes[ensembles[0]].needs
    components = {name: node._component for name, node in runner._instantiated_nodes.items()}  # type: ignore
    policies = {name: components[name] for name in needs.values()
                if name in nodes and issubclass(nodes[name].uses, Policy)}
    rules = [name for name, policy in policies.items() if isinstance(policy, RulePolicy)]
    if len(rules) != 1:
        return None
    outranked = tuple(name for name in policies if name != rules[0])
    for name in outranked:
        policy = policies[name]
        if isinstance(policy, UnexpecTEDIntentPolicy) or not isinstance(policy, (TEDPolicy, MemoizationPolicy)):
            return None
        if isinstance(policy, TEDPolicy) and TEXT in policy.fake_features:
            return None
        if policy.priority >= policies[rules[0]].priority:
            return None
    return RulesFirst(ensembles[0], needs["domain"], rules[0], outranked)


def _last_action_rejected(tracker: DialogueStateTracker) -> bool:
    last = next((event for event in reversed(tracker.events)
                 if isinstance(event, (ActionExecuted, ActionExecutionRejected))), None)
    return isinstance(last, ActionExecutionRejected)


_original_graph_run = DaskGraphRunner.run


def _graph_run(
    self: DaskGraphRunner, inputs: Optional[Dict[str, Any]] = None, targets: Optional[List[str]] = None
) -> Dict[str, Any]:
    plan = rules_first(self)
    tracker = (inputs or {}).get(PLACEHOLDER_TRACKER)
    if plan is None or targets != [plan.ensemble] or not isinstance(tracker, DialogueStateTracker) \
            or _last_action_rejected(tracker):
        return _original_graph_run(self, inputs, targets)
    first = _original_graph_run(self, inputs, [plan.rules, plan.domain])
    # Not the domain: dask hashes what it is given, and a Domain's hash is a fingerprint of all of it.
    known: Dict[str, Any] = {**(inputs or {}), plan.rules: first[plan.rules]}
    if first[plan.rules].max_confidence >= 1.0:
        domain = first[plan.domain]
        for name in plan.outranked:
            policy = self._instantiated_nodes[name]._component  # type: ignore[attr-defined]
            known[name] = policy._prediction(policy._default_predictions(domain))
    # Rasa feeds each input to the graph as the output of a node of that name, so these replace the nodes.
    return _original_graph_run(self, known, targets)


def install() -> None:
    RemoteAction._validate_action_result = _validate_action_result  # type: ignore[method-assign]
    Agent.handle_message = _handle_message  # type: ignore[method-assign]
    RasaModel._rasa_predict = _rasa_predict  # type: ignore[method-assign]
    GraphSchema.minimal_graph_schema = _minimal_graph_schema  # type: ignore[method-assign]
    DaskGraphRunner.run = _graph_run  # type: ignore[method-assign]

