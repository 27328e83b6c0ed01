"""The metrics store of the scaled-out configuration, fed by RabbitMQ.

Every Rasa server publishes every conversation event to RabbitMQ (``credia.brokers.FanOutBroker``). This consumer
writes them into an ``events`` table shaped like Rasa's own tracker table, in a database of its own, so the
reports and the supervisors' dashboard (``credia.analytics``) read the metrics without loading the tracker store
that serves the conversations. A message is acknowledged only after its row is committed, and each event has a
key (a hash of the conversation and the event), so a redelivery after a crash is stored once. Rows keep the id
the event has in the tracker store (``credia.analytics.sessions.EVENT_ID``), so they read back in the order the
conversation happened even when RabbitMQ delivers two servers' events out of order.

    python -m credia.analytics.consumer --amqp-url amqp://guest:guest@127.0.0.1:5672/ --queue credia_events \
        --db postgresql://postgres@127.0.0.1:5432/credia_analytics
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
from typing import Any, Optional

import aio_pika
import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine

from credia import settings
from credia.analytics.sessions import EVENT_ID, EVENTS
from credia.db import make_engine

logger = logging.getLogger(__name__)

METADATA = sa.MetaData()
# Rasa's columns (what credia.analytics reads) plus the key that makes a redelivered event a no-op.
STORED_EVENTS = sa.Table(
    EVENTS.name,
    METADATA,
    *(column._copy() for column in EVENTS.columns),
    sa.Column("event_key", sa.String(64), nullable=False, unique=True),
)
sa.Index("ix_events_sender_timestamp", STORED_EVENTS.c.sender_id, STORED_EVENTS.c.timestamp)


def row_of(event: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The table row of one published event, as Rasa's SQL tracker store would write it; None if unusable."""
    sender_id = event.get("sender_id")
    kind = event.get("event")
    if not sender_id or not kind:
        return None
    data = {key: value for key, value in event.items() if key not in ("sender_id", EVENT_ID)}
    serialized = json.dumps(data, sort_keys=True)
    parse_data = data.get("parse_data") or {}
    # The tracker store's row id, so the rows read back in the store's order whatever order RabbitMQ delivered
    # them in (two Rasa servers publish one conversation's turns one after the other).
    ordering = {"id": event[EVENT_ID]} if isinstance(event.get(EVENT_ID), int) else {}
    return {
        **ordering,
        "sender_id": str(sender_id),
        "type_name": str(kind),
        "timestamp": data.get("timestamp"),
        "intent_name": (parse_data.get("intent") or {}).get("name"),
        "action_name": data.get("name"),
        "data": json.dumps(data),
        "event_key": hashlib.sha256(f"{sender_id}\n{serialized}".encode()).hexdigest(),
    }


class EventStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        METADATA.create_all(engine)
        self._insert = postgresql_insert if engine.dialect.name == "postgresql" else sqlite_insert

    def add(self, rows: list[dict[str, Any]]) -> None:
        """Store the rows in one transaction; rows already stored (same key or id) are skipped."""
        if not rows:
            return
        statement = self._insert(STORED_EVENTS).on_conflict_do_nothing()
        with self.engine.begin() as connection:
            connection.execute(statement, rows)


async def consume(amqp_url: str, queue_name: str, exchange_name: str, store: EventStore) -> None:
    """Consume for ever; aio_pika's robust connection reconnects when RabbitMQ restarts."""
    connection = await aio_pika.connect_robust(amqp_url)
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=200)
    exchange = await channel.declare_exchange(exchange_name, type=aio_pika.ExchangeType.FANOUT)
    queue = await channel.declare_queue(queue_name, durable=True)
    await queue.bind(exchange, "")
    async with queue.iterator() as messages:
        async for message in messages:
            try:
                event = json.loads(message.body)
                row = row_of(event) if isinstance(event, dict) else None
            except ValueError:
                row = None
            if row is None:
                logger.warning("dropping an event that is not a Rasa event")
                await message.reject(requeue=False)
                continue
            await asyncio.to_thread(store.add, [row])
            await message.ack()


async def serve(args: argparse.Namespace) -> None:
    store = EventStore(make_engine(args.db))

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/health", health)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.port).start()
    await consume(args.amqp_url, args.queue, args.exchange, store)


def main() -> None:
    parser = argparse.ArgumentParser(description="Store the events Rasa publishes to RabbitMQ for the metrics.")
    parser.add_argument("--amqp-url", default=settings.env("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/"))
    parser.add_argument("--queue", default=settings.env("RABBITMQ_EVENTS_QUEUE", "credia_events"))
    parser.add_argument("--exchange", default=settings.env("RABBITMQ_EXCHANGE", "rasa-exchange"))
    parser.add_argument("--db", default=settings.env("ANALYTICS_DATABASE_URL", settings.sqlite_url("analytics.db")))
    parser.add_argument("--port", type=int, default=settings.env_int("ANALYTICS_CONSUMER_PORT", 8005))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s  %(message)s")
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
