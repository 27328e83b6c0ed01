"""Live updates for open consoles: an in-process publish/subscribe feeding the server-sent event streams.

Events are published from request threads and from the outbox worker, and consumed by async stream handlers,
so publishing hands each event to the event loop thread-safely. One desk process serves one set of consoles;
several desk processes behind a balancer would need a shared bus (e.g. PostgreSQL LISTEN/NOTIFY) here.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Set


@dataclass(frozen=True)
class DeskEvent:
    """``kind``: handoff_created, customer_message, assigned, resolved, message, delivery, agents, ticket."""

    kind: str
    handoff_id: Optional[int] = None
    agent_id: Optional[int] = None  # who the conversation is assigned to, when it is
    data: Dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> Dict[str, Any]:
        return {"type": self.kind, "handoff_id": self.handoff_id, **self.data}


class Broker:
    def __init__(self) -> None:
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._queues: Set[asyncio.Queue] = set()
        self._lock = threading.Lock()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Called once the server's event loop runs; events published before are nobody's to receive."""
        self._loop = loop

    def subscribe(self) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue(maxsize=1000)
        with self._lock:
            self._queues.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        with self._lock:
            self._queues.discard(queue)

    def publish(self, event: DeskEvent) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with self._lock:
            queues = list(self._queues)
        for queue in queues:
            loop.call_soon_threadsafe(_offer, queue, event)

    def close(self) -> None:
        """End every stream (``None`` tells a stream to finish)."""
        loop = self._loop
        with self._lock:
            queues = list(self._queues)
        if loop is not None and not loop.is_closed():
            for queue in queues:
                loop.call_soon_threadsafe(_offer, queue, None)


def _offer(queue: asyncio.Queue, event: Optional[DeskEvent]) -> None:
    """A console that stopped reading loses events rather than memory; it refreshes on its next event."""
    try:
        queue.put_nowait(event)
    except asyncio.QueueFull:
        pass
