"""Run the core-banking mock: ``python -m credia.core_banking`` (CORE_BANKING_HOST, CORE_BANKING_PORT).

On first start (no customer in the database) it creates the tables and seeds demo data relative to today in
Lima, so a fresh SQLite file or PostgreSQL database is ready to demo at once. It refuses to start (exit status
1, the reason on stderr) with a credit or collections policy file that does not validate, or a database from an
older version.
"""

from __future__ import annotations

import logging

import uvicorn

from credia import logs, settings
from credia.collections.policy import load_policy as load_collections_policy
from credia.core_banking.app import create_app
from credia.core_banking.loans import today_lima
from credia.core_banking.models import outdated_tables
from credia.core_banking.seed import seed_if_empty
from credia.credit.policy import PolicyError, load_policy
from credia.db import make_engine

logger = logging.getLogger("credia.core_banking")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logs.install()  # no customer data in this process's log
    database_url = settings.core_banking_database_url()
    try:
        secret = settings.payments_webhook_secret()
    except RuntimeError as exc:
        raise SystemExit(f"core banking: {exc}") from None
    try:
        policy = load_policy()
    except PolicyError as exc:
        raise SystemExit(f"core banking: invalid credit policy: {exc}") from None
    try:
        collections_policy = load_collections_policy()
    except PolicyError as exc:
        raise SystemExit(f"core banking: invalid collections policy: {exc}") from None
    engine = make_engine(database_url)
    outdated = outdated_tables(engine)
    if outdated:
        engine.dispose()
        raise SystemExit(
            f"core banking: the database {database_url} was created by an older version and lacks columns of "
            f"{'; '.join(outdated)}. Delete it (e.g. rm var/core_banking.db) and start again: demo data is "
            "seeded afresh."
        )
    as_of = today_lima()
    if seed_if_empty(engine, as_of, policy):
        logger.info("seeded demo data as of %s", as_of.isoformat())
    engine.dispose()
    uvicorn.run(
        create_app(database_url, secret, policy, collections_policy),
        host=settings.env("CORE_BANKING_HOST", "127.0.0.1"),
        port=settings.env_int("CORE_BANKING_PORT", 8001),
        log_level=settings.env("CORE_BANKING_LOG_LEVEL", "info"),
        # No websockets here, and uvicorn's auto-detection breaks on the old `websockets` that Rasa pins.
        ws="none",
    )


if __name__ == "__main__":
    main()
