"""The agent console in a real browser (Debian's Chromium driven by Playwright) against a real desk process and a
fake Rasa server that records what the desk sends.

An agent logs in, sees a handoff the assistant opened through the service API appear in the queue without
reloading, opens it and reads the context card and the transcript, takes it, sees the customer's new message
arrive live, replies with a canned response, leaves an internal note and resolves with the satisfaction
question. Screenshot artifact: ``results/screenshots/desk.png`` (the conversation with its context card).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import pytest
from playwright.sync_api import Page, expect

from credia.settings import PROJECT_ROOT
from tests.e2e.browser import open_chromium, playwright_driver
from tests.unit.fake_receiver import FakeReceiver
from tests.unit.test_desk_api import (
    AGENT_PASSWORD,
    DeskService,
    calls_for,
    handoff_body,
    split,
    start_desk,
    wait_calls,
)

pytestmark = pytest.mark.e2e

SCREENSHOT = PROJECT_ROOT / "results" / "screenshots" / "desk.png"
CONVERSATION = "whatsapp:+51987654321"

expect.set_options(timeout=15_000)


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory, fake_rasa: FakeReceiver) -> Iterator[DeskService]:
    service = start_desk(tmp_path_factory.mktemp("desk-console"), fake_rasa.url)
    yield service
    service.stop()


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Page]:
    with playwright_driver() as driver:
        context = open_chromium(driver, tmp_path / "profile", timeout_ms=15_000)
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


def test_an_agent_takes_a_handoff_answers_and_hands_it_back(
    page: Page, desk: DeskService, fake_rasa: FakeReceiver
) -> None:
    requested = []
    page.on("request", lambda request: requested.append(request.url))

    page.goto(f"{desk.url}/console")
    expect(page).to_have_url(re.compile(r"/login\?next=/console$"))
    page.get_by_label("Usuario").fill("agente1")
    page.get_by_label("Contraseña").fill("no-es-la-clave")
    page.get_by_role("button", name="Ingresar").click()
    expect(page.get_by_role("alert")).to_contain_text("Usuario o contraseña incorrectos")
    page.get_by_label("Contraseña").fill(AGENT_PASSWORD)
    page.get_by_role("button", name="Ingresar").click()
    expect(page.get_by_role("heading", name="Conversaciones", level=1)).to_be_visible()
    expect(page.locator("#queue")).to_contain_text("No hay clientes esperando")
    expect(page.locator("body")).to_have_attribute("data-live-connected", "true")

    # The assistant hands a conversation off; it shows up in the open console by itself.
    opened = desk.api("POST", "/api/handoffs", handoff_body(CONVERSATION, priority="high"))
    assert opened.status_code == 201, opened.text
    customer = page.locator("#queue").get_by_role("link", name="María Elena Quispe")
    expect(customer).to_be_visible()
    expect(page.locator("#queue")).to_contain_text("Desconoce la deuda")
    expect(page.locator("#queue")).to_contain_text("Alta")
    customer.click()

    context = page.get_by_role("complementary", name="Contexto")
    expect(context).to_contain_text("Identidad verificada")
    expect(context).to_contain_text("Desconoce la deuda")
    expect(context).to_contain_text("Cobranza")
    expect(context).to_contain_text("350.00")
    expect(context).to_contain_text("PO-1A2B3C")
    transcript = page.get_by_role("log", name="Mensajes")
    expect(transcript).to_contain_text("no reconozco esta deuda")
    page.get_by_role("button", name="Tomar la conversación").click()

    reply = page.get_by_label("Respuesta al cliente")
    expect(reply).to_be_visible()
    desk.api("POST", f"/api/handoffs/{CONVERSATION}/messages",
             {"event_id": f"{CONVERSATION}:1", "text": "¿Me ayuda por favor?", "at": "2025-07-30T10:02:00-05:00"})
    expect(transcript).to_contain_text("¿Me ayuda por favor?")

    page.get_by_label("Respuestas rápidas").select_option(label="Saludo")
    page.get_by_role("button", name="Insertar").click()
    expect(reply).to_have_value(re.compile(r"^Hola, María Elena Quispe\. Le saluda Andrea Rojas"))
    reply.fill("Hola, María. Soy Andrea y reviso su caso ahora mismo.")
    page.get_by_role("button", name="Enviar al cliente").click()
    expect(transcript.locator(".msg-agent")).to_contain_text("Soy Andrea")
    expect(transcript.locator(".msg-agent")).to_contain_text("Entregado")
    expect(reply).to_have_value("")

    page.get_by_label("Nota interna").fill("Pidió revisar el pago de julio; no mencionar el plan todavía.")
    page.get_by_role("button", name="Guardar nota").click()
    expect(transcript.locator(".msg-note")).to_contain_text("no mencionar el plan todavía")
    expect(transcript.locator(".msg-note")).to_contain_text("el cliente no la ve")

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    [sent] = calls_for(fake_rasa, CONVERSATION)
    assert split(sent)[2] == [{"event": "bot", "text": "Hola, María. Soy Andrea y reviso su caso ahora mismo.",
                               "metadata": {"from": "agent", "agent": "Andrea Rojas"}}]

    page.get_by_label("Resultado").select_option(label="Resuelto")
    expect(page.get_by_label("Fecha y hora de la llamada")).to_be_hidden()
    expect(page.get_by_label("Preguntar al cliente por su satisfacción")).to_be_checked()
    page.get_by_role("button", name="Resolver y devolver al asistente").click()
    expect(page.locator("#conversation-head")).to_contain_text("Resuelta")
    expect(page.get_by_label("Respuesta al cliente")).to_have_count(0)
    calls = wait_calls(fake_rasa, CONVERSATION, 3)
    assert [split(call)[2] for call in calls[1:]] == [
        [{"event": "resume"}], {"name": "EXTERNAL_handoff_resolved", "entities": {"survey": "yes"}}
    ]

    page.get_by_role("link", name="Conversaciones").click()
    expect(page.locator("#resolved")).to_contain_text("María Elena Quispe")
    assert all(url.startswith(desk.url) for url in requested), "the console loads nothing from elsewhere"
