"""End to end over Twilio: signed SMS and IVR webhooks into the real Rasa server (with the action server and the
mocks), replies out through the fake Twilio API the launcher started."""

from __future__ import annotations

import time
import uuid
import xml.etree.ElementTree as ET
from typing import Any, Dict, List

import pytest
import requests

from tests.e2e.conftest import Assistant
from tests.unit.twilio_support import post_signed

pytestmark = pytest.mark.e2e


class TwilioCustomer:
    """A customer writing by SMS: the bot's replies are read back from the fake Twilio API."""

    def __init__(self, assistant: Assistant) -> None:
        env = assistant.processes["rasa"].env
        self.token = env["TWILIO_AUTH_TOKEN"]
        self.api_url = env["TWILIO_API_URL"]
        self.webhook = f"{assistant.rasa_url}/webhooks/twilio_messaging/webhook"
        self.number = f"+519{uuid.uuid4().int % 10**8:08d}"

    def replies(self) -> List[Dict[str, Any]]:
        response = requests.get(f"{self.api_url}/_test/messages", params={"to": self.number}, timeout=10)
        response.raise_for_status()
        return [message for message in response.json() if message["http_status"] == 201]

    def send(self, text: str, timeout: float = 60.0) -> str:
        """Send an SMS and return the bot's new replies, joined, once they stop arriving."""
        before = len(self.replies())
        fields = [("MessageSid", "SM" + uuid.uuid4().hex), ("AccountSid", "AC"), ("From", self.number),
                  ("To", "+15005550006"), ("Body", text), ("NumMedia", "0")]
        response = post_signed(self.webhook, fields, auth_token=self.token)
        assert response.status_code == 200 and "<Response" in response.text
        deadline = time.monotonic() + timeout
        seen = before
        while time.monotonic() < deadline:
            replies = self.replies()
            if len(replies) > before and len(replies) == seen:  # nothing new for a moment: the turn is over
                return "\n".join(reply["body"] or "" for reply in replies[before:])
            seen = len(replies)
            time.sleep(0.7)
        raise AssertionError(f"no reply to {text!r} within {timeout}s")


def test_sms_conversation_with_numbered_options(assistant: Assistant) -> None:
    customer = TwilioCustomer(assistant)
    assert "Credia" in customer.send("hola")
    menu = customer.send("¿qué puedes hacer?")
    assert "1. Ver créditos" in menu and "2. Mi deuda" in menu and "3. Hablar con una persona" in menu
    assert "/ask_products" not in menu
    products = customer.send("1")
    assert "S/" in products and "TEA" in products
    user_events = [e for e in assistant.tracker(customer.number)["events"] if e["event"] == "user"]
    assert [e["text"] for e in user_events] == ["hola", "¿qué puedes hacer?", "/ask_products"]
    assert user_events[-1]["input_channel"] == "twilio_messaging"


def test_ivr_call_answers_with_spanish_twiml(assistant: Assistant) -> None:
    env = assistant.processes["rasa"].env
    webhook = f"{assistant.rasa_url}/webhooks/twilio_voice/webhook"
    call_sid = "CA" + uuid.uuid4().hex
    fields = [("CallSid", call_sid), ("AccountSid", "AC"), ("From", "+51987654321"), ("To", "+5117001234"),
              ("CallStatus", "ringing"), ("Direction", "inbound")]
    response = post_signed(webhook, fields, auth_token=env["TWILIO_AUTH_TOKEN"])
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/xml")
    answer = ET.fromstring(response.text)
    gather = answer.find("Gather")
    assert gather is not None and gather.attrib["language"] == "es-MX" and gather.attrib["input"] == "speech dtmf"
    greeting = " ".join(say.text or "" for say in gather.iter("Say"))
    assert "Credia" in greeting and all(say.attrib["language"] == "es-MX" for say in gather.iter("Say"))

    fields = [(k, "in-progress" if k == "CallStatus" else v) for k, v in fields] + [
        ("SpeechResult", "¿Qué puedes hacer?"), ("Confidence", "0.93")
    ]
    menu = ET.fromstring(post_signed(gather.attrib["action"], fields, auth_token=env["TWILIO_AUTH_TOKEN"]).text)
    spoken = " ".join(say.text or "" for say in menu.iter("Say"))
    assert "Para ver créditos, diga uno o marque 1." in spoken
    assert menu.find("Gather").attrib["numDigits"] == "1"
