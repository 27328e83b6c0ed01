"""Signed web chat links: only the server's own, unexpired, untouched tokens open a conversation."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from urllib.parse import parse_qs, urlsplit

import pytest

from credia.channels import links
from credia.channels.links import (
    ConversationTokenError,
    sign_conversation_link,
    verify_conversation_token,
    webchat_url,
)

SECRET = "test-link-secret"
NOW = 1_750_000_000.0


def reason_of(token: str, **kwargs: object) -> str:
    with pytest.raises(ConversationTokenError) as excinfo:
        verify_conversation_token(token, **{"secret": SECRET, "now": NOW, **kwargs})  # type: ignore[arg-type]
    return excinfo.value.reason


@pytest.mark.parametrize("conversation_id", ["whatsapp:+51987654321", "3f2a9c0e1b7d4e58", "cliente ñandú/1?&="])
def test_a_signed_link_opens_its_conversation(conversation_id: str) -> None:
    token = sign_conversation_link(conversation_id, 600, secret=SECRET, now=NOW)
    assert verify_conversation_token(token, secret=SECRET, now=NOW + 599) == conversation_id


def test_the_token_is_url_safe_as_it_is() -> None:
    token = sign_conversation_link("cliente ñandú/1?&=+", 600, secret=SECRET, now=NOW)
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


def test_an_expired_link_is_refused() -> None:
    token = sign_conversation_link("cliente-1", 600, secret=SECRET, now=NOW)
    assert reason_of(token, now=NOW + 600) == "expired"
    assert reason_of(token, now=NOW + 86_400) == "expired"


def test_another_secret_does_not_verify() -> None:
    token = sign_conversation_link("cliente-1", 600, secret="other-secret", now=NOW)
    assert reason_of(token) == "signature"


def test_a_changed_conversation_or_expiry_breaks_the_signature() -> None:
    token = sign_conversation_link("cliente-1", 600, secret=SECRET, now=NOW)
    body, signature = token.split(".")
    for claims in ({"c": "cliente-2", "e": int(NOW) + 600}, {"c": "cliente-1", "e": int(NOW) + 10**9}):
        forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
        assert reason_of(f"{forged}.{signature}") == "signature"
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    assert reason_of(f"{body}.{flipped}") == "signature"


@pytest.mark.parametrize(
    "token",
    ["", "no-dot", "a.b.c", "abc.d!ef", "ab=.cd", "abc.d+f", "é.abc", "abc.", "." + "A" * 43, "A" * 3000 + ".AAAA"],
)
def test_malformed_tokens_are_refused(token: str) -> None:
    assert reason_of(token) == "malformed"


def test_a_well_formed_but_unsigned_token_is_refused() -> None:
    assert reason_of("eyJjIjoiY2xpZW50ZS0xIiwiZSI6OTk5OTk5OTk5OX0.c2lnbmF0dXJl") == "signature"


def test_a_well_signed_token_with_unreadable_content_is_malformed() -> None:
    body = base64.urlsafe_b64encode(b'{"c": 42}').rstrip(b"=").decode()
    digest = hmac.new(SECRET.encode(), links._CONTEXT + body.encode(), hashlib.sha256).digest()
    signature = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert reason_of(f"{body}.{signature}") == "malformed"


def test_signing_refuses_what_cannot_be_a_link() -> None:
    with pytest.raises(ValueError):
        sign_conversation_link("", 600, secret=SECRET)
    with pytest.raises(ValueError):
        sign_conversation_link("cliente-1", 0, secret=SECRET)
    with pytest.raises(ValueError):
        sign_conversation_link("x" * 2000, 600, secret=SECRET)


def test_the_secret_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONVERSATION_LINK_SECRET", raising=False)
    with pytest.raises(RuntimeError, match="CONVERSATION_LINK_SECRET"):
        sign_conversation_link("cliente-1", 600)
    monkeypatch.setenv("CONVERSATION_LINK_SECRET", SECRET)
    token = sign_conversation_link("cliente-1", 600)
    assert verify_conversation_token(token, secret=SECRET) == "cliente-1"
    monkeypatch.setenv("CONVERSATION_LINK_SECRET", "rotated")
    with pytest.raises(ConversationTokenError):
        verify_conversation_token(token)


def test_webchat_url_points_at_the_public_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVERSATION_LINK_SECRET", SECRET)
    monkeypatch.setenv("WEBCHAT_PUBLIC_URL", "https://chat.financiera.pe/")
    url = urlsplit(webchat_url("whatsapp:+51987654321"))
    assert (url.scheme, url.netloc, url.path) == ("https", "chat.financiera.pe", "/webhooks/webchat/")
    assert verify_conversation_token(parse_qs(url.query)["t"][0]) == "whatsapp:+51987654321"


def test_webchat_url_defaults_to_the_local_rasa_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVERSATION_LINK_SECRET", SECRET)
    monkeypatch.delenv("WEBCHAT_PUBLIC_URL", raising=False)
    monkeypatch.setenv("RASA_PORT", "5099")
    assert webchat_url("cliente-1").startswith("http://127.0.0.1:5099/webhooks/webchat/?t=")
