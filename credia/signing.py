"""HMAC signatures for service-to-service webhooks (payments -> core banking).

Header format, as in Stripe: ``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">``. The timestamp
bounds replays; the comparison is constant-time; the raw bytes are signed, never re-serialised JSON.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Signature"
DEFAULT_TOLERANCE_SECONDS = 300


class SignatureError(ValueError):
    """The signature header is missing, malformed, stale or does not match."""


def _digest(secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """Return the signature header value for ``body``."""
    ts = int(time.time()) if timestamp is None else timestamp
    return f"t={ts},v1={_digest(secret, ts, body)}"


def verify(
    secret: str,
    header: str | None,
    body: bytes,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> None:
    """Raise ``SignatureError`` unless ``header`` is a fresh, valid signature of ``body``."""
    if not header:
        raise SignatureError("missing signature")
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
        received = parts["v1"]
    except (ValueError, KeyError) as exc:
        raise SignatureError("malformed signature header") from exc
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        raise SignatureError("stale signature timestamp")
    if not hmac.compare_digest(_digest(secret, timestamp, body), received):
        raise SignatureError("signature does not match")
