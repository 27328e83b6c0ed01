"""The web chat in a real browser (Debian's Chromium driven by Playwright) against the real assistant.

A customer opens the page the Rasa server serves, chats, presses a button, reloads and finds the same
conversation; a signed link from another channel continues that channel's conversation; a lender's site
embeds the launcher. The server-side tracker is checked after each journey. Screenshot artifacts:
``results/screenshots/webchat.png`` (the page) and ``webchat-embed.png`` (the launcher's panel on a site).
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from playwright.sync_api import BrowserContext, Page, Playwright, expect

from credia.channels.links import sign_conversation_link, webchat_url
from credia.settings import PROJECT_ROOT
from tests.e2e.browser import open_chromium, playwright_driver
from tests.e2e.conftest import Assistant

pytestmark = pytest.mark.e2e

SCREENSHOT = PROJECT_ROOT / "results" / "screenshots" / "webchat.png"
EMBED_SCREENSHOT = SCREENSHOT.with_name("webchat-embed.png")
SESSION_KEY = "credia.webchat.session"

expect.set_options(timeout=30_000)  # the first replies of a fresh Rasa server take a few seconds


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with playwright_driver() as driver:
        yield driver


@pytest.fixture
def new_browser(playwright: Playwright, tmp_path: Path) -> Iterator[Callable[[], BrowserContext]]:
    """Opens Chromium with a fresh, empty profile (its own --user-data-dir) per call."""
    contexts: list[BrowserContext] = []

    def open_browser() -> BrowserContext:
        context = open_chromium(playwright, tmp_path / f"profile-{len(contexts)}", width=1100, height=800)
        contexts.append(context)
        return context

    yield open_browser
    for context in contexts:
        context.close()


def webchat(assistant: Assistant) -> str:
    return f"{assistant.rasa_url}/webhooks/webchat/"


def say(page: Page, text: str) -> None:
    """Type a message and press Enter, as a customer does."""
    box = page.get_by_label("Escriba su mensaje")
    box.fill(text)
    box.press("Enter")


def settled_messages(page: Page, quiet_seconds: float = 1.5) -> list[str]:
    """The messages on screen once no new one has arrived for ``quiet_seconds`` (the bot may send several)."""
    messages = page.locator(".cw-message")
    count, since = messages.count(), time.monotonic()
    deadline = since + 30
    while time.monotonic() - since < quiet_seconds and time.monotonic() < deadline:
        time.sleep(0.2)
        if messages.count() != count:
            count, since = messages.count(), time.monotonic()
    return messages.all_inner_texts()


def push_greeting(assistant: Assistant, conversation_id: str) -> None:
    """Make the bot speak first, on the conversation's latest channel, as a payment or an agent reply does."""
    pushed = requests.post(
        f"{assistant.rasa_url}/conversations/{conversation_id}/trigger_intent",
        params={"token": assistant.processes["rasa"].env["RASA_AUTH_TOKEN"], "output_channel": "latest"},
        json={"name": "greet"},
        timeout=30,
    )
    assert pushed.status_code == 200, pushed.text


def user_turns(assistant: Assistant, sender: str, channel: str | None = None) -> list[str]:
    events = assistant.tracker(sender)["events"]
    return [
        event["text"]
        for event in events
        if event["event"] == "user" and channel in (None, event.get("input_channel"))
        and not event["text"].startswith("EXTERNAL:")
    ]


