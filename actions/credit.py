"""Credit journey actions around the form: requirements, rates, simulation, submission, offers and status."""

from __future__ import annotations

import hashlib
from datetime import date
from decimal import Decimal
from typing import Any

from rasa_sdk import Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.base import BackendAction, goal_reached, handed_off
from actions.credit_form import CREDIT_STEPS, product_info
from actions.handoff import hand_off
from credia.backends.core_banking import CoreBankingClient
from credia.money import format_money, format_rate

DEFAULT_PRODUCT = "PERSONAL"
STATUS_TEXT = {
    "received": "recibida, a la espera de su respuesta a nuestra oferta",
    "in_review": "en evaluación",
    "referred": "en revisión por un asesor, que se comunicará con usted",
    "approved": "aprobada",
    "rejected": "no aprobada",
    "disbursed": "desembolsada",
    "cancelled": "anulada",
}


def format_date(iso: str) -> str:
    return date.fromisoformat(iso[:10]).strftime("%d/%m/%Y")


def describe_offer(offer: dict[str, Any]) -> str:
    """The figures an offer must show (SBS: TEA and TCEA next to the installment)."""
    return (
        f"{format_money(offer['amount'])} a {offer['term_months']} meses, con una cuota mensual de "
        f"{format_money(offer['installment'])}. TEA {format_rate(offer['tea'])}, TCEA {format_rate(offer['tcea'])}, "
        f"total a pagar {format_money(offer['total_to_pay'])}; primera cuota el {format_date(offer['first_due_date'])}."
    )


