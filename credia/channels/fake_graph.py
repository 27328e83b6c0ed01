"""A fake WhatsApp Cloud API (Graph API) for demos and tests: ``python -m credia.channels.fake_graph --port N``.

It takes ``POST /{version}/{phone_number_id}/messages`` with a Bearer token like Meta does, checks each message
against WhatsApp's documented limits and answers a broken one with Meta's error JSON, so a connector that passes
here does not fail on the real API for the same reason. It records every request, and a test-control API
closes a customer's 24-hour window (131047), queues failures (rate limits 130429 / 131056, undeliverable
131026, 5xx) and lists what was sent.

Limits: https://developers.facebook.com/documentation/business-messaging/whatsapp/ (messages, interactive
reply buttons and lists, templates, error codes).
"""

from __future__ import annotations

import argparse
import hmac
import logging
import re
import secrets
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Deque, Dict, List, Optional, Set

import uvicorn
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from credia import settings
from credia.db import utcnow

MESSAGE_TYPES = {"text", "image", "document", "audio", "video", "sticker", "location", "contacts", "interactive",
                 "template", "reaction"}
MEDIA_TYPES = {"image", "document", "audio", "video", "sticker"}
PHONE = re.compile(r"^\+?\d{6,15}$")
BSUID = re.compile(r"^[A-Z]{2}\.[A-Za-z0-9.]{1,140}$")
TEMPLATE_NAME = re.compile(r"^[a-z0-9_]{1,512}$")
TEMPLATE_COMPONENTS = {"header", "body", "footer", "button"}
PARAMETER_TYPES = {"text", "currency", "date_time", "image", "document", "video", "payload", "location"}

# What Meta answers for the errors the fake can produce: HTTP status, title, details, (deprecated) subcode.
ERRORS: Dict[int, tuple] = {
    100: (400, "Invalid parameter", "", 2494102),
    131008: (400, "Required parameter is missing", "", 2494010),
    131009: (400, "Parameter value is not valid", "", 2494010),
    131026: (400, "Message undeliverable", "Message failed to send because the recipient cannot receive it", 2494010),
    131047: (400, "Re-engagement message",
             "Message failed to send because more than 24 hours have passed since the customer last replied to "
             "this number.", 2494010),
    130429: (429, "Rate limit hit",
             "Message failed to send because there were too many messages sent from this phone number in a short "
             "period of time", 2494055),
    131056: (429, "(Business Account, Consumer Account) pair rate limit hit",
             "Message failed to send because there were too many messages sent from this phone number to the same "
             "phone number in a short period of time", 2494055),
    131000: (500, "Something went wrong", "Message failed to send due to an unknown error", 2494001),
    131016: (503, "Service unavailable", "A service is temporarily unavailable", 2494001),
    132000: (400, "Number of parameters does not match the expected number of params", "", 2494073),
    132001: (400, "Template name does not exist in the translation", "", 2494073),
    132018: (400, "There was an issue with the parameters in your template.", "", 2494073),
    190: (401, "Invalid OAuth access token - Cannot parse access token", "", 2494008),
}


class GraphFailure(Exception):
    """A request Meta would refuse: ``code`` names the error, ``details`` says why."""

    def __init__(self, code: int, details: str = "") -> None:
        super().__init__(details)
        self.code = code
        self.details = details or ERRORS[code][2] or ERRORS[code][1]

    def response(self) -> JSONResponse:
        status, title, _details, subcode = ERRORS[self.code]
        error = {
            "message": f"(#{self.code}) {title}",
            "type": "OAuthException",
            "code": self.code,
            "error_data": {"messaging_product": "whatsapp", "details": self.details},
            "error_subcode": subcode,
            "fbtrace_id": secrets.token_urlsafe(12),
        }
        return JSONResponse({"error": error}, status_code=status)


def _text(value: Any, what: str, limit: int, code: int = 100, minimum: int = 1) -> str:
    """A string field within Meta's length limits (Python's ``len`` counts characters, like Meta)."""
    if not isinstance(value, str) or len(value) < minimum:
        raise GraphFailure(131008 if value is None else code, f"{what} is required")
    if len(value) > limit:
        raise GraphFailure(code, f"{what} length invalid. Min length: {minimum}, Max length: {limit}")
    return value


