"""Run the payments service: ``python -m credia.payments`` (PAYMENTS_HOST, PAYMENTS_PORT).

Tables are created when the app starts, so a fresh SQLite file or PostgreSQL database works at once.
"""

from __future__ import annotations

import logging

import uvicorn

from credia import logs
from credia.payments.app import create_app
from credia.settings import env, env_int


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logs.install()  # no customer data in this process's log
    try:
        app = create_app()
    except RuntimeError as exc:  # a required secret is missing
        raise SystemExit(f"payments: {exc}") from None
    uvicorn.run(
        app,
        host=env("PAYMENTS_HOST", "127.0.0.1"),
        port=env_int("PAYMENTS_PORT", 8002),
        log_level=env("PAYMENTS_LOG_LEVEL", "info"),
        # No websockets here, and uvicorn's auto-detection breaks on the old `websockets` that Rasa pins.
        ws="none",
    )


if __name__ == "__main__":
    main()