class ActionShowRequirements(BackendAction):
    def name(self) -> str:
        return "action_show_requirements"

    async def act(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        code = next(tracker.get_latest_entity_values("product"), None) or tracker.get_slot("product")
        products = await CoreBankingClient().products()
        chosen = [p for p in products if p["code"] == code] or products
        parts = []
        for product in chosen:
            items = "\n".join(f"  – {item}" for item in product["requirements"])
            parts.append(f"• {product['name']}:\n{items}")
        dispatcher.utter_message(text="Estos son los requisitos:\n" + "\n".join(parts))
        return []


class ActionShowRates(BackendAction):
    def name(self) -> str:
        return "action_show_rates"

    async def act(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        products = await CoreBankingClient().products()
        lines = "\n".join(f"• {p['name']}: TEA {format_rate(p['tea'])}" for p in products)
        dispatcher.utter_message(
            text=f"Nuestras tasas efectivas anuales (TEA) son:\n{lines}\n"
            "La TCEA, que suma comisiones y seguros, depende del monto y el plazo: puedo simularla si me dice "
            "cuánto necesita y en cuántos meses."
        )
        return []


class ActionSimulateLoan(BackendAction):
    def name(self) -> str:
        return "action_simulate_loan"

    async def act(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        code = tracker.get_slot("product") or DEFAULT_PRODUCT
        product = await product_info(code)
        term = int(tracker.get_slot("term_months"))
        simulation = await CoreBankingClient().simulate(code, tracker.get_slot("amount"), term)
        dispatcher.utter_message(
            text=f"Con {product['name'] if product else 'este crédito'}: {describe_offer(simulation)} "
            "Es una simulación: la oferta final depende de la evaluación."
        )
        return [SlotSet("product", code)]


def application_body(tracker: Tracker) -> dict[str, Any]:
    """What the customer gave in the form, as core banking expects it."""
    return {
        "product_code": tracker.get_slot("product"),
        "amount": tracker.get_slot("amount"),
        "term_months": int(tracker.get_slot("term_months")),
        "monthly_income": tracker.get_slot("monthly_income"),
        "employment_type": tracker.get_slot("employment_type"),
        "employment_tenure_months": int(tracker.get_slot("employment_tenure_months")),
        "document_type": "DNI",
        "document_number": tracker.get_slot("document_number"),
        "date_of_birth": tracker.get_slot("date_of_birth"),
        "email": tracker.get_slot("email"),
        "phone": tracker.get_slot("phone"),
        "channel": tracker.get_latest_input_channel() or "rest",
        "consent": {"granted": True, "source": f"chat:{tracker.sender_id}"},
    }


def idempotency_key(tracker: Tracker, body: dict[str, Any]) -> str:
    """The same answers in the same conversation are the same application, however often it is sent."""
    digest = hashlib.sha256(repr(sorted(body.items())).encode()).hexdigest()[:32]
    return f"{tracker.sender_id}:{digest}"


def form_reset() -> list[EventType]:
    """Clear the answers so a second application in the session starts fresh."""
    return [SlotSet(slot, None) for slot in CREDIT_STEPS] + [SlotSet("form_failures", None)]


class ActionSubmitApplication(BackendAction):
    def name(self) -> str:
        return "action_submit_application"

    async def act(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        if tracker.get_slot("personal_data_consent") is False:
            dispatcher.utter_message(response="utter_no_consent")
            return [SlotSet("application_outcome", "no_consent"), *form_reset()]
        body = application_body(tracker)
        result = await CoreBankingClient().submit_application(body, idempotency_key(tracker, body))
        code, outcome = result["code"], result["outcome"]
        documents = result.get("required_documents") or []
        if outcome == "pre_approved":
            text = f"¡Buenas noticias! Su solicitud {code} está preaprobada: {describe_offer(result['offer'])}"
            if documents:
                text += "\nPara el desembolso necesitaremos: " + ", ".join(d["label"] for d in documents) + "."
        elif outcome == "counter_offer":
            text = (
                f"Registré su solicitud {code}. Con los datos que me dio no podemos aprobar exactamente lo que "
                f"pidió, pero sí le podemos ofrecer: {describe_offer(result['offer'])}\n¿Acepta esta oferta?"
            )
        elif outcome == "referred":
            text = (
                f"Registré su solicitud {code} con todos sus datos. Necesita la revisión de un asesor, que se "
                "comunicará con usted en un plazo de 24 horas hábiles; no tendrá que repetir nada."
            )
        else:
            reasons = " ".join(
                " ".join(filter(None, (r["message"], r.get("alternative")))) for r in result.get("reasons", [])
            )
            text = f"Registré su solicitud {code}. Por ahora no podemos aprobarla. {reasons}".strip()
        buttons = (
            [{"title": "Sí, acepto", "payload": "/affirm"}, {"title": "No, gracias", "payload": "/deny"}]
            if outcome == "counter_offer" else []
        )
        dispatcher.utter_message(text=text, buttons=buttons)
        marks = [goal_reached("application_submitted")]
        if outcome == "referred":
            marks.append(handed_off("credit_referred"))  # the referral goes to a person even when the desk is down
            marks += await hand_off(dispatcher, tracker, "credit_referred", Decimal(str(body["amount"])))
        return [
            SlotSet("application_code", code),
            SlotSet("application_id", str(result["id"])),
            SlotSet("application_outcome", outcome),
            *form_reset(),
            *marks,
        ]


class ActionAcceptOffer(BackendAction):
    def name(self) -> str:
        return "action_accept_offer"

    async def act(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        result = await CoreBankingClient().accept_offer(int(tracker.get_slot("application_id")))
        dispatcher.utter_message(
            text=f"¡Listo! Aceptó la oferta y su solicitud {result['code']} quedó aprobada: "
            f"{describe_offer(result['offer'])}"
        )
        return [SlotSet("application_outcome", "pre_approved")]


class ActionApplicationStatus(BackendAction):
    """Tell the status only to whom proved to be the applicant; say nothing about anyone else's."""

    def name(self) -> str:
        return "action_application_status"

    async def act(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        code = tracker.get_slot("application_code")
        identity = {"document_number": tracker.get_slot("document_number")}
        if code:
            identity["code"] = code
        else:
            identity["date_of_birth"] = tracker.get_slot("date_of_birth")
        applications = await CoreBankingClient().lookup_applications(**identity)
        if not applications:
            dispatcher.utter_message(
                text="No encontré una solicitud con esos datos. Revise el código o su DNI y fecha de nacimiento "
                "y vuelva a intentarlo."
            )
            return [SlotSet("application_code", None), SlotSet("document_number", None), SlotSet("date_of_birth", None)]
        lines = [
            f"• {a['code']} – {a['product_name']} por {format_money(a['amount'])} a {a['term_months']} meses: "
            f"{STATUS_TEXT.get(a['status'], a['status'])}."
            for a in applications
        ]
        dispatcher.utter_message(text="Este es el estado de su solicitud:\n" + "\n".join(lines))
        return [goal_reached("status_answered")]

