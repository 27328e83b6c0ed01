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


def channels_database_url() -> str:
    """Connector state (seen message ids, delivery statuses, service windows); shared by every Rasa server."""
    return env("CHANNELS_DATABASE_URL", sqlite_url("channels.db"))


def payments_webhook_secret() -> str:
    """Shared secret that signs payment notifications to core banking; required, never defaulted."""
    secret = os.environ.get("PAYMENTS_WEBHOOK_SECRET", "")
    if not secret:
        raise RuntimeError("PAYMENTS_WEBHOOK_SECRET is not set; the launcher sets it, or export your own.")
    return secret


def conversation_link_secret() -> str:
    """Secret that signs web chat links to a conversation (credia/channels/links.py); required, never defaulted."""
    secret = os.environ.get("CONVERSATION_LINK_SECRET", "")
    if not secret:
        raise RuntimeError("CONVERSATION_LINK_SECRET is not set; the launcher sets it, or export your own.")
    return secret


def webchat_public_url() -> str:
    """Base address customers reach the Rasa server at; signed web chat links point under it."""
    default = f"http://127.0.0.1:{env_int('RASA_PORT', 5005)}"
    return env("WEBCHAT_PUBLIC_URL", default).rstrip("/")


def credit_policy_path() -> Path:
    """The lender's credit rules (products, pre-evaluation); a relative path is read from the project root."""
    return PROJECT_ROOT / env("CREDIT_POLICY_PATH", "policies/credit.yml")


def collections_policy_path() -> Path:
    """The lender's collections rules (identity verification, negotiation matrix); relative to the project root."""
    return PROJECT_ROOT / env("CREDIA_COLLECTIONS_POLICY", "policies/collections.yml")


# Twilio (SMS, WhatsApp and the phone IVR, credia/channels/twilio*.py); the launcher fills the account in for
# its local fake Twilio API when none is set.
def twilio_account_sid() -> str:
    return _twilio_required("TWILIO_ACCOUNT_SID")


def twilio_auth_token() -> str:
    """Key of Twilio's webhook signatures and of its REST API; required, never defaulted."""
    return _twilio_required("TWILIO_AUTH_TOKEN")


def twilio_api_url() -> str:
    return env("TWILIO_API_URL", "https://api.twilio.com").rstrip("/")


def twilio_public_url() -> str:
    """Public base URL Twilio calls the webhooks at (it signs that URL); empty: the URL the request arrived at."""
    return env("TWILIO_PUBLIC_URL", "").rstrip("/")


def twilio_sms_number() -> str:
    return env("TWILIO_SMS_NUMBER", "+15005550006")


def twilio_whatsapp_number() -> str:
    return env("TWILIO_WHATSAPP_NUMBER", "whatsapp:+14155238886")


def twilio_whatsapp_fallback_content_sid() -> str:
    """Approved template (Content SID ``HX...``) sent when WhatsApp's 24-hour window is closed; empty: none."""
    return env("TWILIO_WHATSAPP_FALLBACK_CONTENT_SID", "")


def twilio_send_attempts() -> int:
    return env_int("TWILIO_SEND_ATTEMPTS", 4)


def twilio_retry_base_seconds() -> float:
    return env_float("TWILIO_RETRY_BASE_SECONDS", 0.5)


def _twilio_required(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise RuntimeError(f"{name} is not set; the launcher sets it, or export your own.")
    return value


# Agent desk (credia/desk/, python -m credia.desk): its store, the token of its service API, its policy file and
# the Rasa server agents' replies go through.
def desk_database_url() -> str:
    return env("DESK_DATABASE_URL", sqlite_url("desk.db"))


def desk_api_token() -> str:
    """Bearer token of the desk's service API (the assistant's side); required, never defaulted."""
    return _desk_required("DESK_API_TOKEN")


def desk_policy_path() -> Path:
    """Queue limits, business hours, outcomes and canned responses; relative to the project root."""
    return PROJECT_ROOT / env("DESK_POLICY_PATH", "policies/desk.yml")


def desk_rasa_url() -> str:
    """Rasa server whose HTTP API delivers agents' replies and hands conversations back."""
    return env("RASA_URL", f"http://127.0.0.1:{env_int('RASA_PORT', 5005)}").rstrip("/")


def desk_rasa_token() -> str:
    """Token of Rasa's HTTP API (``--auth-token``); required, never defaulted."""
    return _desk_required("RASA_AUTH_TOKEN")


def _desk_required(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise RuntimeError(f"{name} is not set; the launcher sets it, or export your own.")
    return value


# Payment reminders (credia/reminders/): the scheduler's own store, port and API token, and what it talks to.
def reminders_database_url() -> str:
    """Planned contacts and the audit of every decision; shared by every scheduler process."""
    return env("REMINDERS_DATABASE_URL", sqlite_url("reminders.db"))


def reminders_lender_policy_path() -> Path | None:
    """The lender's own reminders rules over ``policies/reminders.yml`` (tighten only); relative to the project."""
    value = env("CREDIA_REMINDERS_POLICY", "")
    return PROJECT_ROOT / value if value else None


def reminders_api_token() -> str:
    """Bearer token of the scheduler's audit API; empty: the audit API answers 503 (never open)."""
    return os.environ.get("REMINDERS_API_TOKEN", "")


def reminders_rasa_url() -> str:
    """Rasa server whose HTTP API (``trigger_intent``) says the reminders on the customer's channel."""
    return env("RASA_URL", f"http://127.0.0.1:{env_int('RASA_PORT', 5005)}").rstrip("/")


# WhatsApp ingress gateway (credia/channels/whatsapp_gateway.py): Meta calls it, it relays to Rasa's connector.
def whatsapp_gateway_database_url() -> str:
    """Its inbox of raw deliveries: the channels database when one is configured (several gateways share it), else
    a SQLite file of its own, so that acknowledging never waits for the connector's writes to the same file."""
    return env("WHATSAPP_GATEWAY_DATABASE_URL", env("CHANNELS_DATABASE_URL", sqlite_url("whatsapp_gateway.db")))


def whatsapp_relay_url() -> str:
    """Rasa's WhatsApp webhook, where every stored delivery is relayed with its body and signature."""
    return env("WHATSAPP_RELAY_URL", f"http://127.0.0.1:{env_int('RASA_PORT', 5005)}/webhooks/whatsapp/webhook")
