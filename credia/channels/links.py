"""Signed links that open the web chat on an existing conversation (one conversation across channels).

A customer on WhatsApp, SMS or the phone can be sent a link that continues the very same Rasa conversation
(same tracker, same slots) in the browser. The link carries a token, so nobody can open someone else's
conversation by guessing its id:

    <base64url JSON {"c": conversation_id, "e": expiry unix seconds}>.<base64url HMAC-SHA256 of the first part>

The expiry is inside the signed part, the signature is checked (constant time) before anything is parsed, and
both parts are URL-safe without padding, so the token goes into ``?t=`` as is.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from urllib.parse import urlencode

from credia import settings

DEFAULT_TTL_SECONDS = 24 * 60 * 60
# Bounds the work an attacker can make the server do with a huge ?t= (real tokens are a few hundred bytes).
MAX_TOKEN_LENGTH = 2048
# Domain separation: a signature made with the same secret for another purpose never verifies here.
_CONTEXT = b"credia.webchat.conversation.v1."
# Unpadded base64url only: a lenient decoder would let several spellings of one token verify.
_PART = re.compile(r"[A-Za-z0-9_-]+")
WEBCHAT_PATH = "/webhooks/webchat/"


class ConversationTokenError(ValueError):
    """The token cannot open a conversation; ``reason`` is ``malformed``, ``signature`` or ``expired``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(secret: str, body: str) -> bytes:
    return hmac.new(secret.encode(), _CONTEXT + body.encode("ascii"), hashlib.sha256).digest()


def sign_conversation_link(
    conversation_id: str,
    ttl_seconds: int = DEFAULT_TTL_SECONDS,
    *,
    secret: str | None = None,
    now: float | None = None,
) -> str:
    """Return a token that opens ``conversation_id`` in the web chat until ``ttl_seconds`` from now."""
    if not conversation_id:
        raise ValueError("conversation_id must not be empty")
    if ttl_seconds <= 0:
        raise ValueError("ttl_seconds must be positive")
    issued = time.time() if now is None else now
    claims = {"c": conversation_id, "e": int(issued) + int(ttl_seconds)}
    body = _b64encode(json.dumps(claims, separators=(",", ":"), ensure_ascii=False).encode())
    key = secret or settings.conversation_link_secret()
    token = f"{body}.{_b64encode(_signature(key, body))}"
    if len(token) > MAX_TOKEN_LENGTH:
        raise ValueError("conversation_id is too long for a link")
    return token


def verify_conversation_token(token: str, *, secret: str | None = None, now: float | None = None) -> str:
    """Return the conversation id of a valid, unexpired token; raise ``ConversationTokenError`` otherwise."""
    if not token or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 1:
        raise ConversationTokenError("malformed", "the token is not a conversation link token")
    body, signature = token.split(".")
    if not (_PART.fullmatch(body) and _PART.fullmatch(signature)):
        raise ConversationTokenError("malformed", "the token is not a conversation link token")
    try:
        received = _b64decode(signature)
    except (binascii.Error, ValueError) as exc:
        raise ConversationTokenError("malformed", "the token is not a conversation link token") from exc
    key = secret or settings.conversation_link_secret()
    if not hmac.compare_digest(_signature(key, body), received):
        raise ConversationTokenError("signature", "the token's signature does not match")
    try:
        claims = json.loads(_b64decode(body))
        conversation_id, expires = claims["c"], claims["e"]
    except (binascii.Error, ValueError, TypeError, KeyError) as exc:
        raise ConversationTokenError("malformed", "the token's content is not readable") from exc
    if not isinstance(conversation_id, str) or not conversation_id or not isinstance(expires, int):
        raise ConversationTokenError("malformed", "the token's content is not readable")
    if (time.time() if now is None else now) >= expires:
        raise ConversationTokenError("expired", "the token has expired")
    return conversation_id


def webchat_url(conversation_id: str, ttl_seconds: int = DEFAULT_TTL_SECONDS) -> str:
    """The public web chat address that continues ``conversation_id`` (for a message on another channel)."""
    query = urlencode({"t": sign_conversation_link(conversation_id, ttl_seconds)})
    return f"{settings.webchat_public_url()}{WEBCHAT_PATH}?{query}"
