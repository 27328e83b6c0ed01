"""The Twilio SMS/WhatsApp channel over real HTTP: a Sanic server with the channel registered as Rasa does, and
replies sent through the channel's own output channel to the fake Twilio API running as a process."""

from __future__ import annotations

import asyncio
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest
import requests

from credia.channels.twilio import (
    BODY_LIMIT,
    InboundLog,
    Senders,
    TwilioAccount,
    TwilioMessagingInput,
    twilio_signature,
)
from credia.processes import free_port
from tests.unit.twilio_support import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    ChannelServer,
    FakeTwilioProcess,
    ScriptedAgent,
    post_signed,
    twilio_sign,
)

SMS_NUMBER = "+15005550006"
WHATSAPP_NUMBER = "whatsapp:+14155238886"
FALLBACK_TEMPLATE = "HX" + "ab" * 16
MENU = [
    {"title": "Ver créditos", "payload": "/ask_products"},
    {"title": "Mi deuda", "payload": "/check_debt"},
    {"title": "Hablar con una persona", "payload": "/ask_human"},
]
LONG_TEXT = "\n\n".join(f"Párrafo {n}: " + "cuota y plazo del crédito. " * 30 for n in range(1, 6))


def script(text: str) -> List[Dict[str, Any]]:
    """The scripted bot: a few answers that exercise every way a response looks."""
    replies = {
        "menu": [{"text": "Esto es lo que puedo hacer por usted:", "buttons": MENU}],
        "/ask_products": [{"text": "Tenemos Préstamo Personal y Crédito Vehicular."}],
        "/check_debt": [{"text": "Primero verifiquemos su identidad."}],
        "largo": [{"text": LONG_TEXT}],
        "imagen": [{"text": "Su cronograma:", "image": "https://cdn.credia.example/cronograma.png"}],
        "dos mensajes": [{"text": "Primer mensaje."}, {"text": "Segundo mensaje."}],
        "traslado": [{"text": "Le comunico.", "custom": {"transfer": True}}],
    }
    if text == "falla":
        raise RuntimeError("the bot broke")
    return replies.get(text, [{"text": f"Recibido: {text}"}])


class Setup:
    def __init__(self, fake: FakeTwilioProcess, agent: ScriptedAgent, server: ChannelServer, channel: Any) -> None:
        self.fake, self.agent, self.server, self.channel = fake, agent, server, channel

    @property
    def webhook(self) -> str:
        return f"{self.server.url}/webhooks/twilio_messaging/webhook"

    def send(self, sender: str, body: str = "", **fields: str) -> requests.Response:
        """A signed inbound message as Twilio posts it; returns the webhook's answer."""
        params = inbound(sender, body, **fields)
        return post_signed(self.webhook, params)


def inbound(sender: str, body: str = "", **fields: str) -> List[Tuple[str, str]]:
    """The form fields of a Twilio inbound message (as recorded from Twilio's webhook requests)."""
    whatsapp = sender.startswith("whatsapp:")
    sid = fields.pop("MessageSid", "SM" + uuid.uuid4().hex)
    base = {
        "ToCountry": "US", "ToState": "CA", "SmsMessageSid": sid, "NumMedia": "0", "ToCity": "", "FromZip": "",
        "SmsSid": sid, "FromState": "", "SmsStatus": "received", "FromCity": "", "Body": body,
        "FromCountry": "PE", "To": WHATSAPP_NUMBER if whatsapp else SMS_NUMBER, "ToZip": "",
        "NumSegments": "1", "MessageSid": sid, "AccountSid": ACCOUNT_SID, "From": sender, "ApiVersion": "2010-04-01",
    }
    if whatsapp:
        base.update(ProfileName="María", WaId=sender.removeprefix("whatsapp:+"), MessageType="text")
    base.update(fields)
    return list(base.items())


def new_customer(whatsapp: bool = False) -> str:
    number = f"+519{uuid.uuid4().int % 10**8:08d}"
    return f"whatsapp:{number}" if whatsapp else number


