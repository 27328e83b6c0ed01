"""Run the agent desk: ``python -m credia.desk`` (DESK_HOST, DESK_PORT).

Tables are created and the demo users (``supervisor``, ``agente1``, ``agente2``) given this run's passwords
when the desk starts. It refuses to start (exit status 1, the reason on stderr) without its secrets or with a
policy file that does not validate.
"""

from __future__ import annotations

import logging
from types import FrameType
from typing import Optional

import uvicorn

from credia import logs, settings
from credia.credit.policy import PolicyError
from credia.desk.app import create_app
from credia.desk.config import DeskConfig
from credia.desk.events import Broker


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logs.install()  # no customer data in this process's log
    try:
        config = DeskConfig.from_env()
    except PolicyError as exc:
        raise SystemExit(f"desk: invalid desk policy: {exc}") from None
    except (RuntimeError, ValueError) as exc:
        raise SystemExit(f"desk: {exc}") from None
    app = create_app(config)
    server = _Server(
        uvicorn.Config(
            app,
            host=settings.env("DESK_HOST", "127.0.0.1"),
            port=settings.env_int("DESK_PORT", 8003),
            log_level=settings.env("DESK_LOG_LEVEL", "info"),
            # No websockets here, and uvicorn's auto-detection breaks on the old `websockets` that Rasa pins.
            ws="none",
            timeout_graceful_shutdown=5,
        ),
        app.state.desk.broker,
    )
    server.run()


class _Server(uvicorn.Server):
    """Ends the consoles' live streams as soon as a stop is asked for; uvicorn would wait for them to finish."""

    def __init__(self, config: uvicorn.Config, broker: Broker) -> None:
        super().__init__(config)
        self.broker = broker

    def handle_exit(self, sig: int, frame: Optional[FrameType]) -> None:
        self.broker.close()
        super().handle_exit(sig, frame)


if __name__ == "__main__":
    main()
