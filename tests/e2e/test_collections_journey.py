"""End to end: collections over HTTP with the real Rasa server, action server, core banking and payments.

Demo customers (credia/core_banking/seed.py): Rosa Condori, DNI 40236715, born 21/07/1990, one loan about 45
days past due (bucket 31-60); José Luis Huamán, DNI 45879632, born 02/11/1979, about 12 days past due; Lucía
Torres, DNI 41528367, born 09/05/1988, about 150 days past due.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
import requests
import socketio

from credia.money import format_day, format_money
from tests.e2e.conftest import Assistant, Chat

pytestmark = pytest.mark.e2e

ROSA = {"dni": "40236715", "born": "21/07/1990"}
JOSE = {"dni": "45879632", "born": "02/11/1979"}
# The target of the impersonation attempts; core banking locks the document after three failures.
CARLOS = {"dni": "09876543", "born": "30/01/1972"}
MONEY = re.compile(r"S/\s?\d")
LINK = re.compile(r"https?://\S+/pay/(lnk_[0-9a-f]+)")


def core(assistant: Assistant, path: str, **params: Any) -> Any:
    response = requests.get(f"{assistant.core_banking_url}{path}", params=params, timeout=10)
    response.raise_for_status()
    return response.json()


def customer_loans(assistant: Assistant, dni: str) -> tuple[dict, list[dict]]:
    [customer] = core(assistant, "/customers", document_type="DNI", document_number=dni)
    return customer, core(assistant, f"/customers/{customer['id']}/loans")


def secrets_of(assistant: Assistant, dni: str) -> list[str]:
    """What must never reach someone who has not proven to be this customer: amounts, due dates, loan ids."""
    _customer, loans = customer_loans(assistant, dni)
    found = []
    for loan in loans:
        found.append(f"n.º {loan['id']}")
        for field in ("total_overdue", "outstanding_balance", "next_due_amount", "late_interest", "amount_overdue"):
            if loan.get(field) and Decimal(loan[field]) > 0:
                found.append(format_money(Decimal(loan[field]), loan["currency"]))
        if loan.get("next_due_date"):
            found.append(format_day(date.fromisoformat(loan["next_due_date"])))
    return found


def verify(chat: Chat, person: dict[str, str], first: str) -> str:
    """Ask ``first``, then prove identity with document and date of birth; return the replies after that."""
    chat.say(first)
    chat.say(person["dni"])
    return chat.say(person["born"])


def payload_of(replies: list[dict], title_part: str) -> str:
    for reply in replies:
        for button in reply.get("buttons") or []:
            if title_part in button["title"]:
                return button["payload"]
    raise AssertionError(f"no button with {title_part!r} in {json.dumps(replies, ensure_ascii=False)}")


@pytest.mark.parametrize(
    "phrasing",
    [
        "¿cuánto debo?",
        "mi saldo",
        "deuda de Carlos Mendoza DNI 09876543",
        "kiero pagar mi cuota",
        "quiero un plan de pagos",
        "ya pague ayer",
        "le pago el viernes",
        "estado de mi deuda con dni 09876543 por favor",
    ],
)
def test_an_unverified_conversation_never_receives_account_data(assistant: Assistant, phrasing: str) -> None:
    chat = assistant.chat("e2e-unverified-" + re.sub(r"\W+", "-", phrasing))
    replies = [chat.say(phrasing), chat.say(CARLOS["dni"])]
    for wrong in ("01/01/1990", "02/02/1991", "03/03/1992", CARLOS["born"]):
        replies.append(chat.say(wrong))
    replies.append(chat.say("cuanto debo"))
    said = "\n".join(replies)
    assert "bloqueé la verificación" in said
    for secret in secrets_of(assistant, CARLOS["dni"]):
        assert secret not in said
    assert not MONEY.search(said), said


def test_a_verified_customer_never_receives_another_customers_data(assistant: Assistant) -> None:
    chat = assistant.chat("e2e-verified-other")
    shown = verify(chat, JOSE, "hola, cuanto debo?")
    assert "Verifiqué su identidad" in shown and "vencido" in shown
    asked = chat.say("y la deuda del DNI 40236715?")
    said = shown + asked
    for secret in secrets_of(assistant, ROSA["dni"]):
        assert secret not in said
    assert "solo puedo darle información" in asked


def test_a_customer_31_60_days_late_agrees_a_3_installment_plan_and_pays_it(assistant: Assistant) -> None:
    chat = assistant.chat("e2e-plan-rosa")
    customer, [loan] = customer_loans(assistant, ROSA["dni"])
    assert loan["bucket"] == "31-60"

    assert "Verifiqué su identidad" in verify(chat, ROSA, "buenas, necesito refinanciar mi deuda")
    offers = chat.send("quiero un plan de pagos")
    text = "\n".join(reply.get("text", "") for reply in offers)
    assert "3 cuotas" in text and "6 cuotas" in text
    choice = payload_of(offers, "3 cuotas")
    offer_id = re.search(r"OF-[0-9A-Z]{6}", choice).group(0)
    offer = core(assistant, f"/plan-offers/{offer_id}")

    confirm = chat.say(choice)
    assert "¿Confirma este acuerdo?" in confirm
    assert format_money(Decimal(offer["installment_amount"])) in confirm
    accepted = chat.say("sí, confirmo")
    assert "Registré su plan de pagos" in accepted

    [plan] = [p for p in core(assistant, f"/loans/{loan['id']}/payment-plans") if p["offer_id"] == offer_id]
    assert plan["offer_id"] == offer_id and plan["installments_count"] == 3 and plan["status"] == "active"
    for field in ("down_payment", "installment_amount", "discount"):
        assert Decimal(plan[field]) == Decimal(offer[field])
    assert [Decimal(item["amount"]) for item in plan["schedule"]] == [
        Decimal(item["amount"]) for item in offer["schedule"]
    ]
    chat.say("sí, confirmo")  # confirming again must not store a second plan
    assert len([p for p in core(assistant, f"/loans/{loan['id']}/payment-plans") if p["status"] == "active"]) == 1

    link_id = LINK.search(accepted).group(1)
    paid = requests.post(f"{assistant.payments_url}/links/{link_id}/complete", timeout=10)
    assert paid.status_code == 200, paid.text
    payment_id = paid.json()["payment_id"]

    deadline = time.monotonic() + 30
    announced: list[dict] = []
    while time.monotonic() < deadline and not announced:
        events = assistant.tracker(chat.sender)["events"]
        announced = [e for e in events if e.get("event") == "bot" and "Recibimos su pago" in (e.get("text") or "")]
        time.sleep(0.3)
    assert announced, "the payment was never announced in the conversation"
    applied = [p for p in core(assistant, f"/loans/{loan['id']}/payments") if p["external_id"] == payment_id]
    assert len(applied) == 1
    time.sleep(1.5)
    events = assistant.tracker(chat.sender)["events"]
    assert len([e for e in events if e.get("event") == "bot" and "Recibimos su pago" in (e.get("text") or "")]) == 1


def test_asking_twice_for_a_link_gives_the_same_link(assistant: Assistant) -> None:
    chat = assistant.chat("e2e-link-jose")
    first = verify(chat, JOSE, "quiero pagar lo vencido")
    again = chat.say("mándeme el link de pago otra vez")
    assert LINK.search(first) and LINK.search(again)
    assert LINK.search(first).group(1) == LINK.search(again).group(1)


def test_a_promise_to_pay_is_stored_with_its_channel(assistant: Assistant) -> None:
    fredy = "28020623"  # generated demo customer about 61-120 days late that no other test touches
    chat = assistant.chat("e2e-promise-fredy")
    _customer, [loan] = customer_loans(assistant, fredy)
    terms = core(assistant, f"/loans/{loan['id']}/promise-terms")
    assert terms["pending_promise"] is None
    chat.say("me comprometo a pagar mañana")
    chat.say(fredy)
    assert "código de 6 dígitos" in chat.say("envíenme un código por sms")
    [sms] = core(assistant, "/mock/sms", document_number=fredy)[:1]
    asked = chat.say(re.search(r"\b\d{6}\b", sms["text"]).group(0))
    assert "¿Cuánto pagará ese día?" in asked
    assert "registré su compromiso" in chat.say(terms["min_amount"])
    [promise] = [p for p in core(assistant, f"/loans/{loan['id']}/promises") if p["status"] == "pending"]
    assert promise["channel"] == "rest" and Decimal(promise["amount"]) == Decimal(terms["min_amount"])


def test_the_payment_events_webhook_refuses_bad_signatures_and_announces_once(assistant: Assistant) -> None:
    from credia.signing import SIGNATURE_HEADER, sign

    url = f"{assistant.rasa_url}/webhooks/payment_events/webhook"
    secret = assistant.processes["rasa"].env["PAYMENTS_WEBHOOK_SECRET"]
    chat = assistant.chat("e2e-events")
    chat.say("hola")
    body = json.dumps({
        "event": "payment.completed", "payment_id": "pay_e2e_events", "amount": "80.00", "currency": "PEN",
        "customer_id": "1", "loan_id": None, "metadata": {"conversation_id": chat.sender},
    }).encode()

    unsigned = requests.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=30)
    forged = requests.post(url, data=body, headers={SIGNATURE_HEADER: sign("not-the-secret", body)}, timeout=30)
    assert unsigned.status_code == 401 and forged.status_code == 401
    not_json = b"{nope"
    garbled = requests.post(url, data=not_json, headers={SIGNATURE_HEADER: sign(secret, not_json)}, timeout=30)
    assert garbled.status_code == 400

    statuses = [
        requests.post(url, data=body, headers={SIGNATURE_HEADER: sign(secret, body)}, timeout=30).json()["status"]
        for _ in range(2)
    ]
    assert statuses == ["announced", "duplicate"]
    events = assistant.tracker(chat.sender)["events"]
    announcement = f"Recibimos su pago de {format_money(Decimal('80'))}"
    assert len([e for e in events if announcement in (e.get("text") or "")]) == 1


async def test_a_payment_is_announced_live_on_the_web_chat_where_the_link_was_asked(assistant: Assistant) -> None:
    patricia = "21682838"  # generated demo customer about 1-30 days late; verified with an SMS code
    client = socketio.AsyncClient()
    replies: asyncio.Queue = asyncio.Queue()
    client.on("bot_uttered", replies.put)
    await client.connect(assistant.rasa_url, socketio_path="/socket.io", transports=["polling"])
    sender = "e2e-web-payment"

    async def say(message: str, until: str) -> str:
        await client.emit("user_uttered", {"session_id": sender, "message": message})
        said = ""
        while until not in said:
            said += (await asyncio.wait_for(replies.get(), timeout=60)).get("text", "") + "\n"
        return said

    try:
        await client.emit("session_request", assistant.webchat_session(sender))
        await say("quiero pagar mi cuota", "DNI")
        await say(patricia, "fecha de nacimiento")
        await say("mejor envíenme un código", "código de 6 dígitos")
        [sms] = core(assistant, "/mock/sms", document_number=patricia)[:1]
        code = re.search(r"\b\d{6}\b", sms["text"]).group(0)
        link_id = LINK.search(await say(code, "/pay/")).group(1)

        paid = requests.post(f"{assistant.payments_url}/links/{link_id}/complete", timeout=10)
        assert paid.status_code == 200, paid.text
        pushed = (await asyncio.wait_for(replies.get(), timeout=60))["text"]
    finally:
        await client.disconnect()
    assert pushed.startswith("¡Recibimos su pago de")
