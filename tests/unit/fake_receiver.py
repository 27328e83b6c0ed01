"""A real HTTP server in a thread that stands in for a webhook receiver in tests.

It records every request (path, headers, raw body) and answers with scripted statuses: the queued ones
first (e.g. three 500s), then the default.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Deque, Dict, List

from credia.processes import free_port


@dataclass(frozen=True)
class ReceivedRequest:
    path: str
    headers: Dict[str, str]
    body: bytes
    answered: int


class FakeReceiver:
    def __init__(self, port: int | None = None, default_status: int = 200) -> None:
        self.port = port or free_port()
        self.default_status = default_status
        self._queued: Deque[int] = deque()
        self._received: List[ReceivedRequest] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def answer_next(self, *statuses: int) -> None:
        """Queue statuses for the next requests, before falling back to the default."""
        with self._lock:
            self._queued.extend(statuses)

    @property
    def received(self) -> List[ReceivedRequest]:
        with self._lock:
            return list(self._received)

    def wait_for(self, count: int, timeout: float = 10.0) -> List[ReceivedRequest]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            received = self.received
            if len(received) >= count:
                return received
            time.sleep(0.05)
        raise AssertionError(f"expected {count} requests, got {len(self.received)}")

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    status = receiver._queued.popleft() if receiver._queued else receiver.default_status
                    receiver._received.append(ReceivedRequest(self.path, dict(self.headers), body, status))
                payload = b'{"ok": true}' if status < 300 else b'{"detail": "scripted failure"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *_args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, name="fake-receiver", daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