def _object(value: Any, what: str) -> Dict[str, Any]:
    if not isinstance(value, dict):
        raise GraphFailure(131008, f"The parameter {what} is required.")
    return value


def validate_text(message: Dict[str, Any]) -> None:
    text = _object(message.get("text"), "text")
    _text(text.get("body"), "Param text['body']", 4096)


def validate_media(kind: str, message: Dict[str, Any]) -> None:
    media = _object(message.get(kind), kind)
    link, media_id = media.get("link"), media.get("id")
    if not media_id and not (isinstance(link, str) and link.startswith(("http://", "https://"))):
        raise GraphFailure(131008, f"Param {kind} must have an http(s) link or a media id")
    if "caption" in media:
        _text(media["caption"], f"Param {kind}['caption']", 1024)


def _unique(values: List[str], what: str) -> None:
    if len(set(values)) < len(values):
        raise GraphFailure(131009, f"{what} must be unique")


def validate_buttons(interactive: Dict[str, Any]) -> None:
    _text(_object(interactive.get("body"), "interactive['body']").get("text"), "Body text", 1024, 131009)
    buttons = _object(interactive.get("action"), "interactive['action']").get("buttons")
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
        raise GraphFailure(131009, "Invalid buttons count. Min allowed buttons: 1, Max allowed buttons: 3")
    ids, titles = [], []
    for button in buttons:
        if not isinstance(button, dict) or button.get("type") != "reply":
            raise GraphFailure(131009, "Button type must be reply")
        reply = _object(button.get("reply"), "button['reply']")
        ids.append(_text(reply.get("id"), "Button id", 256, 131009))
        titles.append(_text(reply.get("title"), "Button title", 20, 131009))
    _unique(ids, "Button ids")
    _unique(titles, "Button titles")


def validate_list(interactive: Dict[str, Any]) -> None:
    _text(_object(interactive.get("body"), "interactive['body']").get("text"), "Body text", 4096, 131009)
    action = _object(interactive.get("action"), "interactive['action']")
    _text(action.get("button"), "Button label", 20, 131009)
    sections = action.get("sections")
    if not isinstance(sections, list) or not 1 <= len(sections) <= 10:
        raise GraphFailure(131009, "Invalid sections count. Min allowed sections: 1, Max allowed sections: 10")
    ids: List[str] = []
    for section in sections:
        section = _object(section, "section")
        if len(sections) > 1 or "title" in section:
            _text(section.get("title"), "Section title", 24, 131009)
        rows = section.get("rows")
        if not isinstance(rows, list) or not rows:
            raise GraphFailure(131009, "Each section needs at least one row")
        for row in rows:
            row = _object(row, "row")
            ids.append(_text(row.get("id"), "Row id", 200, 131009))
            _text(row.get("title"), "Row title", 24, 131009)
            if "description" in row:
                _text(row["description"], "Row description", 72, 131009, minimum=0)
    if len(ids) > 10:
        raise GraphFailure(131009, "Total row count exceed max allowed count: 10")
    _unique(ids, "Row ids")


def validate_interactive(message: Dict[str, Any]) -> None:
    interactive = _object(message.get("interactive"), "interactive")
    if interactive.get("type") == "button":
        validate_buttons(interactive)
    elif interactive.get("type") == "list":
        validate_list(interactive)
    else:
        raise GraphFailure(100, "Param interactive['type'] must be one of {button, list}")


