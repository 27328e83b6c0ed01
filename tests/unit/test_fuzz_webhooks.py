"""Fuzzing of the webhooks the Rasa server exposes: REST, WhatsApp, Twilio messages and payment events.

Each gets 100 drawn requests (fixed seed) in-process: arbitrary JSON or form bodies, half of the signed channels'
correctly signed so that the parsing behind the signature check is exercised too. No answer may be a 5xx.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Callable, Dict, Iterator, List, Tuple
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rasa.core.channels.channel import UserMessage, register
from rasa.core.lock_store import InMemoryLockStore
from rasa.shared.core.trackers import DialogueStateTracker
from sanic import Sanic

from tests.unit.asgi_client import AsgiClient
from tests.unit.fuzz_support import ANY_JSON, ODD_TEXT

FUZZ = settings(max_examples=100, derandomize=True, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))
SECRET = "test-secret-for-the-webhooks"
TEXT = st.one_of(st.text(max_size=60), ODD_TEXT)


class Quiet:
    """Stands in for Rasa's agent: accepts every message and external intent, and answers nothing."""

    def __init__(self) -> None:
        self.lock_store = InMemoryLockStore()
        self.processor = self

    async def handle_message(self, message: UserMessage) -> None:
        return None

    async def fetch_tracker_and_update_session(self, sender_id: str) -> DialogueStateTracker:
        return DialogueStateTracker(sender_id, slots=[])

    async def trigger_intent(self, **_kwargs: Any) -> None:
        return None


WHATSAPP_MESSAGE = st.fixed_dictionaries({
    "from": st.one_of(st.just("51987654321"), TEXT), "id": TEXT, "timestamp": st.one_of(TEXT, st.integers()),
    "type": st.sampled_from(["text", "interactive", "image", "document", "location", "audio", "sticker", "x"]),
}, optional={"text": ANY_JSON, "interactive": ANY_JSON, "image": ANY_JSON, "location": ANY_JSON})
WHATSAPP_VALUE = st.fixed_dictionaries({"messages": st.lists(WHATSAPP_MESSAGE, max_size=3)},
                                       optional={"contacts": ANY_JSON, "statuses": ANY_JSON})
WHATSAPP_BODY = st.one_of(ANY_JSON, st.fixed_dictionaries({
    "object": st.just("whatsapp_business_account"),
    "entry": st.lists(st.fixed_dictionaries({"changes": st.lists(
        st.fixed_dictionaries({"value": st.one_of(ANY_JSON, WHATSAPP_VALUE)}), max_size=2)}), max_size=2),
}))
PAYMENT_BODY = st.one_of(ANY_JSON, st.fixed_dictionaries({
    "event": st.sampled_from(["payment.completed", "payment.failed", ""]), "payment_id": ANY_JSON,
    "amount": ANY_JSON, "loan_id": ANY_JSON,
    "metadata": st.one_of(ANY_JSON, st.fixed_dictionaries({"conversation_id": st.one_of(TEXT, ANY_JSON)})),
}))
TWILIO_FORM = st.lists(st.tuples(
    st.sampled_from(["MessageSid", "From", "To", "Body", "NumMedia", "MediaUrl0", "MediaContentType0", "Latitude",
                     "Longitude", "ButtonPayload", "ErrorCode", "Otro"]), TEXT), max_size=10)
REST_BODY = st.one_of(ANY_JSON, st.fixed_dictionaries(
    {"sender": st.one_of(TEXT, ANY_JSON), "message": st.one_of(TEXT, ANY_JSON)}, optional={"metadata": ANY_JSON}))


def whatsapp_request(body: Any, signed: bool) -> Tuple[bytes, Dict[str, str]]:
    from credia.channels.whatsapp import signature_of

    raw = json.dumps(body).encode()
    return raw, {"X-Hub-Signature-256": signature_of(SECRET, raw)} if signed else {}


