"""One Rasa event broker that hands every event to several: Rasa 3.6 takes exactly one ``event_broker``.

The scaled-out configuration needs two: RabbitMQ (Rasa's ``pika`` broker), which feeds the metrics store
(``credia.analytics.consumer``), and the handoff forwarder (``credia.handoff.forwarder.DeskForwarder``), which
sends customer messages of paused conversations to the agent desk. In endpoints.yml::

    event_broker:
      type: credia.brokers.FanOutBroker
      brokers:
        - type: pika
          url: amqp://guest:guest@127.0.0.1:5672/
          queues: [credia_events]
        - type: credia.handoff.forwarder.DeskForwarder

A failing broker never stops the others from receiving the event, nor the conversation.
"""

from __future__ import annotations

import logging
from asyncio import AbstractEventLoop
from typing import Any, Dict, List, Optional

from rasa.core.brokers.broker import EventBroker
from rasa.utils.endpoints import EndpointConfig

logger = logging.getLogger(__name__)


class FanOutBroker(EventBroker):
    def __init__(self, brokers: List[EventBroker]) -> None:
        self.brokers = brokers

    @classmethod
    async def from_endpoint_config(
        cls, broker_config: EndpointConfig, event_loop: Optional[AbstractEventLoop] = None
    ) -> "FanOutBroker":
        configs = broker_config.kwargs.get("brokers") or []
        if not configs:
            raise ValueError("FanOutBroker needs a list of brokers under 'brokers'")
        brokers = []
        for config in configs:
            broker = await EventBroker.create(EndpointConfig.from_dict(config), event_loop)
            if broker is None:
                raise ValueError(f"event broker {config.get('type')!r} could not be created")
            brokers.append(broker)
        return cls(brokers)

    def publish(self, event: Dict[str, Any]) -> None:
        for broker in self.brokers:
            try:
                broker.publish(event)
            except Exception:  # one broker's failure must not cost the others their event
                logger.exception("event broker %s failed to publish", type(broker).__name__)

    def is_ready(self) -> bool:
        return all(broker.is_ready() for broker in self.brokers)

    async def close(self) -> None:
        for broker in self.brokers:
            await broker.close()