def test_the_rasa_server_serves_the_page_and_its_files_without_a_cdn(assistant: Assistant) -> None:
    page = requests.get(f"{assistant.rasa_url}/webhooks/webchat?embed=1", timeout=10)
    assert page.status_code == 200 and page.url == f"{webchat(assistant)}?embed=1"  # redirected to the slash
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert 'data-socketio-path="/socket.io"' in page.text and 'lang="es"' in page.text
    assert "http" not in page.text.split("<body>")[1]  # every file comes from this server

    client = requests.get(f"{webchat(assistant)}static/vendor/socket.io.min.js", timeout=10)
    assert client.status_code == 200 and "Socket.IO v4." in client.text[:200]
    embed = requests.get(f"{webchat(assistant)}static/embed.js", timeout=10)
    assert embed.headers["Content-Type"].endswith("charset=utf-8") and "¿Le ayudamos?" in embed.text
    for missing in ("static/index.html", "static/nothing.js", "static/../webchat.py", "static/%2e%2e/links.py"):
        assert requests.get(f"{webchat(assistant)}{missing}", timeout=10).status_code == 404, missing


def test_a_customer_chats_reloads_and_keeps_the_conversation(
    assistant: Assistant, new_browser: Callable[[], BrowserContext]
) -> None:
    page = new_browser().new_page()
    page.goto(webchat(assistant))
    expect(page.locator("#cw-status")).to_have_text("En línea")
    expect(page.locator("#cw-messages")).to_have_attribute("aria-live", "polite")

    say(page, "hola")
    bot = page.locator(".cw-message--bot")
    expect(page.locator(".cw-message--user").last).to_contain_text("hola")
    expect(bot.first).to_contain_text("Credia")
    expect(page.locator("#cw-typing")).to_be_hidden()

    # The typing indicator shows from the moment a message leaves until the bot answers.
    page.get_by_label("Escriba su mensaje").fill("¿qué puedes hacer?")
    assert page.evaluate(
        "() => { document.getElementById('cw-form').requestSubmit();"
        " return !document.getElementById('cw-typing').hidden; }"
    )
    choice = page.get_by_role("button", name="Ver créditos")
    expect(choice).to_be_visible()
    assert choice.evaluate("element => element.tagName") == "BUTTON"
    expect(page.locator("#cw-typing")).to_be_hidden()

    choice.click()  # sends the payload, shows the title as the customer's message
    expect(page.locator(".cw-message--user").last).to_contain_text("Ver créditos")
    expect(page.locator("#cw-messages")).to_contain_text("créditos que ofrecemos")
    expect(choice).to_be_disabled()
    before = settled_messages(page)
    session_id = page.evaluate(f"localStorage.getItem('{SESSION_KEY}')")
    assert session_id

    page.reload()
    expect(page.locator("#credia-chat")).to_have_attribute("data-session-id", session_id)
    expect(page.locator("#cw-status")).to_have_text("En línea")
    assert page.locator(".cw-message").all_inner_texts() == before
    expect(page.get_by_role("button", name="Ver créditos")).to_be_disabled()  # answered before the reload
    assert page.evaluate(f"localStorage.getItem('{SESSION_KEY}')") == session_id

    # The reloaded page is back in the conversation's room: a message the server pushes shows up.
    bot_count = bot.count()
    push_greeting(assistant, session_id)
    expect(bot).to_have_count(bot_count + 1)
    expect(bot.last).to_contain_text("Credia")

    say(page, "muchas gracias")
    expect(bot.last).to_contain_text("Con gusto")
    settled_messages(page)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT))

    assert user_turns(assistant, session_id, "socketio") == [
        "hola", "¿qué puedes hacer?", "/ask_products", "muchas gracias"
    ]
    bot_texts = [e.get("text") or "" for e in assistant.tracker(session_id)["events"] if e["event"] == "bot"]
    assert any("créditos que ofrecemos" in text for text in bot_texts)


