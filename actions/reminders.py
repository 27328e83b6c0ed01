"""Payment reminders said in the conversation, and the customer's "BAJA" that stops them at once.

The reminder scheduler (``credia.reminders``) decides who is reminded, when and where, within consent and each
country's contact rules; it enters the conversation as ``EXTERNAL_payment_reminder``, so a reply such as "quiero
pagar" or "no puedo, ¿me dan más plazo?" continues into the collections journey. On WhatsApp outside the
24-hour window the connector sends the approved template with this text.
"""

from __future__ import annotations

from datetime import date

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.base import BackendAction
from actions.verification import verified_customer_id
from credia.backends.core_banking import CoreBankingClient
from credia.money import format_day, format_money

NEXT_STEPS = [
    {"title": "Pagar ahora", "payload": "/pay_now"},
    {"title": "Necesito más plazo", "payload": "/request_payment_plan"},
]
OPT_OUT_HINT = "Si no desea recibir estos recordatorios por este medio, responda BAJA."
# The consent channel of each conversation channel (a Twilio sender "whatsapp:+51…" is WhatsApp).
CONSENT_CHANNEL = {"whatsapp": "whatsapp", "twilio_voice": "voice", "socketio": "web", "rest": "web"}


def reminder_text(kind: str, amount: str, due: date) -> str:
    money, day = format_money(amount), format_day(due)
    return {
        "before_due": f"Hola, le saluda Credia. Le recordamos que su cuota de {money} vence el {day}.",
        "due_today": f"Hola, le saluda Credia. Hoy, {day}, vence su cuota de {money}.",
        "overdue": f"Hola, le saluda Credia. Su cuota de {money} venció el {day}; estamos para ayudarle a "
        "ponerse al día.",
        "promise_tomorrow": f"Hola, le saluda Credia. Le recordamos su compromiso de pagar {money} el {day}.",
        "promise_broken": f"Hola, le saluda Credia. No registramos el pago de {money} que acordó para el {day}. "
        "Si tuvo un inconveniente, podemos buscar juntos otra fecha o un plan.",
        "plan_installment": f"Hola, le saluda Credia. La cuota de {money} de su plan de pagos vence el {day}.",
    }.get(kind, f"Hola, le saluda Credia. Tiene un pago de {money} con fecha {day}.")


class ActionPaymentReminder(Action):
    def name(self) -> str:
        return "action_payment_reminder"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        def entity(name: str) -> str:
            return next(tracker.get_latest_entity_values(name), "") or ""

        try:
            due = date.fromisoformat(entity("due_date"))
            text = reminder_text(entity("reminder_kind"), entity("due_amount") or "0", due)
        except (ValueError, ArithmeticError):
            text = "Hola, le saluda Credia. Tiene un pago pendiente con nosotros."
        dispatcher.utter_message(
            text=f"{text} Puede pagar o pedir más plazo desde aquí. {OPT_OUT_HINT}", buttons=NEXT_STEPS
        )
        return []


def consent_channel(tracker: Tracker) -> str:
    channel = tracker.get_latest_input_channel() or "rest"
    if channel == "twilio_messaging":
        return "whatsapp" if tracker.sender_id.startswith("whatsapp:") else "sms"
    return CONSENT_CHANNEL.get(channel, "web")


class ActionOptOut(BackendAction):
    """Stop reminders on this channel at once, and say so; the change is stored with its time and source."""

    def name(self) -> str:
        return "action_opt_out"

    async def act(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        channel = consent_channel(tracker)
        source = f"chat_{channel}_baja"
        client = CoreBankingClient()
        if channel == "web":
            # A web chat session id is no address: only a verified customer can be told apart here.
            customer_id = verified_customer_id(tracker)
            if customer_id is None:
                dispatcher.utter_message(
                    text="Para dejar de recibir recordatorios, responda BAJA al mensaje que le llegó por WhatsApp o "
                    "SMS, o escriba «mi deuda» para confirmar su identidad y lo hago desde aquí."
                )
                return []
            await client.set_consent(customer_id, channel, False, source)
        else:
            await client.opt_out(channel, tracker.sender_id, source)
        dispatcher.utter_message(
            text="Listo, no le enviaremos más recordatorios por este medio. Si cambia de opinión o necesita algo, "
            "escríbanos cuando quiera."
        )
        return []