def validate_template(message: Dict[str, Any]) -> None:
    template = _object(message.get("template"), "template")
    name = template.get("name")
    if not isinstance(name, str) or not TEMPLATE_NAME.match(name):
        raise GraphFailure(132001, f"template name ({name}) does not exist in the translation")
    language = _object(template.get("language"), "template['language']")
    _text(language.get("code"), "Param template['language']['code']", 15)
    components = template.get("components", [])
    if not isinstance(components, list):
        raise GraphFailure(100, "Param template['components'] must be an array")
    for component in components:
        component = _object(component, "component")
        if component.get("type") not in TEMPLATE_COMPONENTS:
            raise GraphFailure(100, "Param component['type'] must be one of {header, body, footer, button}")
        for parameter in component.get("parameters", []):
            parameter = _object(parameter, "parameter")
            if parameter.get("type") not in PARAMETER_TYPES:
                raise GraphFailure(132000, f"Unknown parameter type {parameter.get('type')!r}")
            if parameter["type"] == "text":
                value = _text(parameter.get("text"), "Param text", 32768, 132018)
                if component["type"] == "body" and (re.search(r"[\n\t]", value) or "     " in value):
                    raise GraphFailure(
                        132018, "Param text cannot have new-line/tab characters or more than 4 consecutive spaces"
                    )


def recipient_of(message: Dict[str, Any]) -> str:
    """``to`` (a phone number) wins over ``recipient`` (a business-scoped user id), like on the real API."""
    if message.get("to") is not None:
        to = message["to"]
        if not isinstance(to, str) or not PHONE.match(to):
            raise GraphFailure(100, "Param to must be a valid phone number")
        return to.lstrip("+")
    recipient = message.get("recipient")
    if isinstance(recipient, str) and BSUID.match(recipient):
        return recipient
    raise GraphFailure(100, "The parameter to is required.")


def validate(message: Any) -> str:
    """Check a send request like the Cloud API; return its recipient or raise ``GraphFailure``."""
    message = _object(message, "body")
    if message.get("messaging_product") != "whatsapp":
        raise GraphFailure(100, "The parameter messaging_product is required and must be whatsapp.")
    recipient = recipient_of(message)
    kind = message.get("type")
    if kind not in MESSAGE_TYPES:
        raise GraphFailure(100, f"Param type must be one of {{{', '.join(sorted(MESSAGE_TYPES))}}}")
    if kind == "text":
        validate_text(message)
    elif kind in MEDIA_TYPES:
        validate_media(kind, message)
    elif kind == "interactive":
        validate_interactive(message)
    elif kind == "template":
        validate_template(message)
    return recipient


class FailureIn(BaseModel):
    code: int = Field(..., description="Graph API error code to answer with, e.g. 130429, 131026, 131000.")
    count: int = Field(1, ge=1, le=1000, description="How many of the next sends fail.")
    to: Optional[str] = Field(None, description="Only sends to this recipient fail (any recipient when omitted).")


class WindowIn(BaseModel):
    open: bool


@dataclass
class Failure:
    code: int
    to: Optional[str]


@dataclass
class FakeGraphState:
    """Everything the fake remembers, in memory (a restart forgets it, like a fresh sandbox)."""

    access_token: Optional[str]
    phone_number_id: Optional[str]
    messages: List[Dict[str, Any]] = field(default_factory=list)
    closed_windows: Set[str] = field(default_factory=set)
    failures: Deque[Failure] = field(default_factory=deque)

    def next_failure(self, recipient: str) -> Optional[int]:
        for failure in list(self.failures):
            if failure.to in (None, recipient):
                self.failures.remove(failure)
                return failure.code
        return None