def payment_request(body: Any, signed: bool) -> Tuple[bytes, Dict[str, str]]:
    from credia.signing import SIGNATURE_HEADER, sign

    raw = json.dumps(body).encode()
    return raw, {SIGNATURE_HEADER: sign(SECRET, raw)} if signed else {}


def twilio_request(form: List[Tuple[str, str]], signed: bool) -> Tuple[bytes, Dict[str, str]]:
    from credia.channels.twilio import twilio_signature

    headers = {"content-type": "application/x-www-form-urlencoded"}
    if signed:
        headers["X-Twilio-Signature"] = twilio_signature(
            SECRET, "http://testserver/webhooks/twilio_messaging/webhook", form)
    return urlencode(form).encode(), headers


def rest_request(draw_body: Any, _signed: bool) -> Tuple[bytes, Dict[str, str]]:
    return json.dumps(draw_body).encode(), {"content-type": "application/json"}


# channel class, its webhook path, what a body looks like, how to make the request
WEBHOOKS: Dict[str, Tuple[str, str, Any, Callable[[Any, bool], Tuple[bytes, Dict[str, str]]]]] = {
    "rest": ("credia.channels.rest.RestInput", "/webhooks/rest/webhook", REST_BODY, rest_request),
    "whatsapp": ("credia.channels.whatsapp.WhatsAppInput", "/webhooks/whatsapp/webhook", WHATSAPP_BODY,
                 whatsapp_request),
    "payment_events": ("credia.channels.payment_events.PaymentEventsInput", "/webhooks/payment_events/webhook",
                       PAYMENT_BODY, payment_request),
    "twilio": ("credia.channels.twilio.TwilioMessagingInput", "/webhooks/twilio_messaging/webhook", TWILIO_FORM,
               twilio_request),
}


@pytest.fixture(params=list(WEBHOOKS))
def webhook(request: pytest.FixtureRequest, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple]:
    from rasa.core.channels.channel import InputChannel
    from rasa.shared.utils.common import class_from_module_path

    for name in ("WHATSAPP_APP_SECRET", "WHATSAPP_VERIFY_TOKEN", "WHATSAPP_ACCESS_TOKEN", "TWILIO_AUTH_TOKEN",
                 "PAYMENTS_WEBHOOK_SECRET"):
        monkeypatch.setenv(name, SECRET)
    monkeypatch.setenv("WHATSAPP_PHONE_NUMBER_ID", "100000000000001")
    monkeypatch.setenv("WHATSAPP_GRAPH_URL", "http://127.0.0.1:9/v23.0")
    monkeypatch.setenv("WHATSAPP_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC" + "0" * 32)
    monkeypatch.setenv("TWILIO_API_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("CHANNELS_DATABASE_URL", f"sqlite:///{tmp_path / 'channels.db'}")
    monkeypatch.setenv("CREDIA_RATE_LIMIT", "100000")
    from credia.channels import guard as guard_module

    monkeypatch.setattr(guard_module, "_guard", None)
    module_path, path, body, make = WEBHOOKS[request.param]
    channel: InputChannel = class_from_module_path(module_path).from_credentials(None)
    app = Sanic(f"fuzz_{uuid.uuid4().hex}", configure_logging=False)
    app.ctx.agent = Quiet()
    register([channel], app, route="/webhooks/")
    with AsgiClient(app) as client:
        yield request.param, client, path, body, make


def test_every_webhook_answers_fuzzed_requests_without_a_server_error(webhook: tuple) -> None:
    name, client, path, body_strategy, make = webhook
    failures: List[str] = []

    @FUZZ
    @given(body=body_strategy, signed=st.booleans())
    def run(body: Any, signed: bool) -> None:
        raw, headers = make(body, signed)
        answer = client.request("POST", path, body=raw, headers=headers)
        if answer.status >= 500:
            failures.append(f"{name}: {raw[:200]!r} -> {answer.status} {answer.body[:200]!r}")

    run()
    assert failures[:3] == []
