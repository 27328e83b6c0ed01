"""The collections journey: debt look-up, payment links, payment plans, promises, claims and disputes.

Every request goes through one gate: ``action_collections_start`` records what the customer wants (the goal)
and whether they are verified; the rules then run the verification form when needed, and
``action_collections_goal`` does the work. Only ``verified_customer_id`` decides whose data is read: an ID or
a name typed in a message never does. The tone accompanies: no threats, no blame, never "why did you not pay".
"""

from __future__ import annotations

import hashlib
import re
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Optional

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.base import BackendAction, goal_reached, handed_off
from actions.credit_form import first
from actions.handoff import hand_off
from actions.verification import verification_reset, verified_customer_id
from credia.backends import BackendRejected
from credia.backends.core_banking import CoreBankingClient
from credia.backends.payments import PaymentsClient
from credia.money import format_day, format_money

GOALS = {
    "check_debt": "debt",
    "pay_now": "pay",
    "request_payment_plan": "plan",
    "counter_offer": "plan",
    "choose_plan": "plan",
    "promise_to_pay": "promise",
    "already_paid": "paid",
    "dispute_debt": "dispute",
    "report_hardship": "hardship",
}
MIN_PAYMENT = Decimal("10.00")
RECENT_PAYMENT_DAYS = 10
CONTACT = "Si prefiere, también puede llamarnos al (01) 311-9000, de lunes a viernes de 9:00 a 18:00."
NEXT_STEPS = [
    {"title": "Pagar ahora", "payload": "/pay_now"},
    {"title": "Plan de pagos", "payload": "/request_payment_plan"},
    {"title": "Elegir fecha de pago", "payload": "/promise_to_pay"},
]
ORDINALS = {"primera": 1, "primer": 1, "uno": 1, "segunda": 2, "dos": 2, "tercera": 3, "tres": 3}


def channel_of(tracker: Tracker) -> str:
    return tracker.get_latest_input_channel() or "rest"


def money(amount: Any, currency: str = "PEN") -> str:
    return format_money(Decimal(str(amount)), currency)


def entity_value(tracker: Tracker, entity: str) -> Optional[str]:
    return next(tracker.get_latest_entity_values(entity), None)


def collection_target(loans: list[dict[str, Any]]) -> Optional[dict[str, Any]]:
    """The loan a payment, plan or promise is about: the most overdue one, else the next one due."""
    active = [loan for loan in loans if loan["status"] == "active"]
    active.sort(key=lambda loan: (-loan["days_past_due"], loan["id"]))
    return active[0] if active else None


def loan_line(loan: dict[str, Any]) -> str:
    currency = loan["currency"]
    name = f"{loan['product_name']} n.º {loan['id']}"
    if loan["status"] != "active":
        return f"• {name}: pagado por completo."
    if Decimal(loan["total_overdue"]) > 0:
        count = loan["installments_overdue"]
        text = (
            f"• {name}: vencido {money(loan['total_overdue'], currency)} — {count} "
            f"{'cuota' if count == 1 else 'cuotas'} con {loan['days_past_due']} días de atraso "
            f"(incluye {money(loan['late_interest'], currency)} de interés moratorio)."
        )
    else:
        text = f"• {name}: al día."
    if loan.get("next_due_date"):
        due = date.fromisoformat(loan["next_due_date"])
        text += f" Próxima cuota: {money(loan['next_due_amount'], currency)} el {format_day(due)}."
    text += f" Saldo total: {money(loan['outstanding_balance'], currency)}."
    if loan.get("collections_hold"):
        text += " Está en revisión por su reclamo: no le enviaremos mensajes de cobranza mientras tanto."
    return text


def offer_title(offer: dict[str, Any]) -> str:
    if offer["kind"] == "settlement":
        return "Pago único"
    return f"{offer['installments_count']} cuotas"


def offer_text(offer: dict[str, Any], currency: str) -> str:
    """One offer exactly as stored in core banking."""
    if offer["kind"] == "settlement":
        until = format_day(_day(offer["valid_until"]))
        text = f"pago único de {money(offer['total_to_pay'], currency)} hasta el {until}"
        if Decimal(offer["discount"]) > 0:
            text += f" (con un descuento de {money(offer['discount'], currency)})"
        return text
    text = ""
    if Decimal(offer["down_payment"]) > 0:
        text = f"inicial de {money(offer['down_payment'], currency)} hoy y "
    text += (
        f"{offer['installments_count']} cuotas mensuales de {money(offer['installment_amount'], currency)} "
        f"desde el {format_day(_day(offer['first_due_date']))}"
    )
    if Decimal(offer["discount"]) > 0:
        text += f", con un descuento de {money(offer['discount'], currency)}"
    return text


