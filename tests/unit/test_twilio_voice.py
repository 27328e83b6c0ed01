"""The Twilio Voice IVR over real HTTP: signed requests shaped like Twilio's, TwiML answers parsed and checked."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from typing import Any, Dict, Iterator, List, Optional

import pytest
import requests

from credia.channels.twilio import TwilioAccount
from credia.channels.twilio_voice import TwilioVoiceInput, VoiceSettings
from tests.unit.twilio_support import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    ChannelServer,
    FakeTwilioProcess,
    ScriptedAgent,
    post_signed,
)

SMS_NUMBER = "+15005550006"
TRANSFER_NUMBER = "+5113119000"
MENU = [
    {"title": "Ver créditos", "payload": "/ask_products"},
    {"title": "Mi deuda", "payload": "/check_debt"},
    {"title": "Hablar con una persona", "payload": "/ask_human"},
]
PAY_LINK = "https://pagos.credia.example/pay/LNK-123"


def script(text: str) -> List[Dict[str, Any]]:
    replies = {
        "/greet": [{"text": "¡Hola! Soy Credia, el asistente virtual. ¿En qué le puedo ayudar?"}],
        "menú": [{"text": "Esto es lo que puedo hacer por usted:", "buttons": MENU}],
        "/ask_products": [{"text": "Tenemos Préstamo Personal y Crédito Vehicular."}],
        "/check_debt": [{"text": "Primero verifiquemos su identidad."}],
        "/ask_human": [{"text": "Con gusto."}],
        "quiero pagar": [{"text": f"Su enlace de pago por S/ 150.00 es {PAY_LINK} 👍"}],
        "asesor": [{"text": "Con gusto.", "custom": {"transfer": True}}],
        "cobranzas": [{"text": "Le paso con cobranzas.", "custom": {"transfer": True, "number": "+5114440000"}}],
        "lento": [{"text": "Gracias por esperar."}],
        "muy lento": [{"text": "Demasiado tarde."}],
    }
    return replies.get(text, [{"text": f"Usted dijo: {text}"}])


def delay(text: str) -> float:
    return {"lento": 0.8, "muy lento": 5.0}.get(text, 0.0)


class Call:
    """One phone call: the requests Twilio makes during it, signed, and the TwiML answers parsed."""

    def __init__(self, server: ChannelServer, caller: str = "+51987654321") -> None:
        self.webhook = f"{server.url}/webhooks/twilio_voice/webhook"
        self.sid = "CA" + uuid.uuid4().hex
        self.caller = caller

    def fields(self, **extra: str) -> List[tuple]:
        """Fields of Twilio's voice webhook (as recorded from Twilio's requests)."""
        base = {
            "AccountSid": ACCOUNT_SID, "ApiVersion": "2010-04-01", "CallSid": self.sid, "CallStatus": "in-progress",
            "Called": "+5117001234", "Caller": self.caller, "Direction": "inbound", "From": self.caller,
            "FromCountry": "PE", "To": "+5117001234", "ToCountry": "PE",
        }
        base.update(extra)
        return list(base.items())

    def post(self, url: Optional[str] = None, **extra: str) -> ET.Element:
        response = post_signed(url or self.webhook, self.fields(**extra))
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/xml")
        assert response.text.startswith('<?xml version="1.0" encoding="UTF-8"?>')
        return ET.fromstring(response.text)

    def start(self) -> ET.Element:
        return self.post(CallStatus="ringing")

    def say(self, speech: str, confidence: str = "0.91") -> ET.Element:
        return self.post(self.webhook + "?silences=0", SpeechResult=speech, Confidence=confidence)

    def press(self, digits: str) -> ET.Element:
        return self.post(self.webhook + "?silences=0", Digits=digits, FinishedOnKey="")


def spoken(element: ET.Element) -> str:
    return " ".join(say.text or "" for say in element.iter("Say"))


@pytest.fixture(scope="module")
def fake_twilio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeTwilioProcess]:
    fake = FakeTwilioProcess(tmp_path_factory.mktemp("fake_twilio_voice"))
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(scope="module")
def agent() -> ScriptedAgent:
    return ScriptedAgent(script, delay)


@pytest.fixture(scope="module")
def server(fake_twilio: FakeTwilioProcess, agent: ScriptedAgent) -> Iterator[ChannelServer]:
    """The IVR without a public URL: Twilio's signature is checked against the URL the request arrived at."""
    channel = TwilioVoiceInput(
        TwilioAccount(ACCOUNT_SID, AUTH_TOKEN, fake_twilio.url, public_url=""),
        VoiceSettings(language="es-MX", gather_timeout=4, turn_seconds=0.5, transfer_number=TRANSFER_NUMBER,
                      sms_number=SMS_NUMBER),
    )
    server = ChannelServer([channel], agent)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_a_call_starts_with_the_greeting_inside_a_spanish_gather(server: ChannelServer, agent: ScriptedAgent) -> None:
    call = Call(server)
    answer = call.start()
    assert answer.tag == "Response"
    [gather] = list(answer)
    assert gather.tag == "Gather"
    assert gather.attrib["input"] == "speech dtmf"
    assert gather.attrib["language"] == "es-MX"
    assert gather.attrib["speechTimeout"] == "auto"
    assert gather.attrib["timeout"] == "4"
    assert gather.attrib["actionOnEmptyResult"] == "true"
    assert gather.attrib["action"] == f"{call.webhook}?silences=0"
    assert "numDigits" not in gather.attrib
    [say] = list(gather)
    assert say.attrib == {"language": "es-MX", "voice": "Polly.Mia-Neural"}
    assert say.text == "¡Hola! Soy Credia, el asistente virtual. ¿En qué le puedo ayudar?"
    [message] = agent.messages_from(call.sid)
    assert message.text == "/greet" and message.input_channel == "twilio_voice"
    assert message.metadata["caller"] == call.caller


