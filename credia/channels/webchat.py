"""The web chat page, served by the Rasa server itself (no CDN), on Rasa's ``socketio`` channel.

``WebChatPage`` is an input channel only to get a blueprint on the Rasa server; the conversation itself runs
on the ``socketio`` channel (``credentials.yml``), so replies, payment announcements and agent messages reach
the page the way they reach any Rasa socket.io widget. Routes, under ``/webhooks/webchat/``:

- ``/``: the chat page (full page, or the panel of ``static/embed.js`` with ``?embed=1``); ``?t=<token>``
  continues an existing conversation (see ``credia/channels/links.py``);
- ``/session?t=<token>``: checks a signed link and returns the conversation id the page uses as its
  socket.io ``session_id``, with the ``session_token`` that lets it join (``socketio_channel.py``);
- ``/static/...``: the files of ``webchat_static/``: the page's JS and CSS, the launcher for a lender's site
  (``embed.js``) and the vendored socket.io client (``vendor/socket.io.min.js``: socket.io-client 4.8.4 from
  the npm registry, MIT, its licence beside it).
"""

from __future__ import annotations

import html
import mimetypes
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from rasa.core.channels.channel import InputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from credia import settings
from credia.channels.links import ConversationTokenError, verify_conversation_token
from credia.channels.socketio_channel import issue_session_token

STATIC_DIR = Path(__file__).resolve().parent / "webchat_static"
DEFAULT_SOCKETIO_PATH = "/socket.io"
# Only the project's own files and the Rasa server itself; any origin may frame the page (the lender's site).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: https:; "
    "connect-src 'self'; frame-ancestors *; base-uri 'none'; form-action 'none'"
)

# What the page shows the customer when a link cannot open the conversation, by the token's fault.
LINK_ERRORS: dict[str, tuple[int, str]] = {
    "malformed": (400, "El enlace no es válido. Revise que lo haya copiado completo o pida uno nuevo."),
    "signature": (403, "El enlace no es válido. Pida uno nuevo en su conversación."),
    "expired": (403, "El enlace ha vencido. Pida uno nuevo en su conversación."),
}
MISSING_TOKEN = "Falta el enlace de la conversación (parámetro t)."
LINKS_DISABLED = "Los enlaces a una conversación no están disponibles en este momento."


def socketio_path_of(request: Request) -> str:
    """The path the ``socketio`` channel listens on, so the page connects wherever credentials.yml put it."""
    for channel in getattr(request.app.ctx, "input_channels", None) or []:
        if channel.name() == "socketio":
            return getattr(channel, "socketio_path", None) or DEFAULT_SOCKETIO_PATH
    return DEFAULT_SOCKETIO_PATH


def static_assets() -> dict[str, Path]:
    """Every file the page loads, by its path under ``static/``: an exact look-up, so no path can escape."""
    return {
        path.relative_to(STATIC_DIR).as_posix(): path
        for path in STATIC_DIR.rglob("*")
        if path.is_file() and path.name != "index.html"
    }


def asset_type(path: Path) -> str:
    """Content type with the charset: embed.js runs inside the lender's page, whose charset may not be UTF-8."""
    guessed = mimetypes.guess_type(path.name)[0] or "text/plain"
    return f"{guessed}; charset=utf-8" if guessed.startswith("text/") or guessed.endswith("javascript") else guessed


def render_page(socketio_path: str) -> str:
    """index.html with the socket.io path of this server filled in."""
    page = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    return page.replace("{{SOCKETIO_PATH}}", html.escape(socketio_path, quote=True))


class WebChatPage(InputChannel):
    """Serves the web chat page and checks signed conversation links; messages go through ``socketio``."""

    @classmethod
    def name(cls) -> str:
        return "webchat"

    @classmethod
    def from_credentials(cls, credentials: dict[str, Any] | None) -> InputChannel:
        return cls()

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        webchat = Blueprint("webchat_page", __name__)
        assets = static_assets()

        @webchat.route("/", methods=["GET"])
        async def page(request: Request) -> HTTPResponse:
            # Relative asset URLs need the trailing slash (/webhooks/webchat -> /webhooks/webchat/).
            if not request.path.endswith("/"):
                query = f"?{request.query_string}" if request.query_string else ""
                return response.redirect(f"{request.path}/{query}")
            return response.html(
                render_page(socketio_path_of(request)),
                headers={
                    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
                    "Referrer-Policy": "no-referrer",  # the ?t= token must not leak to linked sites
                    "Cache-Control": "no-store",
                },
            )

        @webchat.route("/session", methods=["GET"])
        async def session(request: Request) -> HTTPResponse:
            token = request.args.get("t")
            if not token:
                return response.json({"reason": "missing", "detail": MISSING_TOKEN}, status=400)
            try:
                secret = settings.conversation_link_secret()
            except RuntimeError:  # a server started without the launcher and without the variable
                return response.json({"reason": "disabled", "detail": LINKS_DISABLED}, status=503)
            try:
                conversation_id = verify_conversation_token(token, secret=secret)
            except ConversationTokenError as exc:
                status, detail = LINK_ERRORS[exc.reason]
                return response.json({"reason": exc.reason, "detail": detail}, status=status)
            # The page joins the conversation over socket.io with a session token of its own (longer-lived).
            return response.json(
                {"conversation_id": conversation_id, "session_token": issue_session_token(conversation_id, secret)},
                headers={"Cache-Control": "no-store"},
            )

        @webchat.route("/static/<name:path>", methods=["GET"])
        async def asset(_request: Request, name: str) -> HTTPResponse:
            path = assets.get(name)
            if path is None:
                return response.json({"detail": "not found"}, status=404)
            return await response.file(
                path, mime_type=asset_type(path), headers={"Cache-Control": "public, max-age=600"}
            )

        return webchat
