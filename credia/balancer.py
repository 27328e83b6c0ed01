"""A small TCP load balancer for the scaled-out configuration: several Rasa servers behind one address, several
action servers behind another.

Each accepted connection goes to the next backend in turn (round robin). A backend that refuses the connection
(stopped, restarting) is skipped and marked down for a few seconds, so a customer's request reaches a live server
as long as one is up: that is what lets one Rasa server be restarted while conversations go on. Working on TCP
keeps HTTP, keep-alive and WebSocket upgrades untouched; the price is that a kept-alive connection stays on one
backend, which is what clients expect anyway.

It is not meant to replace nginx or a cloud load balancer in production; it stands in for one so that the tests
and the benchmark run the real topology on one machine.

    python -m credia.balancer --listen 5005=127.0.0.1:5105,127.0.0.1:5205 --listen 5055=127.0.0.1:5155,...
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import time
from dataclasses import dataclass, field

from aiohttp import web

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = 2.0
DOWN_SECONDS = 3.0
BUFFER = 64 * 1024


@dataclass
class Backend:
    host: str
    port: int
    down_until: float = 0.0

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass
class Pool:
    """The backends of one listening port, taken in turn, skipping those recently found down."""

    backends: list[Backend]
    _turn: itertools.count = field(default_factory=itertools.count)
    connections: dict[str, int] = field(default_factory=dict)  # backend address -> connections sent there

    def order(self) -> list[Backend]:
        """Every backend once, starting with the next in turn; those marked down go last."""
        start = next(self._turn) % len(self.backends)
        turn = self.backends[start:] + self.backends[:start]
        now = time.monotonic()
        return [b for b in turn if b.down_until <= now] + [b for b in turn if b.down_until > now]

    async def connect(self) -> tuple[Backend, asyncio.StreamReader, asyncio.StreamWriter]:
        """A connection to the first backend that accepts one; ``ConnectionError`` when none does."""
        for backend in self.order():
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(backend.host, backend.port), CONNECT_TIMEOUT
                )
            except (OSError, asyncio.TimeoutError):
                backend.down_until = time.monotonic() + DOWN_SECONDS
                logger.warning("backend %s is down; trying the next one", backend.address)
                continue
            backend.down_until = 0.0
            self.connections[backend.address] = self.connections.get(backend.address, 0) + 1
            return backend, reader, writer
        raise ConnectionError("no backend accepts connections")


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(BUFFER):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        if writer.can_write_eof():
            try:
                writer.write_eof()
            except (ConnectionError, OSError):
                pass


SERVICE_UNAVAILABLE = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
    b"Content-Length: 38\r\n\r\n{\"error\": \"no backend is available\"}\r\n"
)


def handler(pool: Pool):  # type: ignore[no-untyped-def]
    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            _, reader, writer = await pool.connect()
        except ConnectionError:
            client_writer.write(SERVICE_UNAVAILABLE)
            await client_writer.drain()
            client_writer.close()
            return
        await asyncio.gather(_pipe(client_reader, writer), _pipe(reader, client_writer))
        writer.close()
        client_writer.close()

    return handle


def parse_listen(value: str) -> tuple[int, list[Backend]]:
    """``5005=127.0.0.1:5105,127.0.0.1:5205`` → (5005, [backends])."""
    port, _, targets = value.partition("=")
    backends = []
    for target in targets.split(","):
        host, _, target_port = target.strip().rpartition(":")
        backends.append(Backend(host or "127.0.0.1", int(target_port)))
    if not port.isdigit() or not backends:
        raise argparse.ArgumentTypeError(f"expected PORT=HOST:PORT[,HOST:PORT...], got {value!r}")
    return int(port), backends


async def serve(listeners: list[tuple[int, list[Backend]]], health_port: int) -> None:
    pools = {port: Pool(backends) for port, backends in listeners}
    servers = [await asyncio.start_server(handler(pool), "127.0.0.1", port) for port, pool in pools.items()]

    async def health(_: web.Request) -> web.Response:
        """Which backend received how many connections: the tests read it to see the load was shared."""
        return web.json_response({str(port): pool.connections for port, pool in pools.items()})

    app = web.Application()
    app.router.add_get("/health", health)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", health_port).start()
    logger.info("balancing %s", {port: [b.address for b in p.backends] for port, p in pools.items()})
    await asyncio.gather(*(server.serve_forever() for server in servers))


def main() -> None:
    parser = argparse.ArgumentParser(description="Round-robin TCP load balancer for several Rasa/action servers.")
    parser.add_argument("--listen", action="append", type=parse_listen, required=True,
                        help="PORT=HOST:PORT[,HOST:PORT...]; repeat for several pools")
    parser.add_argument("--health-port", type=int, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s  %(message)s")
    asyncio.run(serve(args.listen, args.health_port))


if __name__ == "__main__":
    main()