def test_options_are_spoken_and_a_key_or_a_spoken_number_picks_one(
    server: ChannelServer, agent: ScriptedAgent
) -> None:
    call = Call(server)
    call.start()
    answer = call.say("menú", confidence="0.87")
    assert agent.messages_from(call.sid)[-1].metadata == {
        "call_sid": call.sid, "caller": call.caller, "input": "speech", "speech_confidence": 0.87,
    }
    [gather] = list(answer)
    assert gather.attrib["numDigits"] == "1"
    assert "uno" in gather.attrib["hints"] and "ver créditos" in gather.attrib["hints"]
    text = spoken(answer)
    assert "Esto es lo que puedo hacer por usted:" in text
    assert "Para ver créditos, diga uno o marque 1." in text
    assert "Para hablar con una persona, diga tres o marque 3." in text
    assert "/ask_products" not in ET.tostring(answer, encoding="unicode")

    call.press("2")
    assert agent.messages_from(call.sid)[-1].text == "/check_debt"
    assert agent.messages_from(call.sid)[-1].metadata["input"] == "dtmf"
    call.say("menú")
    call.say("Tres.")
    assert agent.messages_from(call.sid)[-1].text == "/ask_human"
    call.say("uno")  # no options offered now: the words go to the bot as they are
    assert agent.messages_from(call.sid)[-1].text == "uno"


def test_links_are_not_read_aloud_but_sent_to_the_caller_by_sms(
    server: ChannelServer, fake_twilio: FakeTwilioProcess
) -> None:
    caller = f"+519{uuid.uuid4().int % 10**8:08d}"
    call = Call(server, caller)
    text = spoken(call.say("quiero pagar"))
    assert "http" not in text and "pagos.credia" not in text and "👍" not in text
    assert "150.00 soles" in text and "mensaje de texto" in text
    [sms] = fake_twilio.wait_accepted(caller, 1)
    assert sms["from"] == SMS_NUMBER and PAY_LINK in sms["body"]


def test_silence_gets_one_reprompt_then_a_polite_goodbye(server: ChannelServer, agent: ScriptedAgent) -> None:
    call = Call(server)
    call.start()
    reprompt = call.post(call.webhook + "?silences=0")
    [gather] = list(reprompt)
    assert gather.tag == "Gather" and gather.attrib["action"] == f"{call.webhook}?silences=1"
    said = [say.text for say in gather]
    assert said == ["Disculpe, no le escuché.", "¡Hola! Soy Credia, el asistente virtual. ¿En qué le puedo ayudar?"]

    goodbye = call.post(call.webhook + "?silences=1")
    assert [element.tag for element in goodbye] == ["Say", "Hangup"]
    assert "Hasta luego" in spoken(goodbye)
    assert len(agent.messages_from(call.sid)) == 1  # silence never reaches the bot