def sentence(text: str) -> str:
    """Upper-case the first letter only (``str.capitalize`` would turn "S/" into "s/")."""
    return text[:1].upper() + text[1:]


def _day(value: str) -> date:
    return date.fromisoformat(str(value)[:10])


def link_key(tracker: Tracker, loan_id: int, amount: Decimal) -> str:
    """One link per conversation, loan, amount and day: a retried or repeated request returns the same one."""
    raw = f"{tracker.sender_id}|{loan_id}|{amount}|{date.today().isoformat()}"
    return "chat-" + hashlib.sha256(raw.encode()).hexdigest()[:40]


async def payment_link(
    tracker: Tracker, customer_id: int, loan: dict[str, Any], amount: Decimal, reference: str
) -> dict[str, Any]:
    """A valid link for this amount: the pending one if there is one, else a new one tied to this conversation."""
    client = PaymentsClient()
    for link in await client.find_links(customer_id=str(customer_id), status="pending"):
        if link.get("loan_id") == str(loan["id"]) and Decimal(link["amount"]) == amount:
            return link
    return await client.create_link(
        amount=amount,
        currency=loan["currency"],
        reference=reference,
        customer_id=customer_id,
        loan_id=loan["id"],
        description=f"Pago de su {loan['product_name']}",
        idempotency_key=link_key(tracker, loan["id"], amount),
        metadata={"conversation_id": tracker.sender_id, "channel": channel_of(tracker)},
    )


def link_text(link: dict[str, Any], loan: dict[str, Any]) -> str:
    expires = datetime.fromisoformat(link["expires_at"].replace("Z", "+00:00"))
    return (
        f"Este es su enlace para pagar {money(link['amount'], loan['currency'])} de su {loan['product_name']}:\n"
        f"{link['url']}\nEs válido hasta el {format_day(expires.date())}. Le avisaré por aquí cuando el pago "
        "se acredite."
    )


async def open_case(
    tracker: Tracker, kind: str, summary: str, customer_id: Optional[int], loan_id: Optional[int] = None,
    priority: str = "normal", details: Optional[dict[str, Any]] = None,
    attachments: Optional[list[dict[str, Any]]] = None,
) -> dict[str, Any]:
    """A case a person will pick up, with what the customer already said; one per conversation and reason."""
    case = {
        "kind": kind,
        "customer_id": customer_id,
        "loan_id": loan_id,
        "channel": channel_of(tracker),
        "conversation_id": tracker.sender_id,
        "priority": priority,
        "summary": summary[:500],
        "details": details or {},
        "attachments": attachments or [],
    }
    key = hashlib.sha256(f"{tracker.sender_id}|{kind}|{loan_id}|{len(tracker.events)}".encode()).hexdigest()
    return await CoreBankingClient().open_case(case, idempotency_key=key)


async def escalated(
    dispatcher: CollectingDispatcher, tracker: Tracker, case: dict[str, Any], amount: Optional[Any] = None
) -> list[EventType]:
    """The case is remembered in the conversation with the handoff reason, and a person takes over now when
    one is available (the case waits for them otherwise)."""
    debt = Decimal(str(amount)) if amount is not None else None
    return [SlotSet("case_code", case["code"]), handed_off(case["kind"]),
            *await hand_off(dispatcher, tracker, case["kind"], debt)]


class ActionCollectionsStart(Action):
    """Remember what the customer wants and what they already said; the rules decide whether to verify."""

    def name(self) -> str:
        return "action_collections_start"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        intent = tracker.latest_message.get("intent", {}).get("name")
        goal = GOALS.get(intent, "debt")
        verified = verified_customer_id(tracker) is not None
        events: list[EventType] = [
            SlotSet("collections_goal", goal),
            SlotSet("identity_verified", verified),
            SlotSet("payment_amount", entity_value(tracker, "amount") if goal in ("pay", "plan", "promise") else None),
            SlotSet("promise_date", None),
            SlotSet("promise_amount", None),
        ]
        if goal == "promise":
            when = entity_value(tracker, "relative_date") or entity_value(tracker, "date")
            events += [SlotSet("promise_date", when), SlotSet("promise_amount", entity_value(tracker, "amount"))]
        document = entity_value(tracker, "document_number")
        if verified:
            if document and document != tracker.get_slot("verify_document"):
                dispatcher.utter_message(
                    text="Por seguridad, solo puedo darle información de las cuentas a nombre del documento que "
                    "verificó en esta conversación."
                )
        else:
            events += [SlotSet("verify_answer", None), SlotSet("verify_document", document)]
        return events