def test_a_signed_link_continues_a_conversation_from_another_channel(
    assistant: Assistant, new_browser: Callable[[], BrowserContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    sender = f"otro-canal-{uuid.uuid4().hex[:10]}"
    assert "Credia" in assistant.chat(sender).say("hola")  # started elsewhere (the REST channel here)
    for name in ("CONVERSATION_LINK_SECRET", "WEBCHAT_PUBLIC_URL"):
        monkeypatch.setenv(name, assistant.processes["rasa"].env[name])
    link = webchat_url(sender, ttl_seconds=600)
    assert link.startswith(webchat(assistant) + "?t=")

    page = new_browser().new_page()
    page.goto(link)
    expect(page.locator("#credia-chat")).to_have_attribute("data-session-id", sender)
    expect(page.locator("#cw-messages")).to_contain_text("Continuamos aquí la conversación")
    assert "t" not in parse_qs(urlsplit(page.url).query)  # the token leaves the address bar
    say(page, "¿qué puedes hacer?")
    expect(page.get_by_role("button", name="Ver créditos")).to_be_visible()

    assert user_turns(assistant, sender) == ["hola", "¿qué puedes hacer?"]
    assert user_turns(assistant, sender, "socketio") == ["¿qué puedes hacer?"]


def test_a_bad_or_expired_link_is_explained_and_the_chat_still_works(
    assistant: Assistant, new_browser: Callable[[], BrowserContext]
) -> None:
    secret = assistant.processes["rasa"].env["CONVERSATION_LINK_SECRET"]
    expired = sign_conversation_link("cliente-vencido", 60, secret=secret, now=time.time() - 3600)
    session = f"{webchat(assistant)}session"
    answers = {
        "missing": requests.get(session, timeout=10),
        "malformed": requests.get(session, params={"t": "no-es-un-token"}, timeout=10),
        "signature": requests.get(
            session, params={"t": sign_conversation_link("cliente-1", 60, secret="otro-secreto")}, timeout=10
        ),
        "expired": requests.get(session, params={"t": expired}, timeout=10),
    }
    assert {reason: answer.status_code for reason, answer in answers.items()} == {
        "missing": 400, "malformed": 400, "signature": 403, "expired": 403
    }
    assert all(answer.json()["reason"] == reason for reason, answer in answers.items())
    assert "vencido" in answers["expired"].json()["detail"]

    page = new_browser().new_page()
    page.goto(f"{webchat(assistant)}?t={expired}")
    expect(page.locator("#cw-messages")).to_contain_text("El enlace ha vencido")
    expect(page.locator("#cw-status")).to_have_text("En línea")
    assert page.locator("#credia-chat").get_attribute("data-session-id") != "cliente-vencido"
    say(page, "hola")
    expect(page.locator(".cw-message--bot").last).to_contain_text("Credia")


@pytest.fixture
def lender_site(assistant: Assistant) -> Iterator[str]:
    """A lender's page on another origin (its own port) with the launcher's script tag, served for real."""
    page = (
        '<!doctype html><html lang="es"><head><title>Financiera de ejemplo</title></head><body>'
        "<h1>Financiera de ejemplo</h1>"
        f'<script src="{assistant.rasa_url}/webhooks/webchat/static/embed.js" async></script></body></html>'
    ).encode()

    class LenderPage(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the http.server naming)
            self.send_response(200)
            self.send_header("Content-Type", "text/html")  # no charset on purpose: embed.js must cope
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), LenderPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_a_lender_site_embeds_the_launcher(
    assistant: Assistant, new_browser: Callable[[], BrowserContext], lender_site: str
) -> None:
    page = new_browser().new_page()
    page.goto(lender_site)
    launcher = page.get_by_role("button", name="¿Le ayudamos? Chatee con nosotros")
    launcher.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#credia-webchat-panel")).to_be_visible()
    expect(launcher).to_have_attribute("aria-expanded", "true")

    chat = page.frame_locator("iframe[title='Chat con Credia']")
    box = chat.get_by_label("Escriba su mensaje")
    expect(box).to_be_focused()
    box.fill("hola")
    box.press("Enter")
    expect(chat.locator(".cw-message--bot").last).to_contain_text("Credia")
    EMBED_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(EMBED_SCREENSHOT))

    box.press("Escape")
    expect(page.locator("#credia-webchat-panel")).to_be_hidden()
    expect(launcher).to_have_attribute("aria-expanded", "false")
    expect(launcher).to_be_focused()

    # While the panel is closed, a message the server pushes (a payment, an agent) marks the launcher.
    session_id = chat.locator("#credia-chat").get_attribute("data-session-id")
    assert session_id
    push_greeting(assistant, session_id)
    expect(page.get_by_text("Mensaje nuevo")).to_be_visible()


