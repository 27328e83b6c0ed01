"""The action server, reachable only by Rasa: ``python -m credia.action_server`` (what the launcher runs).

rasa-sdk's own server answers anyone who can reach its port and runs any action for any conversation id it is
sent, with the tracker it is sent: whoever reaches it can read customer data through the actions. This one is
the same rasa-sdk app (``rasa_sdk.endpoint.create_app``) with three changes:

- every request but ``/health`` must carry ``Authorization: Bearer $ACTION_SERVER_TOKEN`` (compared in constant
  time), else 401; Rasa sends it from the endpoints file (``action_endpoint.headers``, written by the launcher
  with ``${ACTION_SERVER_TOKEN}`` so the token is never on disk). Without the variable the server does not start;
- it listens on ``ACTIONS_INTERFACE`` (``127.0.0.1`` by default, not rasa-sdk's ``0.0.0.0``), without CORS;
- a failing action answers 500 with a generic error, not rasa-sdk's echo of the request body (the tracker).
"""

from __future__ import annotations

import argparse
import hmac
import logging
import os
from typing import Optional, Sequence

from rasa_sdk import utils as sdk_utils
from rasa_sdk.endpoint import create_app as create_sdk_app
from sanic import Sanic, response
from sanic.exceptions import SanicException
from sanic.request import Request
from sanic.response import HTTPResponse

from credia import logs, settings

logger = logging.getLogger("credia.action_server")

TOKEN_VARIABLE = "ACTION_SERVER_TOKEN"
OPEN_PATHS = frozenset({"/health"})


def create_app(token: str, actions_package: str = "actions") -> Sanic:
    """rasa-sdk's app for ``actions_package``, answering only requests that carry ``token``."""
    if not token:
        raise ValueError(f"{TOKEN_VARIABLE} must not be empty")
    app = create_sdk_app(actions_package, cors_origins="")
    expected = f"Bearer {token}".encode()

    async def require_token(request: Request) -> Optional[HTTPResponse]:
        if request.path in OPEN_PATHS:
            return None
        supplied = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(supplied, expected):
            return response.json({"error": "missing or invalid action server token"}, status=401)
        return None

    async def failure(request: Request, exception: Exception) -> HTTPResponse:
        if isinstance(exception, SanicException) and exception.status_code < 500:
            return response.json({"error": str(exception)}, status=exception.status_code)
        logger.error("action server request %s %s failed", request.method, request.path, exc_info=exception)
        return response.json({"error": "the action failed; see the action server's log"}, status=500)

    app.register_middleware(require_token, "request")
    app.error_handler.add(Exception, failure)
    return app


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Run the custom actions for Rasa, behind a shared token.")
    parser.add_argument("--actions", default="actions", help="package with the actions (default: actions)")
    parser.add_argument("--port", type=int, default=settings.env_int("ACTIONS_PORT", 5055))
    parser.add_argument("--interface", default=settings.env("ACTIONS_INTERFACE", "127.0.0.1"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logs.install()
    token = os.environ.get(TOKEN_VARIABLE, "")
    if not token:
        raise SystemExit(
            f"action server: {TOKEN_VARIABLE} is not set; the launcher sets it, or export your own "
            "(and the same value for Rasa, which sends it)."
        )
    app = create_app(token, args.actions)
    logger.info("action server on http://%s:%d (token required)", args.interface, args.port)
    app.run(host=args.interface, port=args.port, workers=sdk_utils.number_of_sanic_workers(), access_log=False)


if __name__ == "__main__":
    main()
