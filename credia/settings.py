"""Configuration read from the environment, with defaults that run everything on one machine.

Every process reads its settings here so a variable has one name and one default across the project.
Secrets have no default: the launcher generates per-run values when they are not set.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("CREDIA_VAR_DIR", PROJECT_ROOT / "var"))


def env(name: str, default: str) -> str:
    """Return an environment variable, or the default when unset or empty."""
    return os.environ.get(name) or default


def env_int(name: str, default: int) -> int:
    return int(env(name, str(default)))


def env_float(name: str, default: float) -> float:
    return float(env(name, str(default)))


def sqlite_url(filename: str) -> str:
    return f"sqlite:///{VAR_DIR / filename}"


def core_banking_url() -> str:
    return env("CORE_BANKING_URL", "http://127.0.0.1:8001").rstrip("/")


def payments_url() -> str:
    return env("PAYMENTS_URL", "http://127.0.0.1:8002").rstrip("/")


def core_banking_database_url() -> str:
    return env("CORE_BANKING_DATABASE_URL", sqlite_url("core_banking.db"))


def payments_database_url() -> str:
    return env("PAYMENTS_DATABASE_URL", sqlite_url("payments.db"))


def payments_webhook_secret() -> str:
    """Shared secret that signs payment notifications to core banking; required, never defaulted."""
    secret = os.environ.get("PAYMENTS_WEBHOOK_SECRET", "")
    if not secret:
        raise RuntimeError("PAYMENTS_WEBHOOK_SECRET is not set; the launcher sets it, or export your own.")
    return secret


def credit_policy_path() -> Path:
    """The lender's credit rules (products, pre-evaluation); a relative path is read from the project root."""
    return PROJECT_ROOT / env("CREDIT_POLICY_PATH", "policies/credit.yml")


def collections_policy_path() -> Path:
    """The lender's collections rules (identity verification, negotiation matrix); relative to the project root."""
    return PROJECT_ROOT / env("CREDIA_COLLECTIONS_POLICY", "policies/collections.yml")
