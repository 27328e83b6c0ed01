"""What Meta's WhatsApp webhooks need from whoever receives them: the Rasa connector and the ingress gateway.

Kept apart from ``credia.channels.whatsapp`` so the gateway checks signatures and the handshake exactly like the
connector without importing Rasa (a small, fast process is the point of the gateway).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Optional, Tuple

SIGNATURE_HEADER = "X-Hub-Signature-256"
MAX_BODY_BYTES = 1024 * 1024


def signature_of(secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value Meta sends for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_problem(secret: str, body: bytes, header: Optional[str]) -> Optional[Tuple[int, str]]:
    """``None`` when ``header`` signs the raw ``body``; else the HTTP status and reason to refuse it with."""
    if not header:
        return 401, f"missing {SIGNATURE_HEADER}"
    if not hmac.compare_digest(header.encode(), signature_of(secret, body).encode()):
        return 403, "invalid signature"
    return None


def handshake_challenge(mode: Optional[str], token: Optional[str], challenge: Optional[str],
                        verify_token: str) -> Optional[str]:
    """Meta's subscription check: the challenge to echo when the verify token matches, else ``None``."""
    if mode == "subscribe" and hmac.compare_digest((token or "").encode(), verify_token.encode()):
        return challenge or ""
    return None
