"""Identity verification before anything about a debt is said.

The customer gives a document and a second factor: the date of birth, or a one-time code that core banking
sends by SMS to the phone on file. Core banking answers an unknown document exactly like a wrong factor, so
the bot never learns (nor tells) whether someone is a customer. Three failures lock verification in this
conversation for the policy's ``lock_minutes`` (core banking also locks the document itself, across conversations) and
offer a person. The verified customer lives in slots, which a new session clears: verification expires with
the session.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any, Optional

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.credit_form import Invalid, check_document, first
from credia import values
from credia.backends import BackendError
from credia.backends.core_banking import CoreBankingClient
from credia.collections.policy import VerificationRules, load_policy

DOCUMENT_TYPE = "DNI"
CODE_REQUEST = re.compile(r"c[oó]digo|sms|mensaje|clave|no (?:me )?(?:acuerdo|recuerdo)|no s[eé]")
CODE = re.compile(r"(?<!\d)(\d{4,8})(?!\d)")
LOCKED_TEXT = (
    "Por su seguridad, bloqueé la verificación de identidad durante {minutes} minutos tras varios intentos "
    "fallidos. Si necesita ayuda ahora, escriba «asesor» y le indico cómo hablar con una persona."
)


@lru_cache(maxsize=1)
def verification_rules() -> VerificationRules:
    """The same limits core banking applies per document, applied here per conversation."""
    return load_policy().verification


def verified_customer_id(tracker: Tracker) -> Optional[int]:
    """The customer proven in this session, or None: the only source of whose data may be shown."""
    if tracker.get_slot("identity_verified") is not True:
        return None
    customer_id = tracker.get_slot("verified_customer_id")
    return int(customer_id) if customer_id and str(customer_id).isdigit() else None


def locked_minutes_left(tracker: Tracker, now: Optional[datetime] = None) -> int:
    """Minutes left of this conversation's verification lock, 0 when not locked."""
    until = tracker.get_slot("verification_locked_until")
    if not until:
        return 0
    try:
        remaining = datetime.fromisoformat(until) - (now or datetime.now(timezone.utc))
    except ValueError:
        return 0
    return max(0, -(-int(remaining.total_seconds()) // 60))


class ActionAskVerifyDocument(Action):
    def name(self) -> str:
        return "action_ask_verify_document"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        dispatcher.utter_message(
            text="Antes de darle información de su cuenta necesito confirmar su identidad. "
            "¿Cuál es su número de DNI?"
        )
        return []


class ActionAskVerifyAnswer(Action):
    def name(self) -> str:
        return "action_ask_verify_answer"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        if tracker.get_slot("verification_challenge"):
            dispatcher.utter_message(text="Escriba el código de 6 dígitos que le enviamos por SMS.")
        else:
            dispatcher.utter_message(
                text="Gracias. Ahora escriba su fecha de nacimiento (por ejemplo 15/03/1990), o pida un código "
                "por SMS a su celular registrado.",
                buttons=[{"title": "Enviar código SMS", "payload": "quiero un código por SMS"}],
            )
        return []


class ValidateVerificationForm(FormValidationAction):
    def name(self) -> str:
        return "validate_verification_form"

    async def validate_verify_document(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        if value is None:  # cleared by action_collections_start: nothing to check yet
            return {"verify_document": None}
        minutes = locked_minutes_left(tracker)
        if minutes:
            dispatcher.utter_message(text=LOCKED_TEXT.format(minutes=minutes))
            return {"verify_document": str(first(value)), "verify_answer": "locked"}
        try:
            return {"verify_document": check_document(value)}
        except Invalid as error:
            dispatcher.utter_message(text=f"{error.message} {error.example}")
            return {"verify_document": None}

    async def validate_verify_answer(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        if value is None:
            return {"verify_answer": None}
        minutes = locked_minutes_left(tracker)
        if minutes:
            dispatcher.utter_message(text=LOCKED_TEXT.format(minutes=minutes))
            return {"verify_answer": "locked"}
        text = str(first(value) or "")
        document = tracker.get_slot("verify_document")
        challenge = tracker.get_slot("verification_challenge")
        factor: dict[str, str] = {}
        corrected = values.extract_document_numbers(text)
        if corrected and not challenge:
            return {"verify_document": corrected[0].value, "verify_answer": None}
        try:
            factor = {"birth_date": values.parse_date(text).isoformat()}
        except values.ValueParseError:
            code = CODE.search(text)
            if challenge and code:
                factor = {"challenge_id": challenge, "code": code.group(1)}
            elif CODE_REQUEST.search(text.lower()):
                return await self.send_code(dispatcher, document)
        if not factor:
            dispatcher.utter_message(
                text="No logré entender su respuesta. Escriba su fecha de nacimiento como día/mes/año "
                "(por ejemplo 15/03/1990)" + (" o el código que le enviamos." if challenge else ".")
            )
            return {"verify_answer": None}
        try:
            result = await CoreBankingClient().verify_identity(DOCUMENT_TYPE, document, **factor)
        except BackendError:
            dispatcher.utter_message(response="utter_backend_unavailable")
            return {"verify_answer": None}
        if result.get("verified"):
            name = result.get("first_name") or ""
            dispatcher.utter_message(text=f"¡Gracias{', ' + name if name else ''}! Verifiqué su identidad.")
            return {
                "verify_answer": "verified",
                "identity_verified": True,
                "verified_customer_id": str(result["customer_id"]),
                "verified_first_name": name or None,
                "verification_failures": 0.0,
                "verification_challenge": None,
            }
        return self.failed(dispatcher, tracker, result)

    async def send_code(self, dispatcher: CollectingDispatcher, document: str) -> dict[str, Any]:
        try:
            challenge = await CoreBankingClient().send_code(DOCUMENT_TYPE, document)
        except BackendError:
            dispatcher.utter_message(response="utter_backend_unavailable")
            return {"verify_answer": None}
        dispatcher.utter_message(text=challenge.get("message") or "Le enviamos un código por SMS.")
        return {"verify_answer": None, "verification_challenge": challenge["challenge_id"]}

    @staticmethod
    def failed(dispatcher: CollectingDispatcher, tracker: Tracker, result: dict[str, Any]) -> dict[str, Any]:
        """Count the failure; the third one (or a lock in core banking) ends the form without verifying."""
        rules = verification_rules()
        failures = int(tracker.get_slot("verification_failures") or 0) + 1
        if failures >= rules.max_failures or result.get("locked_until"):
            until = datetime.now(timezone.utc) + timedelta(minutes=rules.lock_minutes)
            dispatcher.utter_message(text=LOCKED_TEXT.format(minutes=rules.lock_minutes))
            return {
                "verify_answer": "locked",
                "verification_failures": float(failures),
                "verification_locked_until": until.isoformat(),
                "verification_challenge": None,
            }
        left = rules.max_failures - failures
        document = tracker.get_slot("verify_document")
        dispatcher.utter_message(
            text=f"Los datos no coinciden con nuestros registros para el DNI {document}. Revíselos y vuelva a "
            f"intentarlo (le {'queda 1 intento' if left == 1 else f'quedan {left} intentos'}); si el DNI no es "
            "ese, escríbalo de nuevo."
        )
        return {
            "verify_answer": None,
            "verification_failures": float(failures),
            "verification_challenge": None,
        }


def verification_reset() -> list[EventType]:
    """Clear the form's answers (not the verified identity) so a later verification starts clean."""
    return [SlotSet("verify_answer", None), SlotSet("requested_slot", None)]