def test_a_whatsapp_customer_continues_on_the_web_chat_through_the_signed_link(
    assistant: Assistant, new_browser: Callable[[], BrowserContext]
) -> None:
    from tests.e2e.test_whatsapp_journey import WhatsAppCustomer

    customer = WhatsAppCustomer(assistant)
    customer.write("hola")
    customer.wait_for(lambda m: "Credia" in json.dumps(m, ensure_ascii=False), after=0)
    sent = len(customer.received())
    customer.write("quiero seguir en la web, mándame el link")
    message = customer.wait_for(lambda m: "/webhooks/webchat/?t=" in json.dumps(m), after=sent)
    link = re.search(r"https?://\S+/webhooks/webchat/\?t=[\w\-.~]+", message["text"]["body"]).group(0)

    page = new_browser().new_page()
    page.goto(link)
    expect(page.locator("#credia-chat")).to_have_attribute("data-session-id", customer.wa_id)
    say(page, "¿qué puedes hacer?")
    expect(page.get_by_role("button", name="Ver créditos")).to_be_visible()
    assert user_turns(assistant, customer.wa_id, "socketio") == ["¿qué puedes hacer?"]
    assert "quiero seguir en la web, mándame el link" in user_turns(assistant, customer.wa_id, "whatsapp")


def test_a_web_chat_customer_is_served_by_an_agent_in_the_console_and_returns_to_the_bot(
    assistant: Assistant, new_browser: Callable[[], BrowserContext]
) -> None:
    desk_env = assistant.processes["desk"].env
    desk = f"http://127.0.0.1:{desk_env['DESK_PORT']}"
    agent = new_browser().new_page()
    agent.goto(f"{desk}/console")
    agent.get_by_label("Usuario").fill("agente2")
    agent.get_by_label("Contraseña").fill(desk_env["DESK_AGENT_PASSWORD"])
    agent.get_by_role("button", name="Ingresar").click()
    expect(agent.locator("body")).to_have_attribute("data-live-connected", "true")

    customer = new_browser().new_page()
    customer.goto(webchat(assistant))
    say(customer, "quiero hablar con una persona")
    expect(customer.locator("#cw-messages")).to_contain_text("le comunico con una persona")

    waiting = agent.locator("#queue a").first
    expect(waiting).to_be_visible()
    waiting.click()
    expect(agent.get_by_role("complementary", name="Contexto")).to_be_visible()
    expect(agent.get_by_role("log", name="Mensajes")).to_contain_text("quiero hablar con una persona")
    agent.get_by_role("button", name="Tomar la conversación").click()
    agent.get_by_label("Respuesta al cliente").fill("Hola, soy Andrea. ¿En qué le ayudo?")
    agent.get_by_role("button", name="Enviar al cliente").click()
    expect(customer.locator("#cw-messages")).to_contain_text("Hola, soy Andrea")  # pushed live

    say(customer, "quería saber si puedo adelantar una cuota")
    expect(agent.get_by_role("log", name="Mensajes")).to_contain_text("adelantar una cuota")
    agent.screenshot(path=str(SCREENSHOT.with_name("handoff-console.png")), full_page=True)
    agent.get_by_label("Resultado").select_option(label="Resuelto")
    agent.get_by_role("button", name="Resolver y devolver al asistente").click()
    expect(customer.locator("#cw-messages")).to_contain_text("Soy Credia otra vez")

    say(customer, "¿qué puedes hacer?")
    expect(customer.get_by_role("button", name="Ver créditos")).to_be_visible()
    customer.screenshot(path=str(SCREENSHOT.with_name("handoff-webchat.png")), full_page=True)
