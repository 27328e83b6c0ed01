"""A local stand-in for Twilio's Messages API, so the assistant runs and is tested without Twilio.

``python -m credia.channels.fake_twilio --port 8005`` serves ``POST /2010-04-01/Accounts/{sid}/Messages.json``
like Twilio: basic auth with the account SID and auth token (``TWILIO_ACCOUNT_SID``, ``TWILIO_AUTH_TOKEN``),
the same form fields, limits and error codes. For tests and demos it also has:

- ``GET /_test/messages?to=...``: every request received (accepted or not), oldest first;
- ``POST /_test/failures``: make the next sends fail, e.g. ``{"error": 429, "count": 2}``, or WhatsApp's closed
  window ``{"error": 63016, "to": "whatsapp:+51...", "asynchronous": true}`` (accepted, then reported through
  the message's signed ``StatusCallback`` as Twilio does);
- ``GET /health``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import secrets
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Set

import aiohttp
from aiohttp import web
from multidict import MultiDictProxy

from credia import settings
from credia.channels.twilio import BODY_LIMIT, MAX_MEDIA, SIGNATURE_HEADER, WINDOW_CLOSED, twilio_signature

logger = logging.getLogger(__name__)

E164 = re.compile(r"\+[1-9]\d{6,14}")
CONTENT_SID = re.compile(r"HX[0-9a-fA-F]{32}")
ERRORS = {
    20003: (401, "Authenticate"),
    20429: (429, "Too Many Requests"),
    20500: (500, "Internal Server Error"),
    21211: (400, "Invalid 'To' Phone Number"),
    21212: (400, "Invalid 'From' Phone Number"),
    21602: (400, "Message body is required."),
    21603: (400, "A 'From' phone number is required."),
    21604: (400, "A 'To' phone number is required."),
    21617: (400, "The concatenated message body exceeds the 1600 character limit."),
    21620: (400, "Invalid media URL(s)."),
    21655: (400, "The ContentSid is Invalid."),
    21910: (400, "Invalid From and To pair. From and To should be of the same channel."),
    WINDOW_CLOSED: (
        400,
        "Failed to send freeform message because you are outside the allowed window. "
        "If you are using WhatsApp, please use a Message Template.",
    ),
}


def twilio_error(code: int, status: Optional[int] = None, **headers: str) -> web.Response:
    """An error as Twilio's REST API writes it."""
    default_status, message = ERRORS.get(code, (status or 500, "Error"))
    status = status or default_status
    body = {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status}
    return web.json_response(body, status=status, headers=headers)


def address_error(fields: MultiDictProxy) -> Optional[int]:
    """Twilio's error code for missing, malformed or mismatched To/From addresses."""
    to, sender = fields.get("To", ""), fields.get("From", "")
    if not to:
        return 21604
    if not sender:
        return 21603
    to_whatsapp, from_whatsapp = to.startswith("whatsapp:"), sender.startswith("whatsapp:")
    if not E164.fullmatch(to.removeprefix("whatsapp:")):
        return 21211
    if not E164.fullmatch(sender.removeprefix("whatsapp:")):
        return 21212
    return 21910 if to_whatsapp != from_whatsapp else None


def content_error(fields: MultiDictProxy) -> Optional[int]:
    """Twilio's error code for a message without content, too long, or with bad media or template."""
    body, media, content_sid = fields.get("Body", ""), fields.getall("MediaUrl", []), fields.get("ContentSid", "")
    if not body and not media and not content_sid:
        return 21602
    if len(body) > BODY_LIMIT:
        return 21617
    if len(media) > MAX_MEDIA or any(not url.startswith(("http://", "https://")) for url in media):
        return 21620
    if content_sid and not CONTENT_SID.fullmatch(content_sid):
        return 21655
    return None