@pytest.fixture(scope="module")
def fake_twilio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeTwilioProcess]:
    fake = FakeTwilioProcess(tmp_path_factory.mktemp("fake_twilio"))
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


def messaging_channel(fake: FakeTwilioProcess, folder: Path, public_url: str) -> TwilioMessagingInput:
    return TwilioMessagingInput(
        TwilioAccount(ACCOUNT_SID, AUTH_TOKEN, fake.url, public_url),
        Senders(sms=SMS_NUMBER, whatsapp=WHATSAPP_NUMBER),
        database_url=f"sqlite:///{folder / 'channels.db'}",
        fallback_content_sid=FALLBACK_TEMPLATE,
        send_attempts=3,
        retry_base_seconds=0.05,
    )


@pytest.fixture(scope="module")
def setup(fake_twilio: FakeTwilioProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    """The channel behind its own (reachable) public URL, so Twilio's status callbacks can reach it."""
    port = free_port()
    folder = tmp_path_factory.mktemp("twilio_channel")
    channel = messaging_channel(fake_twilio, folder, f"http://127.0.0.1:{port}")
    agent = ScriptedAgent(script)
    server = ChannelServer([channel], agent, port)
    server.start()
    try:
        yield Setup(fake_twilio, agent, server, channel)
    finally:
        server.stop()


def last_message(setup: Setup, sender: str, count: int) -> Any:
    return setup.agent.wait_received_from(sender, count)[-1]


def test_signing_helper_is_twilios_algorithm() -> None:
    url = "https://bot.credia.example/webhooks/twilio_messaging/webhook?x=1"
    params = [("Body", "¡Hola! ¿Cuánto debo?"), ("From", "whatsapp:+51987654321"), ("NumMedia", "0")]
    assert twilio_signature(AUTH_TOKEN, url, params) == twilio_sign(AUTH_TOKEN, url, params)


def test_sms_reaches_the_bot_unaltered_and_the_reply_goes_out_through_twilio(setup: Setup) -> None:
    customer = new_customer()
    response = setup.send(customer, "¡Hola! ¿Qué tal?")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/xml")
    assert ET.fromstring(response.text).tag == "Response" and len(ET.fromstring(response.text)) == 0

    message = last_message(setup, customer, 1)
    assert message.text == "¡Hola! ¿Qué tal?"
    assert message.input_channel == "twilio_messaging"
    assert message.metadata["channel"] == "sms"
    [sent] = setup.fake.wait_accepted(customer, 1)
    assert sent["from"] == SMS_NUMBER and sent["body"] == "Recibido: ¡Hola! ¿Qué tal?"
    assert sent["status_callback"] is None  # only WhatsApp needs delivery failures reported


def test_whatsapp_replies_leave_from_the_whatsapp_number(setup: Setup) -> None:
    customer = new_customer(whatsapp=True)
    assert setup.send(customer, "hola").status_code == 200
    assert last_message(setup, customer, 1).metadata["channel"] == "whatsapp"
    [sent] = setup.fake.wait_accepted(customer, 1)
    assert sent["from"] == WHATSAPP_NUMBER
    assert sent["status_callback"] == f"{setup.server.url}/webhooks/twilio_messaging/status"


def test_missing_or_invalid_signature_is_refused_and_nothing_happens(setup: Setup) -> None:
    customer = new_customer()
    params = inbound(customer, "hola")
    unsigned = requests.post(setup.webhook, data=params, timeout=10)
    wrong_key = post_signed(setup.webhook, params, auth_token="not-the-token")
    tampered = requests.post(
        setup.webhook, data=[(k, "adiós" if k == "Body" else v) for k, v in params],
        headers={"X-Twilio-Signature": twilio_sign(AUTH_TOKEN, setup.webhook, params)}, timeout=10,
    )
    other_url = post_signed(setup.webhook, params, signed_url=setup.webhook + "?x=1")
    assert [r.status_code for r in (unsigned, wrong_key, tampered, other_url)] == [403, 403, 403, 403]
    assert setup.agent.messages_from(customer) == []
    assert setup.fake.messages(customer) == []


def test_media_become_a_document_message_with_attachments(setup: Setup) -> None:
    customer = new_customer(whatsapp=True)
    base = "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media"
    response = setup.send(
        customer, "mi DNI", NumMedia="2",
        MediaUrl0=f"{base}/ME0001", MediaContentType0="image/jpeg",
        MediaUrl1=f"{base}/ME0002", MediaContentType1="application/pdf",
    )
    assert response.status_code == 200
    message = last_message(setup, customer, 1)
    assert message.text == "/send_document"
    assert message.metadata["attachments"] == [
        {"filename": "ME0001.jpg", "content_type": "image/jpeg", "media_url": f"{base}/ME0001"},
        {"filename": "ME0002.pdf", "content_type": "application/pdf", "media_url": f"{base}/ME0002"},
    ]
    assert message.metadata["caption"] == "mi DNI"


def test_a_location_travels_in_the_metadata(setup: Setup) -> None:
    customer = new_customer(whatsapp=True)
    response = setup.send(
        customer, "", Latitude="-12.0464", Longitude="-77.0428", Address="Av. Abancay 100, Lima", Label="Casa",
        MessageType="location",
    )
    assert response.status_code == 200
    message = last_message(setup, customer, 1)
    assert message.text == "/inform"
    assert message.metadata["location"] == {
        "latitude": -12.0464, "longitude": -77.0428, "address": "Av. Abancay 100, Lima", "label": "Casa",
    }


def test_a_message_twilio_delivers_twice_is_handled_once(setup: Setup, tmp_path: Path) -> None:
    customer = new_customer()
    params = inbound(customer, "hola")
    assert post_signed(setup.webhook, params).status_code == 200
    assert post_signed(setup.webhook, params).status_code == 200
    setup.fake.wait_accepted(customer, 1)
    assert len(setup.agent.messages_from(customer)) == 1
    assert len(setup.fake.accepted(customer)) == 1
    # The record is in the database, so a restarted server still knows the message.
    sid = dict(params)["MessageSid"]
    assert InboundLog(str(setup.channel.inbound.engine.url)).first_time(sid) is False


def test_buttons_are_numbered_and_a_number_or_a_spoken_number_picks_the_payload(setup: Setup) -> None:
    customer = new_customer(whatsapp=True)
    setup.send(customer, "menu")
    [menu] = setup.fake.wait_accepted(customer, 1)
    assert menu["body"] == (
        "Esto es lo que puedo hacer por usted:\n\n1. Ver créditos\n2. Mi deuda\n3. Hablar con una persona"
        "\n\nResponda con el número de su opción."
    )
    assert "/ask_products" not in menu["body"]

    setup.send(customer, "1")
    assert last_message(setup, customer, 2).text == "/ask_products"
    setup.fake.wait_accepted(customer, 2)
    # The last bot message has no buttons: a number is just a number now.
    setup.send(customer, "1")
    assert last_message(setup, customer, 3).text == "1"
    setup.fake.wait_accepted(customer, 3)
    setup.send(customer, "menu")
    setup.fake.wait_accepted(customer, 4)
    setup.send(customer, "Opción dos")
    assert last_message(setup, customer, 5).text == "/check_debt"


def test_long_texts_are_split_under_twilios_limit_and_images_are_sent_as_media(setup: Setup) -> None:
    customer = new_customer()
    setup.send(customer, "largo")
    parts = setup.fake.wait_accepted(customer, 3)
    assert all(len(part["body"]) <= BODY_LIMIT for part in parts)
    assert " ".join(part["body"] for part in parts).split() == LONG_TEXT.split()

    other = new_customer(whatsapp=True)
    setup.send(other, "imagen")
    text, image = setup.fake.wait_accepted(other, 2)
    assert text["body"] == "Su cronograma:"
    assert image["media_url"] == ["https://cdn.credia.example/cronograma.png"] and not image["body"]


def test_custom_payloads_are_not_shown_as_raw_json(setup: Setup) -> None:
    customer = new_customer()
    setup.send(customer, "traslado")
    [sent] = setup.fake.wait_accepted(customer, 1)
    assert sent["body"] == "Le comunico."
    setup.agent.wait_finished(customer, 1)
    assert len(setup.fake.messages(customer)) == 1


def test_rate_limits_and_server_errors_are_retried(setup: Setup) -> None:
    customer = new_customer()
    setup.fake.fail_next(429, to=customer, count=1, retry_after=0)
    setup.fake.fail_next(503, to=customer, count=1)
    setup.send(customer, "hola")
    [sent] = setup.fake.wait_accepted(customer, 1)
    assert sent["body"] == "Recibido: hola"
    assert [m["http_status"] for m in setup.fake.messages(customer)] == [429, 503, 201]


def test_closed_whatsapp_window_sends_the_template_once(setup: Setup) -> None:
    customer = new_customer(whatsapp=True)
    setup.fake.fail_next(63016, to=customer, count=1)
    setup.send(customer, "dos mensajes")
    [template] = setup.fake.wait_accepted(customer, 1)
    assert template["content_sid"] == FALLBACK_TEMPLATE and template["body"] is None
    assert template["from"] == WHATSAPP_NUMBER
    setup.agent.wait_finished(customer, 1)
    # The rest of the turn is not attempted: it would fail the same way.
    assert [(m["http_status"], m["error_code"]) for m in setup.fake.messages(customer)] == [
        (400, 63016), (201, None)
    ]


def test_closed_window_reported_later_by_status_callback_sends_the_template(setup: Setup) -> None:
    customer = new_customer(whatsapp=True)
    setup.fake.fail_next(63016, to=customer, count=1, asynchronous=True)
    setup.send(customer, "hola")
    first, template = setup.fake.wait_accepted(customer, 2)
    assert first["status"] == "undelivered" and template["content_sid"] == FALLBACK_TEMPLATE
    deadline = time.monotonic() + 10
    while "callback_status" not in setup.fake.messages(customer)[0] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert setup.fake.messages(customer)[0]["callback_status"] == 204

    status_url = f"{setup.server.url}/webhooks/twilio_messaging/status"
    callback = [("MessageSid", first["sid"]), ("MessageStatus", "undelivered"), ("ErrorCode", "63016"),
                ("To", customer), ("From", WHATSAPP_NUMBER)]
    assert post_signed(status_url, callback).status_code == 204  # reported again: no second template
    assert requests.post(status_url, data=callback, timeout=10).status_code == 403
    assert len(setup.fake.accepted(customer)) == 2


def test_messages_outside_a_turn_use_the_channels_output(setup: Setup) -> None:
    """Payment announcements and agents' replies reach the customer through ``get_output_channel``."""
    customer = new_customer(whatsapp=True)
    output = setup.channel.get_output_channel()
    sending = output.send_response(customer, {"text": "Recibimos su pago de S/ 150.00. ¡Gracias!"})
    asyncio.run_coroutine_threadsafe(sending, setup.server.loop).result(15)
    [sent] = setup.fake.accepted(customer)
    assert sent["from"] == WHATSAPP_NUMBER and sent["body"] == "Recibimos su pago de S/ 150.00. ¡Gracias!"


@pytest.mark.parametrize(
    "fields, status",
    [
        ({"MessageSid": ""}, 400),
        ({"NumMedia": "x"}, 400),
        ({"NumMedia": "11"}, 400),
        ({"NumMedia": "1"}, 400),  # no MediaUrl0
        ({"NumMedia": "1", "MediaUrl0": "file:///etc/passwd"}, 400),
        ({"Latitude": "norte", "Longitude": "-77.0"}, 400),
        ({"Latitude": "123", "Longitude": "-77.0"}, 400),
    ],
)
def test_signed_but_malformed_messages_are_refused(setup: Setup, fields: Dict[str, str], status: int) -> None:
    customer = new_customer()
    assert setup.send(customer, "hola", **fields).status_code == status
    assert setup.agent.messages_from(customer) == []


def test_unreadable_or_oversized_bodies_are_refused_without_harm(setup: Setup) -> None:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert requests.post(setup.webhook, json={"Body": "hola"}, timeout=10).status_code == 415
    assert requests.post(setup.webhook, data=b"Body=\xff\xfe", headers=form, timeout=10).status_code == 400
    assert requests.post(setup.webhook, data=b"Body=hola&From", headers=form, timeout=10).status_code == 400
    too_big = b"Body=" + b"a" * 200_000
    assert requests.post(setup.webhook, data=too_big, headers=form, timeout=10).status_code == 413
    chunked = (b"Body=" + b"a" * 10_000 for _ in range(10))  # no Content-Length: cut off while reading
    assert requests.post(setup.webhook, data=chunked, headers=form, timeout=10).status_code == 413

    customer = new_customer()
    assert setup.send(customer, "falla").status_code == 200  # a failing turn is logged, not a 500
    assert setup.send(customer, "hola").status_code == 200
    assert setup.fake.wait_accepted(customer, 1)[0]["body"] == "Recibido: hola"


def test_behind_a_proxy_the_public_url_is_what_twilio_signed(
    fake_twilio: FakeTwilioProcess, tmp_path: Path
) -> None:
    public = "https://bot.credia.example/asistente"
    agent = ScriptedAgent(script)
    server = ChannelServer([messaging_channel(fake_twilio, tmp_path, public)], agent)
    server.start()
    try:
        local = f"{server.url}/webhooks/twilio_messaging/webhook"
        customer = new_customer()
        params = inbound(customer, "hola")
        assert post_signed(local, params).status_code == 403
        assert post_signed(local, params, signed_url=f"{public}/webhooks/twilio_messaging/webhook").status_code == 200
        assert agent.wait_received_from(customer, 1)[0].text == "hola"
    finally:
        server.stop()


@pytest.mark.parametrize(
    "form, code",
    [
        ({"To": "+51987654321", "From": SMS_NUMBER, "Body": "a" * (BODY_LIMIT + 1)}, 21617),
        ({"To": "987654321", "From": SMS_NUMBER, "Body": "hola"}, 21211),
        ({"To": "whatsapp:+51987654321", "From": SMS_NUMBER, "Body": "hola"}, 21910),
        ({"To": "+51987654321", "From": SMS_NUMBER, "MediaUrl": "ftp://cdn/x.png"}, 21620),
        ({"To": "+51987654321", "From": SMS_NUMBER}, 21602),
        ({"From": SMS_NUMBER, "Body": "hola"}, 21604),
    ],
)
def test_the_fake_api_validates_like_twilio(fake_twilio: FakeTwilioProcess, form: Dict[str, str], code: int) -> None:
    url = f"{fake_twilio.url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    response = requests.post(url, data=form, auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=10)
    assert response.status_code == 400 and response.json()["code"] == code


def test_the_fake_api_requires_the_accounts_credentials(fake_twilio: FakeTwilioProcess) -> None:
    url = f"{fake_twilio.url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    form = {"To": "+51987654321", "From": SMS_NUMBER, "Body": "a" * BODY_LIMIT}
    assert requests.post(url, data=form, timeout=10).status_code == 401
    assert requests.post(url, data=form, auth=(ACCOUNT_SID, "wrong"), timeout=10).json()["code"] == 20003
    created = requests.post(url, data=form, auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=10)
    assert created.status_code == 201 and created.json()["sid"].startswith("SM")