def test_silence_after_options_repeats_them_and_still_accepts_a_key(
    server: ChannelServer, agent: ScriptedAgent
) -> None:
    call = Call(server)
    call.say("menú")
    [gather] = list(call.post(call.webhook + "?silences=0"))
    assert gather.attrib["numDigits"] == "1"
    assert "diga uno o marque 1" in spoken(gather)
    call.post(call.webhook + "?silences=1", Digits="1")
    assert agent.messages_from(call.sid)[-1].text == "/ask_products"


def test_a_transfer_dials_the_configured_number_and_comes_back_if_nobody_answers(server: ChannelServer) -> None:
    call = Call(server)
    answer = call.say("asesor")
    assert [element.tag for element in answer] == ["Say", "Say", "Dial"]
    dial = answer.find("Dial")
    assert dial.text == TRANSFER_NUMBER and dial.attrib["action"] == f"{call.webhook}?dial=1"

    unanswered = call.post(call.webhook + "?dial=1", DialCallStatus="no-answer")
    [gather] = list(unanswered)
    assert gather.tag == "Gather" and "no hay asesores disponibles" in spoken(gather)
    talked = call.post(call.webhook + "?dial=1", DialCallStatus="completed")
    assert [element.tag for element in talked] == ["Hangup"]

    other = Call(server).say("cobranzas")
    assert other.find("Dial").text == "+5114440000"


def test_a_slow_turn_says_one_moment_and_twilio_comes_back_for_the_answer(server: ChannelServer) -> None:
    call = Call(server)
    waiting = call.say("lento")
    assert [element.tag for element in waiting] == ["Say", "Redirect"]
    assert spoken(waiting) == "Un momento, por favor."
    redirect = waiting.find("Redirect").text
    assert redirect == f"{call.webhook}?pending=1"
    answer = call.post(redirect)
    while answer.find("Redirect") is not None:  # a busy machine may need one more round
        answer = call.post(answer.find("Redirect").text)
    assert spoken(answer) == "Gracias por esperar." and answer.find("Gather") is not None

    too_slow = Call(server)
    url = too_slow.webhook
    answer = too_slow.say("muy lento")
    while answer.find("Redirect") is not None:
        url = answer.find("Redirect").text
        answer = too_slow.post(url)
    assert url.endswith("pending=2")
    assert [element.tag for element in answer] == ["Say", "Hangup"]


def test_what_the_bot_says_is_always_valid_escaped_xml(server: ChannelServer) -> None:
    answer = Call(server).say('Tom & Jerry <3 "comillas" \x07')
    assert spoken(answer) == 'Usted dijo: Tom & Jerry <3 "comillas"'


def test_a_call_that_ended_gets_an_empty_answer(server: ChannelServer, agent: ScriptedAgent) -> None:
    call = Call(server)
    assert len(call.post(CallStatus="completed")) == 0
    assert agent.messages_from(call.sid) == []


def test_requests_not_signed_by_twilio_or_malformed_are_refused(server: ChannelServer, agent: ScriptedAgent) -> None:
    call = Call(server)
    fields = call.fields(SpeechResult="hola")
    assert requests.post(call.webhook, data=fields, timeout=10).status_code == 403
    assert post_signed(call.webhook, fields, auth_token="otro").status_code == 403
    assert post_signed(call.webhook, [(k, v) for k, v in fields if k != "CallSid"]).status_code == 400
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert requests.post(call.webhook, data=b"x=" + b"a" * 100_000, headers=form, timeout=10).status_code == 413
    assert agent.messages_from(call.sid) == []


def test_voice_settings() -> None:
    assert VoiceSettings(language="es-US").voice == "Polly.Lupe-Neural"
    assert VoiceSettings(language="es-MX", voice="Polly.Andres-Neural").voice == "Polly.Andres-Neural"
    with pytest.raises(ValueError, match="TWILIO_VOICE_LANGUAGE"):
        VoiceSettings(language="en-US")