class ActionCollectionsGoal(BackendAction):
    """Do what the customer asked for, once verified; say why not when verification failed."""

    def name(self) -> str:
        return "action_collections_goal"

    async def act(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        goal = tracker.get_slot("collections_goal") or "debt"
        customer_id = verified_customer_id(tracker)
        if customer_id is None:
            events: list[EventType] = [SlotSet("collections_goal", "none"), *verification_reset()]
            if tracker.get_slot("verify_answer") == "locked":
                return events + await hand_off(dispatcher, tracker, "verification_locked")
            dispatcher.utter_message(
                text="No pude verificar su identidad, así que no puedo mostrarle información de la cuenta. "
                "Puede intentarlo de nuevo más tarde o escribir «asesor»."
            )
            return events
        loans = await CoreBankingClient().loans(customer_id)
        handler = getattr(self, f"goal_{goal}", self.goal_debt)
        events = await handler(dispatcher, tracker, customer_id, loans)
        return [*verification_reset(), *events]

    async def goal_debt(self, dispatcher: CollectingDispatcher, tracker: Tracker, customer_id: int,
                        loans: list[dict[str, Any]]) -> list[EventType]:
        if not loans:
            dispatcher.utter_message(text="No tiene créditos con nosotros a su nombre. ¿Le ayudo con algo más?")
            return [SlotSet("collections_goal", "debt")]
        overdue = any(Decimal(loan["total_overdue"]) > 0 for loan in loans if loan["status"] == "active")
        text = "Este es el estado de sus créditos:\n" + "\n".join(loan_line(loan) for loan in loans)
        if overdue:
            text += "\n¿Cómo prefiere ponerse al día? Estoy para ayudarle."
        dispatcher.utter_message(text=text, buttons=NEXT_STEPS if overdue else [])
        return [SlotSet("collections_goal", "debt"), goal_reached("debt_shown")]

    async def goal_pay(self, dispatcher: CollectingDispatcher, tracker: Tracker, customer_id: int,
                       loans: list[dict[str, Any]]) -> list[EventType]:
        loan = collection_target(loans)
        if loan is None:
            dispatcher.utter_message(text="No tiene créditos con saldo pendiente. ¡Gracias por estar al día!")
            return [SlotSet("collections_goal", "pay")]
        balance = Decimal(loan["outstanding_balance"])
        overdue = Decimal(loan["total_overdue"])
        named = tracker.get_slot("payment_amount")
        text = (tracker.latest_message.get("text") or "").lower()
        if named:
            amount = Decimal(str(first(named)))
        elif re.search(r"\b(total|todo|saldo|cancelar el pr[eé]stamo|liquidar)\b", text):
            amount = balance
        else:
            amount = overdue if overdue > 0 else Decimal(loan["next_due_amount"] or balance)
        low = min(MIN_PAYMENT, balance)
        if not low <= amount <= balance:
            dispatcher.utter_message(
                text=f"Puedo generar un enlace por un monto entre {money(low, loan['currency'])} y "
                f"{money(balance, loan['currency'])} (su saldo total). ¿Qué monto desea pagar?",
                buttons=self.amount_buttons(loan),
            )
            return [SlotSet("collections_goal", "pay"), SlotSet("payment_amount", None)]
        link = await payment_link(tracker, customer_id, loan, amount, reference=f"PRE-{loan['id']}")
        dispatcher.utter_message(text=link_text(link, loan), buttons=self.amount_buttons(loan, exclude=amount))
        return [SlotSet("collections_goal", "pay"), SlotSet("payment_amount", None), goal_reached("payment_link")]

    @staticmethod
    def amount_buttons(loan: dict[str, Any], exclude: Optional[Decimal] = None) -> list[dict[str, str]]:
        choices = [("Pagar lo vencido", loan["total_overdue"]), ("Pagar saldo total", loan["outstanding_balance"])]
        return [
            {"title": title, "payload": f'/pay_now{{"amount": "{amount}"}}'}
            for title, amount in choices
            if Decimal(amount) > 0 and Decimal(amount) != exclude
        ]

    async def goal_plan(self, dispatcher: CollectingDispatcher, tracker: Tracker, customer_id: int,
                        loans: list[dict[str, Any]]) -> list[EventType]:
        loan = collection_target(loans)
        events: list[EventType] = [SlotSet("collections_goal", "plan"), SlotSet("payment_amount", None)]
        if loan is None or Decimal(loan["total_overdue"]) <= 0:
            dispatcher.utter_message(text="Sus créditos están al día, así que no necesita un plan de pagos. ¡Gracias!")
            return events
        monthly = tracker.get_slot("payment_amount")
        result = await CoreBankingClient().plan_offers(
            loan["id"], monthly_amount=str(first(monthly)) if monthly else None, channel=channel_of(tracker)
        )
        currency = loan["currency"]
        if not result["feasible"]:
            return events + await self.plan_not_feasible(dispatcher, tracker, customer_id, loan, result, monthly)
        offers = result["offers"]
        if monthly:
            head = f"Con {money(first(monthly), currency)} al mes, esto es lo que le puedo ofrecer:"
        else:
            head = (
                f"Para su {loan['product_name']}, con {money(result['debt'], currency)} vencidos, le puedo "
                "ofrecer:"
            )
        lines = [f"{n}. {sentence(offer_text(offer, currency))}." for n, offer in enumerate(offers, 1)]
        valid = min(_day(offer["valid_until"]) for offer in offers)
        tail = f"Las opciones son válidas hasta el {format_day(valid)}."
        if result.get("needs_approval"):
            tail += " Por el monto, el acuerdo necesita la aprobación de un asesor antes de quedar firme."
        tail += " Si ninguna le acomoda, dígame cuánto puede pagar al mes."
        buttons = [
            {"title": offer_title(offer), "payload": f'/choose_plan{{"plan_offer": "{offer["id"]}"}}'}
            for offer in offers
        ]
        dispatcher.utter_message(text="\n".join([head, *lines, tail]), buttons=buttons)
        return events + [SlotSet("plan_offer_ids", [offer["id"] for offer in offers])]

    async def plan_not_feasible(self, dispatcher: CollectingDispatcher, tracker: Tracker, customer_id: int,
                                loan: dict[str, Any], result: dict[str, Any], monthly: Any) -> list[EventType]:
        reason = result.get("reason")
        currency = loan["currency"]
        if reason == "plan_active":
            dispatcher.utter_message(text="Ya tiene un plan de pagos vigente para este crédito. Si necesita "
                                          "cambiarlo, escriba «asesor» y un asesor lo revisará con usted.")
            return []
        if reason == "collections_hold":
            dispatcher.utter_message(text="Este crédito está en revisión por su reclamo; mientras tanto no le "
                                          "pedimos pagos. Un asesor le contactará con el resultado.")
            return []
        if reason == "nothing_overdue":
            dispatcher.utter_message(text="Este crédito no tiene cuotas vencidas, así que no necesita un plan.")
            return []
        if reason == "below_minimum_installment":
            why = "es menor que la cuota mínima que podemos aceptar"
        else:
            needed = result.get("required_installments")
            why = (f"necesitaría {needed} cuotas" if needed else "necesitaría más cuotas") + (
                f", y para su caso lo máximo que podemos ofrecer son {result['max_installments']} cuotas"
            )
        case = await open_case(
            tracker, "negotiation",
            f"Propone pagar {money(first(monthly), currency)} al mes; fuera de la política ({reason}).",
            customer_id, loan["id"], details={"monthly_amount": str(first(monthly)), "result": result},
        )
        dispatcher.utter_message(
            text=f"Entiendo. Con {money(first(monthly), currency)} al mes {why}, así que no puedo aprobarlo "
            f"yo. Dejé su propuesta a un asesor (caso {case['code']}), que la revisará y le responderá por este "
            f"medio. Mientras tanto, puede elegir una de las opciones anteriores si alguna le sirve. {CONTACT}"
        )
        return await escalated(dispatcher, tracker, case, loan["total_overdue"])

    async def goal_promise(self, dispatcher: CollectingDispatcher, tracker: Tracker, customer_id: int,
                           loans: list[dict[str, Any]]) -> list[EventType]:
        loan = collection_target(loans)
        if loan is None or Decimal(loan["total_overdue"]) <= 0:
            dispatcher.utter_message(text="Sus créditos están al día: no necesita comprometer una fecha. ¡Gracias!")
            return [SlotSet("collections_goal", "none")]
        terms = await CoreBankingClient().promise_terms(loan["id"])
        pending = terms.get("pending_promise")
        if pending:
            dispatcher.utter_message(
                text=f"Ya tiene registrado el compromiso de pagar {money(pending['amount'], loan['currency'])} el "
                f"{format_day(_day(pending['promised_date']))}. Si quiere pagar ahora, escriba «pagar»."
            )
            return [SlotSet("collections_goal", "none")]
        terms = {**terms, "loan_id": loan["id"], "currency": loan["currency"], "product_name": loan["product_name"]}
        return [SlotSet("collections_goal", "promise"), SlotSet("promise_terms", terms)]

    async def goal_paid(self, dispatcher: CollectingDispatcher, tracker: Tracker, customer_id: int,
                        loans: list[dict[str, Any]]) -> list[EventType]:
        since = date.today() - timedelta(days=RECENT_PAYMENT_DAYS)
        client = CoreBankingClient()
        found = []
        for loan in loans:
            for payment in await client.loan_payments(loan["id"]):
                if _day(payment["paid_at"]) >= since:
                    found.append((loan, payment))
        if found:
            lines = [
                f"• {money(p['amount'], loan['currency'])} el {format_day(_day(p['paid_at']))}, aplicado a su "
                f"{loan['product_name']}."
                for loan, p in found
            ]
            dispatcher.utter_message(text="Sí, tenemos registrado su pago:\n" + "\n".join(lines))
            return [SlotSet("collections_goal", "paid"), *(await self.goal_debt_events(dispatcher, loans))]
        dispatcher.utter_message(
            text="No encuentro pagos recientes a su nombre; a veces tardan hasta 48 horas en reflejarse."
        )
        return [SlotSet("collections_goal", "receipt"), SlotSet("claim_details", None)]

    async def goal_debt_events(self, dispatcher: CollectingDispatcher, loans: list[dict[str, Any]]) -> list[EventType]:
        owing = [loan for loan in loans if loan["status"] == "active" and Decimal(loan["total_overdue"]) > 0]
        if owing:
            dispatcher.utter_message(text="Hoy su saldo vencido es:\n" + "\n".join(loan_line(loan) for loan in owing))
        else:
            dispatcher.utter_message(text="Con eso, sus créditos están al día. ¡Gracias!")
        return []

    async def goal_dispute(self, dispatcher: CollectingDispatcher, tracker: Tracker, customer_id: int,
                           loans: list[dict[str, Any]]) -> list[EventType]:
        loan = collection_target(loans)
        text = tracker.latest_message.get("text") or ""
        said = next((e.get("text") for e in reversed(tracker.events) if e.get("event") == "user"
                     and (e.get("parse_data") or {}).get("intent", {}).get("name") == "dispute_debt"), text)
        case = await open_case(
            tracker, "dispute", f"El cliente no reconoce la deuda: «{said}»", customer_id,
            loan["id"] if loan else None, priority="high",
        )
        about = f" sobre su {loan['product_name']} n.º {loan['id']}" if loan else ""
        dispatcher.utter_message(
            text=f"Entiendo su preocupación y la tomamos en serio. Registré su reclamo{about} (caso "
            f"{case['code']}). Mientras lo revisamos, no le enviaremos mensajes de cobranza de ese crédito. Un "
            f"asesor especializado se comunicará con usted por este medio. {CONTACT}"
        )
        return [SlotSet("collections_goal", "dispute"), *await escalated(dispatcher, tracker, case)]

    async def goal_hardship(self, dispatcher: CollectingDispatcher, tracker: Tracker, customer_id: int,
                            loans: list[dict[str, Any]]) -> list[EventType]:
        loan = collection_target(loans)
        said = next((e.get("text") for e in reversed(tracker.events) if e.get("event") == "user"
                     and (e.get("parse_data") or {}).get("intent", {}).get("name") == "report_hardship"), "")
        case = await open_case(
            tracker, "hardship", f"Situación difícil: «{said}»", customer_id, loan["id"] if loan else None,
        )
        events: list[EventType] = []
        if loan is not None and Decimal(loan["total_overdue"]) > 0:
            events += await self.goal_plan(dispatcher, tracker, customer_id, loans)
        dispatcher.utter_message(
            text=f"Además, dejé su caso a un asesor (caso {case['code']}) para ver con usted otras alternativas "
            "según su situación. No tiene que decidir nada hoy."
        )
        debt = loan["total_overdue"] if loan else None
        return [*events, SlotSet("collections_goal", "hardship"), *await escalated(dispatcher, tracker, case, debt)]


class ActionAskPromiseDate(Action):
    def name(self) -> str:
        return "action_ask_promise_date"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        terms = tracker.get_slot("promise_terms") or {}
        latest = terms.get("latest_date")
        limit = f" Puede ser desde hoy hasta el {format_day(_day(latest))}." if latest else ""
        dispatcher.utter_message(text=f"¿Qué día realizará el pago?{limit}")
        return []


class ActionAskPromiseAmount(Action):
    def name(self) -> str:
        return "action_ask_promise_amount"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        terms = tracker.get_slot("promise_terms") or {}
        currency = terms.get("currency", "PEN")
        suggested = terms.get("suggested_amount")
        dispatcher.utter_message(
            text=f"¿Cuánto pagará ese día? Lo vencido hoy es {money(suggested, currency)}; el mínimo para "
            f"registrar el compromiso es {money(terms.get('min_amount'), currency)}.",
            buttons=[{"title": f"{money(suggested, currency)}", "payload": f'/inform{{"amount": "{suggested}"}}'}],
        )
        return []


class ValidatePromiseForm(FormValidationAction):
    """Date and amount within the policy for the loan's bucket, as core banking stated it."""

    def name(self) -> str:
        return "validate_promise_form"

    async def validate_promise_date(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        if value is None:
            return {"promise_date": None}
        terms = tracker.get_slot("promise_terms") or {}
        try:
            when = date.fromisoformat(str(first(value)))
        except ValueError:
            dispatcher.utter_message(text="No logré entender la fecha. Por ejemplo: «el viernes» o «el 15».")
            return {"promise_date": None}
        earliest, latest = _day(terms["earliest_date"]), _day(terms["latest_date"])
        if not earliest <= when <= latest:
            dispatcher.utter_message(
                text=f"Para registrar el compromiso, la fecha debe ser entre hoy y el {format_day(latest)}. "
                "¿Qué día le queda mejor dentro de ese plazo?"
            )
            return {"promise_date": None}
        return {"promise_date": when.isoformat()}

    async def validate_promise_amount(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        if value is None:
            return {"promise_amount": None}
        terms = tracker.get_slot("promise_terms") or {}
        currency = terms.get("currency", "PEN")
        try:
            amount = Decimal(str(first(value)))
        except (InvalidOperation, ValueError):
            dispatcher.utter_message(text="No logré entender el monto. Escríbalo en números, por ejemplo «300».")
            return {"promise_amount": None}
        low, high = Decimal(terms["min_amount"]), Decimal(terms["max_amount"])
        if not low <= amount <= high:
            dispatcher.utter_message(
                text=f"El monto del compromiso debe estar entre {money(low, currency)} y {money(high, currency)}. "
                "¿Cuánto podrá pagar?"
            )
            return {"promise_amount": None}
        return {"promise_amount": str(amount)}


class ActionRegisterPromise(BackendAction):
    def name(self) -> str:
        return "action_register_promise"

    async def act(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        terms = tracker.get_slot("promise_terms") or {}
        if verified_customer_id(tracker) is None or not terms:
            return []
        when = _day(tracker.get_slot("promise_date"))
        amount = Decimal(str(tracker.get_slot("promise_amount")))
        done = [SlotSet("promise_date", None), SlotSet("promise_amount", None), SlotSet("promise_terms", None),
                SlotSet("collections_goal", "none")]
        try:
            promise = await CoreBankingClient().create_promise(
                int(terms["loan_id"]), str(amount), when.isoformat(), channel_of(tracker)
            )
        except BackendRejected as error:
            dispatcher.utter_message(text=f"No pude registrar el compromiso: {error.detail}. Escriba «asesor» si "
                                          "necesita ayuda.")
            return done
        dispatcher.utter_message(
            text=f"Listo, registré su compromiso de pagar {money(promise['amount'], terms['currency'])} el "
            f"{format_day(when)} para su {terms['product_name']}. Si quiere pagar antes, escriba «pagar» y le "
            "envío el enlace."
        )
        return done + [goal_reached("promise_created")]


class ActionConfirmPlan(BackendAction):
    """Show the chosen offer, exactly as stored, and ask for a clear yes."""

    def name(self) -> str:
        return "action_confirm_plan"

    async def act(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        customer_id = verified_customer_id(tracker)
        offer_ids = tracker.get_slot("plan_offer_ids") or []
        client = CoreBankingClient()
        offers = [await client.plan_offer(offer_id) for offer_id in offer_ids] if customer_id else []
        offer = self.chosen(tracker, offers)
        if offer is None:
            dispatcher.utter_message(text="¿Cuál de las opciones prefiere? Puede tocar uno de los botones o "
                                          "escribir «plan de pagos» para verlas de nuevo.")
            return []
        loans = {loan["id"]: loan for loan in await client.loans(customer_id)}
        loan = loans.get(offer["loan_id"])
        if loan is None:
            dispatcher.utter_message(text="No encuentro esa opción entre las suyas. Escriba «plan de pagos» para "
                                          "ver sus opciones.")
            return [SlotSet("selected_offer", None)]
        text = (
            f"Usted elige: {offer_text(offer, loan['currency'])}. Total a pagar: "
            f"{money(offer['total_to_pay'], loan['currency'])}.\n¿Confirma este acuerdo?"
        )
        buttons = [{"title": "Sí, confirmo", "payload": "/affirm"}, {"title": "No, todavía no", "payload": "/deny"}]
        dispatcher.utter_message(text=text, buttons=buttons)
        return [SlotSet("selected_offer", offer["id"])]

    @staticmethod
    def chosen(tracker: Tracker, offers: list[dict[str, Any]]) -> Optional[dict[str, Any]]:
        """The offer named by a button, or by "la de 6 cuotas", "el pago único", "la 2" or "la segunda"."""
        named = entity_value(tracker, "plan_offer")
        if named:
            return next((offer for offer in offers if offer["id"] == named), None)
        text = (tracker.latest_message.get("text") or "").lower()
        count = re.search(r"\b(\d{1,2})\s*cuotas\b", text)
        if count:
            wanted = int(count[1])
            return next((o for o in offers if o["kind"] == "installments" and o["installments_count"] == wanted), None)
        if re.search(r"[uú]nico|contado|de una|al toque|descuento", text):
            return next((offer for offer in offers if offer["kind"] == "settlement"), None)
        number = re.search(r"\b([1-3])\b", text)
        index = int(number.group(1)) if number else next((n for w, n in ORDINALS.items() if w in text), None)
        return offers[index - 1] if index and index <= len(offers) else None


class ActionAcceptPlan(BackendAction):
    def name(self) -> str:
        return "action_accept_plan"

    async def act(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        customer_id = verified_customer_id(tracker)
        offer_id = tracker.get_slot("selected_offer")
        if customer_id is None or not offer_id:
            return []
        client = CoreBankingClient()
        done = [SlotSet("selected_offer", None), SlotSet("plan_offer_ids", None)]
        try:
            plan = await client.accept_plan_offer(offer_id, channel_of(tracker))
        except BackendRejected as error:
            dispatcher.utter_message(
                text=f"No pude registrar ese acuerdo ({error.detail}). Escriba «plan de pagos» para ver opciones "
                "actualizadas."
            )
            return done
        loans = {loan["id"]: loan for loan in await client.loans(customer_id)}
        loan = loans[plan["loan_id"]]
        currency = loan["currency"]
        first_label = "Pago único" if plan["kind"] == "settlement" else "Inicial"
        schedule = "\n".join(
            f"• {first_label if item['number'] == 0 else 'Cuota ' + str(item['number'])}: "
            f"{money(item['amount'], currency)} el {format_day(_day(item['due_date']))}"
            for item in plan["schedule"]
        )
        if plan["status"] == "pending_approval":
            case = await open_case(
                tracker, "plan_approval", f"Plan n.º {plan['id']} pendiente de aprobación", customer_id,
                loan["id"], details={"plan_id": plan["id"], "offer_id": offer_id},
            )
            dispatcher.utter_message(
                text=f"Registré su propuesta de plan n.º {plan['id']}:\n{schedule}\nPor el monto, un asesor debe "
                f"aprobarla (caso {case['code']}); le responderá por este medio. {CONTACT}"
            )
            return done + await escalated(dispatcher, tracker, case, plan["total_amount"])
        first_item = plan["schedule"][0]
        link = await payment_link(
            tracker, customer_id, loan, Decimal(first_item["amount"]), reference=f"PLAN-{plan['id']}"
        )
        dispatcher.utter_message(
            text=f"¡Listo! Registré su plan de pagos n.º {plan['id']}:\n{schedule}\n{link_text(link, loan)}"
        )
        return done + [goal_reached("plan_created")]


class ActionAskClaimDetails(Action):
    def name(self) -> str:
        return "action_ask_claim_details"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        dispatcher.utter_message(
            text="Envíeme una foto o PDF del comprobante, o escriba el número de operación, la fecha y el monto, "
            "y lo paso a un asesor para que lo revise."
        )
        return []


class ActionRegisterPaymentClaim(BackendAction):
    """A payment we cannot find: keep the receipt and what the customer said, and give it to a person."""

    def name(self) -> str:
        return "action_register_payment_claim"

    async def act(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        customer_id = verified_customer_id(tracker)
        attachments = [
            {"filename": a.get("filename") or "comprobante", "content_type": a.get("content_type") or "",
             "url": a.get("media_url") or a.get("media_id") or ""}
            for a in (tracker.latest_message.get("metadata") or {}).get("attachments") or []
        ][:5]
        said = tracker.get_slot("claim_details") or tracker.latest_message.get("text") or ""
        loan = collection_target(await CoreBankingClient().loans(customer_id)) if customer_id else None
        case = await open_case(
            tracker, "payment_claim", f"Dice que ya pagó; comprobante: «{said}»"[:500], customer_id,
            loan["id"] if loan else None, attachments=attachments,
        )
        received = "su comprobante" if attachments else "los datos de su pago"
        dispatcher.utter_message(
            text=f"Gracias, recibí {received}. Abrí el caso {case['code']} y un asesor lo revisará en un plazo de "
            f"24 horas hábiles; le responderá por este medio. {CONTACT}"
        )
        return [SlotSet("collections_goal", "none"), SlotSet("claim_details", None),
                *await escalated(dispatcher, tracker, case)]


class ActionEscalateLegal(BackendAction):
    """A lawyer, the consumer authority or a formal complaint: a person, with priority, without pushback."""

    def name(self) -> str:
        return "action_escalate_legal"

    async def act(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        said = tracker.latest_message.get("text") or ""
        case = await open_case(
            tracker, "legal", f"Menciona un reclamo formal o acción legal: «{said}»", verified_customer_id(tracker),
            priority="high",
        )
        dispatcher.utter_message(
            text=f"Entiendo. Derivé su caso con prioridad a un asesor (caso {case['code']}), que se comunicará "
            "con usted para atenderlo. Está en su derecho de presentar su reclamo; también puede hacerlo en "
            f"nuestro Libro de Reclamaciones. {CONTACT}"
        )
        return await escalated(dispatcher, tracker, case)


class ActionAnnouncePayment(BackendAction):
    """A payment arrived through a link sent in this conversation: say so, and what is left if verified."""

    def name(self) -> str:
        return "action_announce_payment"

    async def act(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        amount = entity_value(tracker, "paid_amount")
        loan_id = entity_value(tracker, "paid_loan_id")
        text = f"¡Recibimos su pago de {money(amount)}! Muchas gracias." if amount else "¡Recibimos su pago!"
        customer_id = verified_customer_id(tracker)
        if customer_id is not None and loan_id:
            loans = {str(loan["id"]): loan for loan in await CoreBankingClient().loans(customer_id)}
            loan = loans.get(loan_id)
            if loan is not None:
                if Decimal(loan["total_overdue"]) > 0:
                    text += f" Su saldo vencido ahora es {money(loan['total_overdue'], loan['currency'])}."
                elif loan["status"] == "active":
                    text += f" Su {loan['product_name']} quedó al día."
                else:
                    text += f" Su {loan['product_name']} quedó pagado por completo."
        dispatcher.utter_message(text=text)
        return []
