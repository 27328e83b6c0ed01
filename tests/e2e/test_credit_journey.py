"""End to end: credit applications in Spanish through the real Rasa server, action server and core banking."""

from __future__ import annotations

import asyncio
import re
import time
from decimal import Decimal

import pytest
import requests
import socketio

from tests.e2e.conftest import Assistant, Chat

pytestmark = pytest.mark.e2e

# New customers (not in the seed) whose mock bureau answers are known: see credia/core_banking/bureau.py.
CLEAN_BUREAU_DNI = "71234568"
LOSS_BUREAU_DNI = "72000004"
CODE = re.compile(r"SOL-[0-9A-Z]{6}")


def apply(chat: Chat, answers: list[str]) -> tuple[list[str], float]:
    """Give one answer per message; return every reply and the seconds the last one (the result) took."""
    replies = []
    started = time.monotonic()
    for answer in answers:
        started = time.monotonic()
        replies.append(chat.say(answer))
    return replies, time.monotonic() - started


def application_answers(dni: str, born: str, email: str, phone: str, tenure: str = "hace 3 años") -> list[str]:
    return [
        "buenas, quisiera un prestamo",
        "el personal",
        "8 mil soles",
        "a 18 meses",
        "si, autorizo",
        "gano 4500 al mes",
        "soy dependiente, en planilla",
        tenure,
        dni,
        born,
        email,
        phone,
    ]


def customer_applications(assistant: Assistant, dni: str) -> list[dict]:
    customers = requests.get(
        f"{assistant.core_banking_url}/customers", params={"document_type": "DNI", "document_number": dni}, timeout=10
    ).json()
    assert len(customers) == 1
    return requests.get(f"{assistant.core_banking_url}/customers/{customers[0]['id']}/applications", timeout=10).json()


def test_a_customer_completes_an_application_and_core_banking_holds_what_they_said(assistant: Assistant) -> None:
    chat = assistant.chat("e2e-credito-1")
    answers = application_answers(CLEAN_BUREAU_DNI, "15/03/1990", "Ana.Rojas@Correo.pe", "987 654 321")
    replies, seconds = apply(chat, answers)
    print(f"\npre-evaluation result after the last answer: {seconds * 1000:.0f} ms")

    assert "Paso 1 de 11" in replies[0]
    for step, reply in enumerate(replies[1:11], start=2):
        assert f"Paso {step} de 11" in reply, (step, reply)
    result = replies[-1]
    code = CODE.search(result)
    assert code, result
    assert "TEA" in result and "TCEA" in result and "cuota mensual" in result

    [application] = [a for a in customer_applications(assistant, CLEAN_BUREAU_DNI) if a["code"] == code.group()]
    assert application["product_code"] == "PERSONAL"
    assert Decimal(application["amount"]) == Decimal("8000")
    assert application["term_months"] == 18
    assert Decimal(application["monthly_income"]) == Decimal("4500")
    assert application["employment_type"] == "employee"
    assert application["employment_tenure_months"] == 36
    assert application["email"] == "Ana.Rojas@correo.pe"
    assert application["phone"] == "+51987654321"
    assert application["outcome"] in {"pre_approved", "counter_offer"}


def test_an_invalid_answer_gets_a_reason_and_then_an_example_and_a_person(assistant: Assistant) -> None:
    chat = assistant.chat("e2e-credito-errores")
    chat.say("quiero un prestamo personal")
    first = chat.say("un millon de soles")
    assert "entre S/" in first and "Paso 2 de 11" in first
    second = chat.say("900 mil")
    assert "Por ejemplo" in second and "asesor" in second
    assert "Paso 3 de 11" in chat.say("mejor 6 mil")


def test_a_customer_with_a_bureau_knock_out_is_declined_politely(assistant: Assistant) -> None:
    chat = assistant.chat("e2e-credito-2")
    replies, _ = apply(chat, application_answers(LOSS_BUREAU_DNI, "02/07/1985", "luis@correo.pe", "912345670"))
    result = replies[-1]
    assert CODE.search(result), result
    assert "no podemos aprobarla" in result
    for word in ("Pérdida", "rating", "moroso", "deudor"):
        assert word not in result
    [application] = customer_applications(assistant, LOSS_BUREAU_DNI)
    assert application["outcome"] == "declined" and application["status"] == "rejected"


def test_status_is_told_to_the_applicant_and_never_to_someone_else(assistant: Assistant) -> None:
    owner = assistant.chat("e2e-estado-dueno")
    replies, _ = apply(owner, application_answers("71234561", "20/01/1988", "maria@correo.pe", "998877665"))
    code = CODE.search(replies[-1]).group()

    stranger = assistant.chat("e2e-estado-otro")
    stranger.say(f"hola, como va la solicitud {code}?")
    reply = stranger.say("45879632")
    assert "No encontré" in reply and code not in reply and "S/" not in reply

    owner_again = assistant.chat("e2e-estado-dueno-otra-sesion")
    owner_again.say("quiero saber el estado de mi solicitud")
    owner_again.say("71234561")
    reply = owner_again.say("20/01/1988")
    assert code in reply and "Préstamo Personal" in reply


async def test_documents_sent_over_the_web_chat_are_stored_against_the_application(assistant: Assistant) -> None:
    """The socket.io channel carries attachments in the message metadata; REST cannot, so the same
    conversation (same sender id) applies over REST and sends its document over socket.io."""
    sender = "e2e-documentos"
    replies, _ = apply(assistant.chat(sender), application_answers("71234565", "08/08/1992", "rosa@correo.pe", "976543210"))
    code = CODE.search(replies[-1]).group()

    client = socketio.AsyncClient()
    answers: asyncio.Queue = asyncio.Queue()
    client.on("bot_uttered", answers.put)
    await client.connect(assistant.rasa_url, socketio_path="/socket.io", transports=["polling"])
    try:
        await client.emit("session_request", assistant.webchat_session(sender))
        await client.emit("user_uttered", {
            "session_id": sender,
            "message": "/send_document",
            "metadata": {"attachments": [
                {"filename": "dni.jpg", "content_type": "image/jpeg", "media_url": "https://cdn.example.pe/dni.jpg"}
            ]},
        })
        reply = (await asyncio.wait_for(answers.get(), timeout=30))["text"]
    finally:
        await client.disconnect()
    assert reply.startswith("Recibí:") and "Aún falta" in reply

    [application] = [a for a in customer_applications(assistant, "71234565") if a["code"] == code]
    documents = requests.get(
        f"{assistant.core_banking_url}/applications/{application['id']}/documents", timeout=10
    ).json()
    assert [d["filename"] for d in documents["received"]] == ["dni.jpg"]
