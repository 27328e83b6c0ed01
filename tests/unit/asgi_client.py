"""Call an ASGI app (FastAPI or Sanic) in-process, with its start-up and shut-down, without a port or httpx.

The security and fuzz tests send thousands of requests; going through the ASGI interface keeps them fast and
still runs every middleware, route and error handler the server would run.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple
from urllib.parse import urlencode

from sanic import Sanic


@dataclass
class AsgiResponse:
    status: int
    headers: Dict[str, str]
    body: bytes

    def json(self) -> Any:
        return jsonlib.loads(self.body)


@dataclass
class AsgiClient:
    """Runs ``app``'s lifespan on its own event loop; ``request`` blocks until the response is complete."""

    app: Any
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    _lifespan: Optional["asyncio.Task[None]"] = None
    _to_app: Optional["asyncio.Queue[Dict[str, Any]]"] = None
    _from_app: Optional["asyncio.Queue[Dict[str, Any]]"] = None

    def __enter__(self) -> "AsgiClient":
        if isinstance(self.app, Sanic):
            # Sanic 21.12 rewrites its HTTP methods at each start; outside test mode the second app of a process
            # rewrites the rewritten code and fails.
            Sanic.test_mode = True
        self.loop.run_until_complete(self._start())
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.loop.run_until_complete(self._stop())
        self.loop.close()

    async def _start(self) -> None:
        self._to_app, self._from_app = asyncio.Queue(), asyncio.Queue()
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
        self._lifespan = asyncio.ensure_future(self.app(scope, self._to_app.get, self._from_app.put))
        await self._to_app.put({"type": "lifespan.startup"})
        message = await asyncio.wait_for(self._from_app.get(), 30)
        if message["type"] != "lifespan.startup.complete":
            raise RuntimeError(f"the app did not start: {message}")

    async def _stop(self) -> None:
        assert self._to_app is not None and self._from_app is not None and self._lifespan is not None
        await self._to_app.put({"type": "lifespan.shutdown"})
        await asyncio.wait_for(self._from_app.get(), 30)
        self._lifespan.cancel()

    def run(self, coroutine: Any) -> Any:
        """Run a coroutine on the app's loop (e.g. to look at what the app stored)."""
        return self.loop.run_until_complete(coroutine)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Optional[Mapping[str, Any] | Sequence[Tuple[str, Any]]] = None,
        json: Any = None,
        body: bytes = b"",
        headers: Optional[Mapping[str, str]] = None,
    ) -> AsgiResponse:
        header_map = {k.lower(): v for k, v in (headers or {}).items()}
        if json is not None:
            body = jsonlib.dumps(json).encode()
            header_map.setdefault("content-type", "application/json")
        header_map.setdefault("content-length", str(len(body)))
        header_map.setdefault("host", "testserver")
        return self.loop.run_until_complete(self._call(method, path, params, body, header_map))

    async def _call(
        self, method: str, path: str, params: Any, body: bytes, headers: Dict[str, str]
    ) -> AsgiResponse:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method.upper(),
            "scheme": "http",
            "path": path,
            "raw_path": path.encode("utf-8", "surrogateescape"),
            "query_string": urlencode(params or {}, doseq=True).encode(),
            "root_path": "",
            "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()],
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
        }
        sent = False

        async def receive() -> Dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        status, response_headers, chunks = 0, {}, []  # type: int, Dict[str, str], List[bytes]

        async def send(message: Dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                response_headers.update({k.decode().lower(): v.decode() for k, v in message.get("headers", [])})
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await asyncio.wait_for(self.app(scope, receive, send), 60)
        return AsgiResponse(status, response_headers, b"".join(chunks))
