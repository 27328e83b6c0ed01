"""A small async JSON client with timeouts and safe retries.

Actions run inside the action server's event loop, so backend calls must be async (aiohttp) and bounded
by a timeout. Only requests that cannot have a double effect are retried: GET/PUT/DELETE, and POSTs that
carry an ``Idempotency-Key``. A POST without one is never retried, because its first attempt may have
been applied even if the answer was lost.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Mapping

import aiohttp

logger = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({500, 502, 503, 504})
SAFE_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE"})


class BackendError(Exception):
    """Base class for every failure talking to a backend."""

    def __init__(self, service: str, message: str) -> None:
        super().__init__(f"{service}: {message}")
        self.service = service


class BackendUnavailable(BackendError):
    """The backend did not answer in time, refused the connection, or failed with a 5xx."""


class BackendRejected(BackendError):
    """The backend answered with a 4xx: the request itself was wrong or not allowed."""

    def __init__(self, service: str, status: int, detail: Any) -> None:
        super().__init__(service, f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


class NotFound(BackendRejected):
    """The backend answered 404 for the requested resource."""


class JsonClient:
    """Talks JSON to one backend service."""

    def __init__(
        self,
        service: str,
        base_url: str,
        timeout: float = 5.0,
        retries: int = 2,
        backoff: float = 0.2,
    ) -> None:
        self.service = service
        self.base_url = base_url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.retries = retries
        self.backoff = backoff

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """Send a request and return the decoded JSON body; raise a ``BackendError`` otherwise."""
        method = method.upper()
        headers = dict(headers or {})
        retryable = method in SAFE_METHODS or "Idempotency-Key" in headers
        attempts = 1 + (self.retries if retryable else 0)
        url = f"{self.base_url}{path}"
        last_error: BackendUnavailable | None = None
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                return await self._send(method, url, json, params, headers)
            except BackendUnavailable as exc:
                last_error = exc
                logger.warning("%s %s failed (attempt %d/%d): %s", method, url, attempt + 1, attempts, exc)
        assert last_error is not None
        raise last_error

    async def _send(
        self,
        method: str,
        url: str,
        json: Any,
        params: Mapping[str, Any] | None,
        headers: Mapping[str, str],
    ) -> Any:
        try:
            async with aiohttp.ClientSession(timeout=self.timeout) as session:
                async with session.request(method, url, json=json, params=params, headers=headers) as response:
                    body = await self._decode(response)
                    status = response.status
        except asyncio.TimeoutError as exc:
            raise BackendUnavailable(self.service, "timed out") from exc
        except aiohttp.ClientError as exc:
            raise BackendUnavailable(self.service, f"connection failed ({exc.__class__.__name__})") from exc
        if status in RETRYABLE_STATUS:
            raise BackendUnavailable(self.service, f"HTTP {status}")
        if status == 404:
            raise NotFound(self.service, status, _detail(body))
        if status >= 400:
            raise BackendRejected(self.service, status, _detail(body))
        return body

    @staticmethod
    async def _decode(response: aiohttp.ClientResponse) -> Any:
        if response.content_type == "application/json":
            try:
                return await response.json()
            except ValueError:
                return None
        return await response.text()


def _detail(body: Any) -> Any:
    return body.get("detail", body) if isinstance(body, dict) else body