def create_app(access_token: Optional[str] = None, phone_number_id: Optional[str] = None) -> FastAPI:
    """The fake; ``access_token`` and ``phone_number_id``, when given, must match each request like on Meta."""
    app = FastAPI(title="Fake WhatsApp Cloud API", description=__doc__)
    state = FakeGraphState(access_token or None, phone_number_id or None)

    def record(path_id: str, body: Any, recipient: Optional[str], message_id: Optional[str],
               error: Optional[GraphFailure]) -> None:
        state.messages.append({
            "id": message_id,
            "to": recipient,
            "phone_number_id": path_id,
            "status": "rejected" if error else "accepted",
            "error": {"code": error.code, "details": error.details} if error else None,
            "message": body,
            "received_at": utcnow().isoformat(),
        })

    @app.get("/health")
    async def health() -> Dict[str, str]:
        return {"status": "ok"}

    @app.post("/{version}/{phone_number_id}/messages")
    async def send(version: str, phone_number_id: str, request: Request) -> JSONResponse:
        authorization = request.headers.get("Authorization", "")
        token = authorization[7:] if authorization.startswith("Bearer ") else ""
        if not token or (state.access_token and not hmac.compare_digest(token, state.access_token)):
            return GraphFailure(190).response()
        if state.phone_number_id and phone_number_id != state.phone_number_id:
            return JSONResponse({"error": {
                "message": f"Unsupported post request. Object with ID '{phone_number_id}' does not exist",
                "type": "GraphMethodException", "code": 100, "error_subcode": 33,
                "fbtrace_id": secrets.token_urlsafe(12)}}, status_code=400)
        recipient: Optional[str] = None
        try:
            body = await request.json()
        except ValueError:
            body = None
        try:
            recipient = validate(body)
            code = state.next_failure(recipient)
            if code is not None:
                raise GraphFailure(code)
            if recipient in state.closed_windows and body.get("type") != "template":
                raise GraphFailure(131047)
        except GraphFailure as failure:
            record(phone_number_id, body, recipient, None, failure)
            return failure.response()
        message_id = f"wamid.{secrets.token_urlsafe(24)}"
        record(phone_number_id, body, recipient, message_id, None)
        contact = {"input": body.get("to") or body.get("recipient")}
        contact["wa_id" if body.get("to") else "user_id"] = recipient
        sent: Dict[str, Any] = {"id": message_id}
        if body["type"] == "template":
            sent["message_status"] = "accepted"
        return JSONResponse({"messaging_product": "whatsapp", "contacts": [contact], "messages": [sent]})

    @app.get("/_test/messages")
    async def messages(
        to: Optional[str] = Query(None, description="Only messages to this recipient."),
        status: Optional[str] = Query(None, description="accepted or rejected"),
        after: int = Query(0, ge=0, description="Skip the first N send requests recorded (incremental polling)."),
    ) -> List[Dict[str, Any]]:
        """Every send request, oldest first (newest last)."""
        return [message for message in state.messages[after:]
                if to in (None, message["to"]) and status in (None, message["status"])]

    @app.delete("/_test/messages")
    async def clear_messages() -> Dict[str, str]:
        state.messages.clear()
        return {"status": "cleared"}

    @app.put("/_test/windows/{recipient}")
    async def set_window(recipient: str, window: WindowIn) -> Dict[str, Any]:
        """Close (or reopen) a customer's 24-hour window: free-form messages to them then fail with 131047."""
        (state.closed_windows.discard if window.open else state.closed_windows.add)(recipient.lstrip("+"))
        return {"recipient": recipient, "open": window.open}

    @app.post("/_test/failures")
    async def add_failure(failure: FailureIn) -> Dict[str, Any]:
        """The next ``count`` sends (to ``to``, or to anyone) fail with ``code``."""
        if failure.code not in ERRORS:
            raise HTTPException(status_code=422, detail=f"unknown code; use one of {sorted(ERRORS)}")
        for _ in range(failure.count):
            state.failures.append(Failure(failure.code, failure.to.lstrip("+") if failure.to else None))
        return {"queued": failure.count, "code": failure.code}

    @app.delete("/_test/control")
    async def reset_control() -> Dict[str, str]:
        """Reopen every window and drop queued failures."""
        state.closed_windows.clear()
        state.failures.clear()
        return {"status": "reset"}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the fake WhatsApp Cloud API.")
    parser.add_argument("--host", default=settings.env("WHATSAPP_GRAPH_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=settings.env_int("WHATSAPP_GRAPH_PORT", 8004))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings.env("WHATSAPP_ACCESS_TOKEN", ""), settings.env("WHATSAPP_PHONE_NUMBER_ID", ""))
    # No websockets here, and uvicorn's auto-detection breaks on the old `websockets` that Rasa pins.
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", ws="none")


if __name__ == "__main__":
    main()