class FakeTwilio:
    """The fake API's state: the account it accepts, what it received, and the failures queued by tests."""

    def __init__(self, account_sid: str, auth_token: str) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.received: List[Dict[str, Any]] = []
        self.failures: List[Dict[str, Any]] = []
        self._callbacks: Set[asyncio.Task] = set()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=256 * 1024)
        app.router.add_get("/health", self.health)
        app.router.add_post("/2010-04-01/Accounts/{account_sid}/Messages.json", self.create_message)
        app.router.add_get("/_test/messages", self.list_messages)
        app.router.add_post("/_test/failures", self.queue_failure)
        return app

    async def health(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    def _authorized(self, request: web.Request) -> bool:
        try:
            credentials = aiohttp.BasicAuth.decode(request.headers.get("Authorization", ""))
        except ValueError:
            return False
        return (
            request.match_info["account_sid"] == self.account_sid
            and secrets.compare_digest(credentials.login.encode(), self.account_sid.encode())
            and secrets.compare_digest(credentials.password.encode(), self.auth_token.encode())
        )

    def _take_failure(self, to: str) -> Optional[Dict[str, Any]]:
        for failure in self.failures:
            if failure.get("to") in (None, to):
                failure["count"] -= 1
                if failure["count"] <= 0:
                    self.failures.remove(failure)
                return failure
        return None

    async def create_message(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return twilio_error(20003)
        if request.content_type != "application/x-www-form-urlencoded":
            return twilio_error(21602)
        fields = await request.post()
        record: Dict[str, Any] = {
            "to": fields.get("To"),
            "from": fields.get("From"),
            "body": fields.get("Body"),
            "media_url": fields.getall("MediaUrl", []),
            "content_sid": fields.get("ContentSid"),
            "status_callback": fields.get("StatusCallback"),
            "received_at": datetime.now(timezone.utc).isoformat(),
        }
        self.received.append(record)
        code = address_error(fields) or content_error(fields)
        if code:
            return self._reject(record, code)
        failure = self._take_failure(record["to"])
        record.update(sid=f"SM{secrets.token_hex(16)}", status="queued", error_code=None, http_status=201)
        if failure and failure["error"] == WINDOW_CLOSED and failure.get("asynchronous"):
            # Accepted, then reported undelivered through the StatusCallback, as Twilio does.
            record.update(status="undelivered", error_code=WINDOW_CLOSED)
            self._report_later(record)
        elif failure and failure["error"] == WINDOW_CLOSED:
            return self._reject(record, WINDOW_CLOSED)
        elif failure:
            retry_after = {"Retry-After": str(failure["retry_after"])} if "retry_after" in failure else {}
            code = 20429 if failure["error"] == 429 else 20500
            return self._reject(record, code, failure["error"], **retry_after)
        return web.json_response(self._resource(record), status=201)

    @staticmethod
    def _reject(record: Dict[str, Any], code: int, status: Optional[int] = None, **headers: str) -> web.Response:
        reply = twilio_error(code, status, **headers)
        record.update(sid=None, status="rejected", error_code=code, http_status=reply.status)
        return reply

    def _resource(self, record: Dict[str, Any]) -> Dict[str, Any]:
        body = record["body"] or ""
        return {
            "sid": record["sid"],
            "account_sid": self.account_sid,
            "to": record["to"],
            "from": record["from"],
            "body": body,
            "status": "queued",
            "num_media": str(len(record["media_url"])),
            "num_segments": str(max(1, -(-len(body) // 153))),
            "error_code": None,
            "error_message": None,
            "date_created": record["received_at"],
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{record['sid']}.json",
        }

    def _report_later(self, record: Dict[str, Any]) -> None:
        if not record["status_callback"]:
            return
        task = asyncio.ensure_future(self._status_callback(record))
        self._callbacks.add(task)
        task.add_done_callback(self._callbacks.discard)

    async def _status_callback(self, record: Dict[str, Any]) -> None:
        """POST the failed status to the message's ``StatusCallback``, signed with the auth token like Twilio."""
        await asyncio.sleep(0.05)
        fields = [
            ("AccountSid", self.account_sid), ("MessageSid", record["sid"]), ("SmsSid", record["sid"]),
            ("MessageStatus", "undelivered"), ("SmsStatus", "undelivered"), ("ErrorCode", str(WINDOW_CLOSED)),
            ("To", record["to"]), ("From", record["from"]), ("ApiVersion", "2010-04-01"),
        ]
        signature = twilio_signature(self.auth_token, record["status_callback"], fields)
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
                async with http.post(record["status_callback"], data=fields,
                                     headers={SIGNATURE_HEADER: signature}) as reply:
                    record["callback_status"] = reply.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            record["callback_status"] = f"{type(exc).__name__}: {exc}"

    async def list_messages(self, request: web.Request) -> web.Response:
        to = request.query.get("to")
        return web.json_response([record for record in self.received if to in (None, record["to"])])

    async def queue_failure(self, request: web.Request) -> web.Response:
        try:
            failure = await request.json()
            error, count = int(failure["error"]), int(failure.get("count", 1))
        except (ValueError, KeyError, TypeError):
            raise web.HTTPBadRequest(text='expected {"error": 429|5xx|63016, "count"?, "to"?, "asynchronous"?}')
        if error not in (429, WINDOW_CLOSED) and not 500 <= error < 600:
            raise web.HTTPBadRequest(text="error must be 429, a 5xx status or 63016")
        failure.update(error=error, count=count)
        self.failures.append(failure)
        return web.json_response(failure, status=201)


def main() -> None:
    parser = argparse.ArgumentParser(description="Fake Twilio Messages API for local runs and tests.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=settings.env_int("TWILIO_FAKE_PORT", 8005))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    fake = FakeTwilio(settings.twilio_account_sid(), settings.twilio_auth_token())
    web.run_app(fake.app(), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
