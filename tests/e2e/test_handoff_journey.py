"""End to end: a WhatsApp customer is handed to a person at the real agent desk and back to the bot.

Every process runs for real (launcher): Rasa, the action server, the desk, the fake Graph API. The agent works
the desk's console over HTTP as its page does (session cookie and CSRF token).
"""

from __future__ import annotations

import re
import time
from functools import partial
from typing import Any, Dict

import pytest
import requests

from tests.e2e.conftest import Assistant
from tests.e2e.test_whatsapp_journey import WhatsAppCustomer
from tests.waiting import wait_until

pytestmark = pytest.mark.e2e
eventually = partial(wait_until, timeout=60, interval=0.3)

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class Agent:
    """An agent logged into the desk's console."""

    def __init__(self, assistant: Assistant, username: str = "agente1") -> None:
        desk = assistant.processes["desk"].env
        self.url = f"http://127.0.0.1:{desk['DESK_PORT']}"
        self.token = desk["DESK_API_TOKEN"]
        self.http = requests.Session()
        login = self.http.post(f"{self.url}/login", data={"username": username, "password": desk["DESK_AGENT_PASSWORD"]},
                               allow_redirects=False, timeout=10)
        assert login.status_code == 303, login.text
        self.csrf = CSRF.search(self.http.get(f"{self.url}/console", timeout=10).text).group(1)
        self.act("/console/presence", available="1")

    def act(self, path: str, **fields: Any) -> Dict[str, Any]:
        response = self.http.post(f"{self.url}{path}", data={"csrf": self.csrf, **fields},
                                  headers={"Accept": "application/json", "Origin": self.url}, timeout=10)
        assert response.status_code == 200, (path, response.status_code, response.text)
        return response.json()

    def handoff(self, conversation_id: str) -> Dict[str, Any]:
        response = requests.get(f"{self.url}/api/handoffs/{conversation_id}",
                                headers={"Authorization": f"Bearer {self.token}"}, timeout=10)
        return response.json() if response.status_code == 200 else {}

    def page(self, handoff_id: int) -> str:
        return self.http.get(f"{self.url}/console/conversations/{handoff_id}", timeout=10).text



def texts(customer: WhatsAppCustomer, after: int) -> list[str]:
    found = []
    for message in customer.received()[after:]:
        body = message.get("text", {}).get("body") or message.get("interactive", {}).get("body", {}).get("text")
        found.append(body or str(message))
    return found


def test_a_whatsapp_customer_is_served_by_a_person_and_returns_to_the_bot(assistant: Assistant) -> None:
    agent = Agent(assistant)
    customer = WhatsAppCustomer(assistant, name="Rosa Condori")
    customer.write("hola")
    customer.wait_for(lambda m: True, after=0)
    sent = len(customer.received())
    customer.write("quiero hablar con un asesor por favor")

    status = eventually(lambda: (found := agent.handoff(customer.wa_id)).get("status") == "queued" and found,
                        what="the desk receiving the handoff")
    told = eventually(lambda: texts(customer, sent), what="the bot telling the customer")
    assert any("le comunico con una persona" in text for text in told)
    handoff_id = status["handoff_id"]
    page = agent.page(handoff_id)
    assert "quiero hablar con un asesor por favor" in page and "hola" in page, page

    agent.act(f"/console/conversations/{handoff_id}/claim")
    sent = len(customer.received())
    agent.act(f"/console/conversations/{handoff_id}/reply", text="Hola, soy Andrea. ¿En qué le ayudo?")
    assert eventually(lambda: texts(customer, sent), what="the agent's reply on WhatsApp") == [
        "Hola, soy Andrea. ¿En qué le ayudo?"
    ]

    assistant.processes["desk"].stop()  # a message sent while the desk is down is not lost
    customer.write("tengo una duda con mi cuota de diciembre")
    time.sleep(2)
    assistant.processes["desk"].start()
    assistant.processes["desk"].wait_healthy(60)
    eventually(lambda: "tengo una duda con mi cuota de diciembre" in agent.page(handoff_id),
               what="the customer's message reaching the desk")
    time.sleep(1.5)
    assert len(customer.received()) == sent + 1, "the bot must stay silent while a person has the conversation"

    agent.act(f"/console/conversations/{handoff_id}/resolve", outcome="resolved", survey="0")
    assert eventually(lambda: any("Soy Credia otra vez" in t for t in texts(customer, sent + 1)),
                      what="the hand-back message")
    back = len(customer.received())
    customer.write("¿qué puedes hacer?")
    menu = customer.wait_for(lambda m: m.get("type") == "interactive", after=back)
    assert "Ver créditos" in str(menu)
    events = assistant.tracker(customer.wa_id)["events"]
    assert any(e.get("event") == "bot" and (e.get("metadata") or {}).get("from") == "agent" for e in events)
