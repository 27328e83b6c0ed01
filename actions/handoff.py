"""Handing the conversation to a person, with everything already captured, and taking it back afterwards.

``hand_off`` is the one way any action passes a conversation to the agent desk (``credia.handoff.desk``): the
desk gets the context (who the customer is and whether verified, the journey, the values captured, the offers,
the reason and the transcript), the customer is told honestly what happens next, and the bot pauses until the
desk resumes it. On the phone the call is put through instead. With nobody available, the customer is offered a
callback or a written ticket.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from decimal import Decimal
from typing import Any, Optional

from rasa_sdk import Action, Tracker
from rasa_sdk.events import ActionExecuted, ActiveLoop, ConversationPaused, EventType
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.base import handed_off
from credia.backends import BackendError
from credia.handoff.desk import DeskClient
from credia.handoff.triggers import frustration_signal, handoff_policy
from credia.money import format_day, format_short_day

VOICE_CHANNEL = "twilio_voice"
TRANSCRIPT_TURNS = 40
# Slots a person needs to see; internal ones (form bookkeeping, one-time codes) stay out.
CONTEXT_SLOTS = (
    "product", "amount", "term_months", "monthly_income", "employment_type", "employment_tenure_months",
    "application_code", "application_outcome", "collections_goal", "payment_amount", "promise_date",
    "promise_amount", "selected_offer", "case_code",
)
REASON_TEXT = {
    "explicit_request": "usted lo pidió",
    "frustration": "quiero que una persona le atienda",
    "fallbacks": "no logré entenderle bien",
    "verification_locked": "no pudimos verificar su identidad",
}
UNAVAILABLE = (
    "No logré comunicarle con una persona en este momento. Puede llamarnos al (01) 311-9000, de lunes a viernes "
    "de 9:00 a 18:00 y sábados de 9:00 a 13:00."
)


def _masked(document: Optional[str]) -> Optional[str]:
    return f"****{document[-3:]}" if document else None


def transcript(tracker: Tracker) -> list[dict[str, Any]]:
    """The conversation so far as the agent will read it: customer and bot turns, oldest first."""
    turns = []
    for event in tracker.events:
        text = event.get("text")
        if not text or text.startswith("EXTERNAL:") or event.get("event") not in ("user", "bot"):
            continue
        role = "customer" if event["event"] == "user" else (
            "agent" if (event.get("metadata") or {}).get("from") == "agent" else "bot"
        )
        at = datetime.fromtimestamp(float(event.get("timestamp") or 0)).astimezone().isoformat()
        turns.append({"role": role, "text": text, "at": at})
    return turns[-TRANSCRIPT_TURNS:]


def context(tracker: Tracker, reason: str, priority: str) -> dict[str, Any]:
    customer_id = tracker.get_slot("verified_customer_id")
    journey = "collections" if tracker.get_slot("collections_goal") else (
        "credit" if tracker.get_slot("product") or tracker.get_slot("application_code") else None
    )
    return {
        "conversation_id": tracker.sender_id,
        "channel": tracker.get_latest_input_channel() or "rest",
        "reason": reason,
        "priority": priority,
        "customer": {
            "customer_id": int(customer_id) if customer_id and str(customer_id).isdigit() else None,
            "name": tracker.get_slot("verified_first_name"),
            "verified": tracker.get_slot("identity_verified") is True,
            "document": _masked(tracker.get_slot("verify_document") or tracker.get_slot("document_number")),
        },
        "journey": journey,
        "values": {slot: tracker.get_slot(slot) for slot in CONTEXT_SLOTS if tracker.get_slot(slot) is not None},
        "offers": tracker.get_slot("plan_offer_ids") or [],
        "transcript": transcript(tracker),
    }


async def hand_off(
    dispatcher: CollectingDispatcher, tracker: Tracker, reason: str, amount: Optional[Decimal] = None
) -> list[EventType]:
    """Pass the conversation to a person (or offer a callback when nobody can take it) and say so."""
    if tracker.get_latest_input_channel() == VOICE_CHANNEL:
        dispatcher.utter_message(response="utter_human_contact")  # its voice variant puts the call through
        return [handed_off(reason)]
    priority = handoff_policy().priority_for(reason, amount)
    key = hashlib.sha256(f"{tracker.sender_id}|{reason}|{len(tracker.events)}".encode()).hexdigest()
    try:
        answer = await DeskClient().open_handoff(context(tracker, reason, priority), idempotency_key=key)
    except BackendError:
        dispatcher.utter_message(text=UNAVAILABLE)
        return []
    if answer.get("status") == "queued":
        why = REASON_TEXT.get(reason)
        dispatcher.utter_message(
            text=("Como " + why + ", l" if why else "L")
            + "e comunico con una persona de nuestro equipo, que ya tiene lo que conversamos y le escribirá por "
            "aquí en breve. Puede seguir escribiendo: todo le llega."
        )
        # The bot listens while paused: when the desk resumes it, the next message is read as after any answer.
        return [handed_off(reason), ActiveLoop(None), ActionExecuted("action_listen"), ConversationPaused()]
    return [handed_off(reason), *offer_callback(dispatcher, answer)]


def offer_callback(dispatcher: CollectingDispatcher, answer: dict[str, Any]) -> list[EventType]:
    """Nobody can take it now: say so honestly and offer a callback slot or a written message."""
    slots = [datetime.fromisoformat(slot) for slot in (answer.get("callback_slots") or [])[:2]]
    opening = "Ahora no hay asesores disponibles" if answer.get("status") == "no_agents" else (
        "En este momento estamos fuera del horario de atención"
    )
    buttons = [
        {"title": f"{format_short_day(slot.date())} {slot:%H:%M}",
         "payload": f'/request_callback{{"callback_at": "{slot.isoformat()}"}}'}
        for slot in slots
    ]
    buttons.append({"title": "Dejar un mensaje", "payload": "/leave_ticket"})
    dispatcher.utter_message(
        text=f"{opening}. Puedo pedir que le llamemos en uno de estos horarios o dejar su mensaje para que un "
        "asesor le responda por este medio. ¿Qué prefiere?",
        buttons=buttons,
    )
    return [ActiveLoop(None)]


class ActionHandoff(Action):
    """The customer asked for a person, or is frustrated: hand off at once."""

    def name(self) -> str:
        return "action_handoff"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        intent = (tracker.latest_message.get("intent") or {}).get("name")
        reason = "frustration" if intent == "express_frustration" else "explicit_request"
        return await hand_off(dispatcher, tracker, reason)


class ActionFallback(Action):
    """A message not understood: ask to rephrase; hand off when it happens again in a row, or when the customer
    repeats the same message, shouts or insults (frustration signals of policies/handoff.yml)."""

    def name(self) -> str:
        return "action_fallback"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        policy = handoff_policy()
        text = tracker.latest_message.get("text") or ""
        if frustration_signal(text, policy.frustration) or self.repeated(tracker, policy.frustration.repeated_message):
            return await hand_off(dispatcher, tracker, "frustration")
        if self.fallbacks_in_a_row(tracker) >= policy.fallbacks_in_a_row.count:
            return await hand_off(dispatcher, tracker, "fallbacks")
        dispatcher.utter_message(response="utter_please_rephrase")
        return []

    @staticmethod
    def fallbacks_in_a_row(tracker: Tracker) -> int:
        """Customer messages not understood at the end of the conversation, this one included."""
        count = 0
        for event in reversed(tracker.events):
            if event.get("event") != "user":
                continue
            if (event.get("parse_data") or {}).get("intent", {}).get("name") != "nlu_fallback":
                break
            count += 1
        return count

    @staticmethod
    def repeated(tracker: Tracker, times: int) -> bool:
        texts = [e.get("text", "").strip().lower() for e in tracker.events if e.get("event") == "user"][-times:]
        return len(texts) == times and len(set(texts)) == 1


class ActionOpenTicket(Action):
    """A callback at the chosen time, or a written message, for when a person is free."""

    def name(self) -> str:
        return "action_open_ticket"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        callback_at = next(tracker.get_latest_entity_values("callback_at"), None)
        ticket = {
            "conversation_id": tracker.sender_id,
            "kind": "callback" if callback_at else "ticket",
            "callback_at": callback_at,
            "summary": " / ".join(t["text"] for t in transcript(tracker) if t["role"] == "customer")[-500:],
            "customer": context(tracker, "ticket", "normal")["customer"],
        }
        key = hashlib.sha256(f"{tracker.sender_id}|ticket|{len(tracker.events)}".encode()).hexdigest()
        try:
            opened = await DeskClient().open_ticket(ticket, idempotency_key=key)
        except BackendError:
            dispatcher.utter_message(text=UNAVAILABLE)
            return []
        if callback_at:
            when = datetime.fromisoformat(callback_at)
            text = f"Listo: le llamaremos el {format_day(when.date())} a las {when:%H:%M} (solicitud {opened['code']})."
        else:
            text = (f"Listo: dejé su mensaje (solicitud {opened['code']}) y un asesor le responderá por este medio "
                    "en cuanto esté disponible.")
        dispatcher.utter_message(text=text)
        return [handed_off("ticket")]


class ActionHandback(Action):
    """The person resolved the conversation: the bot is back, says so, and may ask one satisfaction question."""

    def name(self) -> str:
        return "action_handback"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        dispatcher.utter_message(
            text="Gracias por su paciencia. Soy Credia otra vez: si necesita algo más, aquí estoy."
        )
        if next(tracker.get_latest_entity_values("survey"), None) == "yes":
            dispatcher.utter_message(
                text="¿Cómo calificaría la atención que recibió, del 1 (mala) al 5 (excelente)?",
                buttons=[{"title": str(n), "payload": f'/rate_service{{"rating": "{n}"}}'} for n in range(5, 0, -1)],
            )
        return []


class ActionRecordSurvey(Action):
    def name(self) -> str:
        return "action_record_survey"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        typed = re.search(r"\b([1-5])\b", tracker.latest_message.get("text") or "")
        rating = next(tracker.get_latest_entity_values("rating"), None) or (typed.group(1) if typed else None)
        if rating is None or not str(rating).isdigit() or not 1 <= int(rating) <= 5:
            dispatcher.utter_message(text="Gracias. Si quiere calificar la atención, elija un número del 1 al 5.")
            return []
        try:
            await DeskClient().record_survey(tracker.sender_id, int(rating))
        except BackendError:
            pass  # the thanks does not depend on the desk; the rating is also in the tracker
        dispatcher.utter_message(text="¡Gracias por su opinión! Nos ayuda a mejorar.")
        return []
