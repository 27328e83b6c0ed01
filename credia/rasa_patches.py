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
- ``GraphSchema.minimal_graph_schema`` walks the prediction graph from the targets on every run (twice or more
  per message: parsing, then each action prediction), recursing without memory; the schema never changes once
  loaded, so the patch keeps each result per targets.
"""

from __future__ import annotations

import asyncio
from functools import lru_cache
from typing import Any, Dict, List, Optional, Tuple

import tensorflow as tf
from keras.utils import tf_utils

from jsonschema import ValidationError
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for
from rasa.core.actions.action import RemoteAction
from rasa.core.agent import Agent
from rasa.core.channels.channel import UserMessage
from rasa.engine.graph import GraphSchema
from rasa.shared.constants import DIAGNOSTIC_DATA, DOCS_BASE_URL
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


def install() -> None:
    RemoteAction._validate_action_result = _validate_action_result  # type: ignore[method-assign]
    Agent.handle_message = _handle_message  # type: ignore[method-assign]
    RasaModel._rasa_predict = _rasa_predict  # type: ignore[method-assign]
    GraphSchema.minimal_graph_schema = _minimal_graph_schema  # type: ignore[method-assign]

