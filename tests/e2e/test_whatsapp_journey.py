"""End to end on WhatsApp: signed webhooks into the real Rasa server and action server (started by the launcher),
the bot's answers read back from the fake Graph API, which refuses anything WhatsApp would refuse."""

from __future__ import annotations

import json
import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Optional

import pytest
import requests

from credia.channels.whatsapp import signature_of
from tests.e2e.conftest import Assistant

pytestmark = pytest.mark.e2e


class WhatsAppCustomer:
    """A customer writing on WhatsApp, as Meta delivers it: signed notifications to the Rasa server."""

    def __init__(self, assistant: Assistant, name: str = "María Quispe") -> None:
        env = assistant.processes["rasa"].env
        self.secret = env["WHATSAPP_APP_SECRET"]
        self.graph = env["WHATSAPP_GRAPH_URL"].rsplit("/", 1)[0]
        self.webhook = f"{assistant.rasa_url}/webhooks/whatsapp/webhook"
        self.wa_id = "519" + str(uuid.uuid4().int)[:8]
        self.name = name

    def notification(self, kind: str, content: Dict[str, Any], message_id: Optional[str] = None) -> bytes:
        message = {"from": self.wa_id, "id": message_id or f"wamid.{uuid.uuid4().hex}",
                   "timestamp": str(int(time.time())), "type": kind, kind: content}
        value = {"messaging_product": "whatsapp",
                 "metadata": {"display_phone_number": "15550783881", "phone_number_id": "100000000000001"},
                 "contacts": [{"profile": {"name": self.name}, "wa_id": self.wa_id}], "messages": [message]}
        payload = {"object": "whatsapp_business_account",
                   "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": value}]}]}
        return json.dumps(payload, ensure_ascii=False).encode()

    def post(self, body: bytes, signed: bool = True) -> requests.Response:
        headers = {"Content-Type": "application/json"}
        if signed:
            headers["X-Hub-Signature-256"] = signature_of(self.secret, body)
        return requests.post(self.webhook, data=body, headers=headers, timeout=30)

    def write(self, text: str) -> float:
        """Send a text; return how long the webhook took to be acknowledged."""
        return self.deliver(self.notification("text", {"body": text}))

    def press(self, reply: Dict[str, str]) -> float:
        return self.deliver(self.notification("interactive", {"type": "button_reply", "button_reply": reply}))

    def deliver(self, body: bytes) -> float:
        started = time.perf_counter()
        response = self.post(body)
        elapsed = time.perf_counter() - started
        assert response.status_code == 200, response.text
        return elapsed

    def received(self) -> List[Dict[str, Any]]:
        """Every message the bot sent to this customer that the Graph API accepted, oldest first."""
        response = requests.get(f"{self.graph}/_test/messages", params={"to": self.wa_id}, timeout=10)
        response.raise_for_status()
        sent = response.json()
        rejected = [m for m in sent if m["status"] != "accepted"]
        assert not rejected, f"the Graph API refused what the bot sent: {rejected}"
        return [m["message"] for m in sent]

    def wait_for(self, check: Callable[[Dict[str, Any]], bool], after: int, timeout: float = 60) -> Dict[str, Any]:
        """The first message after the first ``after`` ones that passes ``check``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.received()[after:]:
                if check(message):
                    return message
            time.sleep(0.2)
        raise AssertionError(f"no matching bot message; got {self.received()[after:]}")


def body_of(message: Dict[str, Any]) -> str:
    if message["type"] == "text":
        return message["text"]["body"]
    if message["type"] == "interactive":
        return message["interactive"]["body"]["text"]
    return ""


def test_a_whatsapp_conversation_with_reply_buttons(assistant: Assistant) -> None:
    customer = WhatsAppCustomer(assistant)
    assert customer.post(customer.notification("text", {"body": "hola"}), signed=False).status_code == 401

    hello = customer.notification("text", {"body": "hola"})
    customer.deliver(hello)
    customer.wait_for(lambda m: "Credia" in body_of(m), after=0)
    customer.deliver(hello)  # Meta delivers again: answered once
    seen = len(customer.received())

    customer.write("¿qué puedes hacer?")
    menu = customer.wait_for(lambda m: m["type"] == "interactive", after=seen)
    assert menu["interactive"]["type"] == "button"
    assert "puedo hacer" in menu["interactive"]["body"]["text"]
    assert len(menu["interactive"]["body"]["text"]) <= 1024
    buttons = [button["reply"] for button in menu["interactive"]["action"]["buttons"]]
    assert 1 <= len(buttons) <= 3
    assert all(len(b["title"]) <= 20 and len(b["id"]) <= 256 for b in buttons)
    assert [b["id"] for b in buttons] == ["/ask_products", "/check_debt", "/ask_human"]
    seen = len(customer.received())

    customer.press(buttons[0])
    products = customer.wait_for(lambda m: "créditos que ofrecemos" in body_of(m), after=seen)
    assert "S/" in body_of(products) and "TEA" in body_of(products)
    assert sum(body_of(m).startswith("¡Hola!") for m in customer.received()) == 1

    # Rasa stores the turn after its answers went out: give it a moment.
    deadline = time.monotonic() + 10
    while True:
        users = [event for event in assistant.tracker(customer.wa_id)["events"] if event["event"] == "user"]
        if len(users) == 3 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert [event["text"] for event in users] == ["hola", "¿qué puedes hacer?", "/ask_products"]
    assert {event["input_channel"] for event in users} == {"whatsapp"}
    assert users[0]["metadata"]["whatsapp"]["wa_id"] == customer.wa_id
    assert users[0]["metadata"]["whatsapp"]["profile_name"] == "María Quispe"


def test_webhook_acknowledgement_while_the_bot_is_busy(assistant: Assistant) -> None:
    customers = [WhatsAppCustomer(assistant, name=f"Cliente {n}") for n in range(10)]
    texts = ["hola", "¿qué créditos tienen?", "¿qué puedes hacer?"]
    jobs = [(customer, text) for text in texts for customer in customers]

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=6) as pool:
        latencies = list(pool.map(lambda job: job[0].write(job[1]), jobs))
    for customer in customers:
        customer.wait_for(lambda m: m["type"] == "interactive", after=0, timeout=180)
    processed = time.monotonic() - started

    p95 = statistics.quantiles(latencies, n=20)[-1]
    print(
        f"\nWhatsApp webhook acknowledgement over {len(latencies)} messages while the bot is busy: "
        f"p50 {statistics.median(latencies) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, "
        f"max {max(latencies) * 1000:.0f} ms; all answered in {processed:.1f} s"
    )
