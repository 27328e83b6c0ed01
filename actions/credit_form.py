"""The credit-application form: one short question per step, and every answer validated at once.

The questions say which step the customer is on ("Paso 3 de 11"), offer buttons where the choices are few, and
each invalid answer gets a message that says what is wrong; from the second failure on the same field the
message adds an example and the offer of a person.
"""

from __future__ import annotations

import logging
import re
from abc import abstractmethod
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Optional

from email_validator import EmailNotValidError, validate_email
from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.base import BackendAction
from credia.backends import BackendError, NotFound
from credia.backends.core_banking import CoreBankingClient
from credia.credit.evaluation import age_at_maturity, age_on
from credia.identity import DocumentType, InvalidDocument, normalise_document
from credia.money import format_money

logger = logging.getLogger(__name__)

PRODUCT_CODE = re.compile(r"[A-Z0-9_]{1,20}")

CREDIT_FORM = "credit_application_form"
SIMULATION_FORM = "simulation_form"
STATUS_FORM = "application_status_form"
CREDIT_STEPS = (
    "product", "amount", "term_months", "personal_data_consent", "monthly_income", "employment_type",
    "employment_tenure_months", "document_number", "date_of_birth", "email", "phone",
)
# Slots asked before consent: nothing personal. After a "no" to consent the form stops there.
BEFORE_CONSENT = CREDIT_STEPS[: CREDIT_STEPS.index("personal_data_consent") + 1]
PERSONAL_SLOTS = frozenset(CREDIT_STEPS[len(BEFORE_CONSENT):])
# Intents that rules answer in the middle of a form (then the form asks again); any other message that fills
# nothing is a failed answer to the pending question.
SIDE_INTENTS = frozenset(
    {"ask_requirements", "ask_rates", "ask_products", "bot_challenge", "ask_human", "out_of_scope",
     "nlu_fallback", "stop"}
)
EMPLOYMENT_TYPES = {
    "employee": "Dependiente (en planilla)",
    "self_employed": "Independiente",
    "business_owner": "Negocio propio",
    "retired": "Jubilado o pensionista",
}
MIN_INCOME, MAX_INCOME = Decimal("100"), Decimal("500000")
MAX_TENURE_MONTHS = 720
ADULT_AGE = 18
OFFER_PERSON = "Si prefiere, escriba «asesor» y le indico cómo hablar con una persona."


def first(value: Any) -> Any:
    """A slot filled by two entities of one message holds a list; the first one is what the customer meant."""
    return value[0] if isinstance(value, list) and value else value


async def product_info(code: Optional[str]) -> Optional[dict[str, Any]]:
    """The product as core banking describes it (ranges, rate, age limits), or None when unknown."""
    # The code can come from a button payload a customer typed by hand: only a well-formed code reaches the URL.
    if not code or not PRODUCT_CODE.fullmatch(str(code)):
        return None
    try:
        return await CoreBankingClient().product(code)
    except NotFound:
        return None


def step_prefix(tracker: Tracker, slot: str) -> str:
    if tracker.active_loop.get("name") != CREDIT_FORM:
        return ""
    return f"Paso {CREDIT_STEPS.index(slot) + 1} de {len(CREDIT_STEPS)} · "


# --- questions -----------------------------------------------------------------------------------------------


def _button(title: str, intent: str, **entities: str) -> dict[str, str]:
    if not entities:
        return {"title": title, "payload": f"/{intent}"}
    pairs = ", ".join(f'"{k}": "{v}"' for k, v in entities.items())
    return {"title": title, "payload": f"/{intent}{{{pairs}}}"}


async def ask_product(tracker: Tracker) -> tuple[str, list[dict[str, str]]]:
    products = await CoreBankingClient().products()
    buttons = [_button(p["name"], "inform", product=p["code"]) for p in products]
    return "¿Qué crédito le interesa?", buttons


async def ask_amount(tracker: Tracker) -> tuple[str, list[dict[str, str]]]:
    product = await product_info(tracker.get_slot("product"))
    if product is None:
        return "¿Cuánto dinero necesita?", []
    low, high = format_money(product["min_amount"]), format_money(product["max_amount"])
    return f"¿Cuánto dinero necesita? Para {product['name']} prestamos de {low} a {high}.", []


async def ask_term(tracker: Tracker) -> tuple[str, list[dict[str, str]]]:
    product = await product_info(tracker.get_slot("product"))
    terms = [12, 24, 36]
    question = "¿En cuántos meses le gustaría pagarlo?"
    if product is not None:
        terms = [t for t in terms if product["min_term_months"] <= t <= product["max_term_months"]]
        question += f" Puede ser de {product['min_term_months']} a {product['max_term_months']} meses."
    return question, [_button(f"{t} meses", "inform", term_months=str(t)) for t in terms]


async def ask_consent(tracker: Tracker) -> tuple[str, list[dict[str, str]]]:
    return (
        "Ahora necesito algunos datos personales. ¿Nos autoriza a usarlos solo para evaluar su solicitud, "
        "según la Ley N.° 29733 de Protección de Datos Personales?",
        [_button("Sí, autorizo", "affirm"), _button("No autorizo", "deny")],
    )


async def ask_income(tracker: Tracker) -> tuple[str, list[dict[str, str]]]:
    return "¿Cuál es su ingreso mensual neto aproximado? Por ejemplo: 2500.", []


async def ask_employment(tracker: Tracker) -> tuple[str, list[dict[str, str]]]:
    buttons = [_button(title, "inform", employment_type=code) for code, title in EMPLOYMENT_TYPES.items()]
    return "¿Cómo obtiene sus ingresos?", buttons


async def ask_tenure(tracker: Tracker) -> tuple[str, list[dict[str, str]]]:
    return "¿Cuánto tiempo lleva en esa actividad? Por ejemplo: «2 años» u «8 meses».", []


async def ask_document(tracker: Tracker) -> tuple[str, list[dict[str, str]]]:
    if tracker.active_loop.get("name") == STATUS_FORM:
        return "Para consultar su solicitud necesito identificarle. ¿Cuál es su número de DNI?", []
    return "¿Cuál es su número de DNI?", []


async def ask_birth_date(tracker: Tracker) -> tuple[str, list[dict[str, str]]]:
    return "¿Cuál es su fecha de nacimiento? Por ejemplo: 15/03/1990.", []


async def ask_email(tracker: Tracker) -> tuple[str, list[dict[str, str]]]:
    return "¿A qué correo electrónico le enviamos la información?", []


async def ask_phone(tracker: Tracker) -> tuple[str, list[dict[str, str]]]:
    return "Por último, ¿a qué número de celular le podemos contactar?", []


async def ask_application_code(tracker: Tracker) -> tuple[str, list[dict[str, str]]]:
    return "¿Cuál es el código de su solicitud? Empieza con SOL-, por ejemplo SOL-7K3M9Q.", []


QUESTIONS: dict[str, Callable[[Tracker], Any]] = {
    "product": ask_product,
    "amount": ask_amount,
    "term_months": ask_term,
    "personal_data_consent": ask_consent,
    "monthly_income": ask_income,
    "employment_type": ask_employment,
    "employment_tenure_months": ask_tenure,
    "document_number": ask_document,
    "date_of_birth": ask_birth_date,
    "email": ask_email,
    "phone": ask_phone,
    "application_code": ask_application_code,
}


class AskSlotAction(BackendAction):
    """``action_ask_<slot>``: the question for one slot, with the step and buttons."""

    @property
    @abstractmethod
    def slot(self) -> str:
        """The slot this action asks for; each generated subclass sets it."""

    def name(self) -> str:
        return f"action_ask_{self.slot}"

    async def act(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        question, buttons = await QUESTIONS[self.slot](tracker)
        dispatcher.utter_message(text=step_prefix(tracker, self.slot) + question, buttons=buttons)
        return []


ASK_ACTIONS = [
    type(f"ActionAsk_{slot}", (AskSlotAction,), {"slot": slot, "__module__": __name__}) for slot in QUESTIONS
]


# --- validation ----------------------------------------------------------------------------------------------


class Invalid(ValueError):
    """An answer that cannot be used: ``message`` says why, ``example`` how to answer instead."""

    def __init__(self, message: str, example: str) -> None:
        super().__init__(message)
        self.message = message
        self.example = example


def reject(slot: str, error: Invalid, dispatcher: CollectingDispatcher, tracker: Tracker) -> dict[str, Any]:
    """Tell the customer what is wrong; from the second failure on the field, add an example and a person."""
    failures = dict(tracker.get_slot("form_failures") or {})
    failures[slot] = failures.get(slot, 0) + 1
    text = error.message
    if failures[slot] >= 2:
        text = f"{error.message} {error.example} {OFFER_PERSON}"
    dispatcher.utter_message(text=text)
    return {slot: None, "form_failures": failures}


def check_amount(value: Any, product: Optional[dict[str, Any]]) -> Decimal:
    try:
        amount = Decimal(str(first(value)))
    except (InvalidOperation, ValueError):
        raise Invalid("No logré entender el monto.", "Escríbalo en números, por ejemplo «5000» o «5 mil».")
    if product is not None:
        low, high = Decimal(product["min_amount"]), Decimal(product["max_amount"])
        if not low <= amount <= high:
            raise Invalid(
                f"Para {product['name']} el monto debe estar entre {format_money(low)} y {format_money(high)}.",
                f"Por ejemplo: «{int(low * 5)}».",
            )
    elif amount <= 0:
        raise Invalid("El monto debe ser mayor que cero.", "Por ejemplo: «5000».")
    return amount


def check_term(value: Any, product: Optional[dict[str, Any]]) -> int:
    try:
        months = Decimal(str(first(value)))
    except (InvalidOperation, ValueError):
        raise Invalid("No logré entender el plazo.", "Indíquelo en meses, por ejemplo «18 meses» o «2 años».")
    if months != months.to_integral_value() or months <= 0:
        raise Invalid("El plazo debe ser un número entero de meses.", "Por ejemplo: «24 meses».")
    low, high = (product["min_term_months"], product["max_term_months"]) if product else (1, 120)
    if not low <= months <= high:
        name = product["name"] if product else "este crédito"
        raise Invalid(f"Para {name} el plazo va de {low} a {high} meses.", f"Por ejemplo: «{min(high, 24)} meses».")
    return int(months)


def check_income(value: Any) -> Decimal:
    try:
        income = Decimal(str(first(value)))
    except (InvalidOperation, ValueError):
        raise Invalid("No logré entender su ingreso.", "Escríbalo en números, por ejemplo «2500».")
    if not MIN_INCOME <= income <= MAX_INCOME:
        raise Invalid(
            "Ese ingreso mensual no parece correcto; indíquelo en soles, sin decimales si prefiere.",
            "Por ejemplo: «2500».",
        )
    return income


def check_tenure(value: Any) -> int:
    try:
        months = int(Decimal(str(first(value))))
    except (InvalidOperation, ValueError):
        months = -1
    if not 0 <= months <= MAX_TENURE_MONTHS:
        raise Invalid("No logré entender cuánto tiempo lleva en esa actividad.", "Por ejemplo: «2 años» u «8 meses».")
    return months


def check_document(value: Any) -> str:
    try:
        return normalise_document(DocumentType.DNI, str(first(value)), "PE")
    except InvalidDocument:
        raise Invalid(
            "Ese número de DNI no es válido: debe tener 8 dígitos y, si lo incluye, el dígito de verificación "
            "de su documento.",
            "Por ejemplo: «45879632».",
        )


def check_birth_date(value: Any, product: Optional[dict[str, Any]], term: Optional[int], today: date) -> date:
    try:
        born = date.fromisoformat(str(first(value)))
    except ValueError:
        raise Invalid("No logré entender la fecha.", "Escríbala como día/mes/año, por ejemplo «15/03/1990».")
    if born >= today or age_on(born, today) > 110:
        raise Invalid("Esa fecha de nacimiento no parece correcta.", "Por ejemplo: «15/03/1990».")
    minimum = product["min_age"] if product else ADULT_AGE
    if age_on(born, today) < minimum:
        raise Invalid(f"Para solicitar este crédito debe tener al menos {minimum} años.", "Por ejemplo: «15/03/1990».")
    if product and term:
        maximum = product["max_age_at_maturity"]
        if age_at_maturity(born, today, term) > maximum:
            raise Invalid(
                f"Para {product['name']} la edad al terminar de pagar no puede pasar de {maximum} años; "
                "un plazo más corto podría funcionar (escriba, por ejemplo, «mejor a 12 meses»).",
                "Si la fecha está mal, escríbala como «15/03/1990».",
            )
    return born


def check_email(value: Any) -> str:
    try:
        return validate_email(str(first(value)), check_deliverability=False).normalized
    except EmailNotValidError:
        raise Invalid("Ese correo electrónico no parece válido.", "Por ejemplo: «nombre@correo.com».")


def check_phone(value: Any) -> str:
    phone = str(first(value))
    if not (phone.startswith("+519") and len(phone) == 12 and phone[1:].isdigit()):
        raise Invalid("Necesito un número de celular de 9 dígitos que empiece con 9.", "Por ejemplo: «987654321».")
    return phone


class CreditFormValidation(FormValidationAction):
    """Shared validation of the credit-journey forms; each form below names itself."""

    @abstractmethod
    def name(self) -> str:
        """``validate_<form>``."""

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        try:
            events = await super().run(dispatcher, tracker, domain)
        except BackendError as exc:
            # Product ranges come from core banking: without it the answer cannot be checked now; the form
            # asks the same question again instead of failing.
            logger.warning("%s could not validate: %s", self.name(), exc)
            dispatcher.utter_message(response="utter_backend_unavailable")
            requested = tracker.get_slot("requested_slot")
            return [SlotSet(requested, None)] if requested else []
        return events + self._unanswered(dispatcher, tracker, events)

    def _unanswered(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, events: list[EventType]
    ) -> list[EventType]:
        """An answer that filled nothing counts as a failed answer to the pending question.

        Without this the form would be rejected and the customer would get a generic fallback instead of the
        question again with help. Side questions are left alone: rules answer them and resume the form.
        """
        requested = tracker.get_slot("requested_slot")
        intent = (tracker.latest_message.get("intent") or {}).get("name")
        filled = any(e.get("event") == "slot" and e.get("name") != "requested_slot" for e in events)
        if not requested or filled or intent in SIDE_INTENTS or tracker.active_loop.get("name") != self.form_name():
            return []
        error = UNREADABLE.get(requested, Invalid("No logré entender su respuesta.", ""))
        return [SlotSet(key, value) for key, value in reject(requested, error, dispatcher, tracker).items()]

    async def validate_amount(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        try:
            amount = check_amount(value, await product_info(tracker.get_slot("product")))
        except Invalid as error:
            return reject("amount", error, dispatcher, tracker)
        return {"amount": str(amount)}

    async def validate_term_months(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        try:
            months = check_term(value, await product_info(tracker.get_slot("product")))
        except Invalid as error:
            return reject("term_months", error, dispatcher, tracker)
        return {"term_months": str(months)}

    async def validate_document_number(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        try:
            return {"document_number": check_document(value)}
        except Invalid as error:
            return reject("document_number", error, dispatcher, tracker)


UNREADABLE = {
    "product": Invalid("Elija uno de los créditos de la lista, por favor.", "Por ejemplo: «préstamo personal»."),
    "amount": Invalid("No logré entender el monto.", "Escríbalo en números, por ejemplo «5000» o «5 mil»."),
    "term_months": Invalid("No logré entender el plazo.", "Por ejemplo: «18 meses» o «2 años»."),
    "personal_data_consent": Invalid("Necesito un sí o un no.", "Responda «sí, autorizo» o «no autorizo»."),
    "monthly_income": Invalid("No logré entender su ingreso.", "Escríbalo en números, por ejemplo «2500»."),
    "employment_type": Invalid(
        "Elija una de las opciones, por favor.", "Por ejemplo: «dependiente», «independiente» o «jubilado»."
    ),
    "employment_tenure_months": Invalid(
        "No logré entender cuánto tiempo lleva en esa actividad.", "Por ejemplo: «2 años» u «8 meses»."
    ),
    "document_number": Invalid("No logré leer su número de DNI.", "Escriba sus 8 dígitos, por ejemplo «45879632»."),
    "date_of_birth": Invalid("No logré entender la fecha.", "Escríbala como día/mes/año, por ejemplo «15/03/1990»."),
    "email": Invalid("No logré leer un correo electrónico.", "Por ejemplo: «nombre@correo.com»."),
    "phone": Invalid("No logré leer un número de celular.", "Por ejemplo: «987654321»."),
    "application_code": Invalid("No logré leer el código.", "Tiene la forma SOL-7K3M9Q."),
}


CHANGE_TEXT = {
    "product": lambda value: "el producto",
    "amount": lambda value: f"el monto a {format_money(value)}",
    "term_months": lambda value: f"el plazo a {value} meses",
    "monthly_income": lambda value: f"su ingreso a {format_money(value)}",
}


def previous_value(tracker: Tracker, slot: str) -> Any:
    """The slot's value before the customer's latest message."""
    events = tracker.events
    last_user = max((i for i, e in enumerate(events) if e.get("event") == "user"), default=len(events))
    return next(
        (e.get("value") for e in reversed(events[:last_user]) if e.get("event") == "slot" and e.get("name") == slot),
        None,
    )


def confirm_changes(dispatcher: CollectingDispatcher, tracker: Tracker, events: list[EventType]) -> None:
    """Say so when an answer given earlier was changed ("mejor a 24 meses"), so the customer knows it took."""
    requested = tracker.get_slot("requested_slot")
    for event in events:
        slot, value = event.get("name"), event.get("value")
        if event.get("event") != "slot" or slot not in CHANGE_TEXT or slot == requested or value is None:
            continue
        before = previous_value(tracker, slot)
        if before is not None and str(before) != str(value):
            dispatcher.utter_message(text=f"Listo, cambié {CHANGE_TEXT[slot](value)}.")


class ValidateCreditApplicationForm(CreditFormValidation):
    def name(self) -> str:
        return f"validate_{CREDIT_FORM}"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        """Personal data given before consent is not kept (Ley 29733); it is asked for again after consent."""
        events = await super().run(dispatcher, tracker, domain)
        consent = next(
            (e["value"] for e in events if e.get("event") == "slot" and e.get("name") == "personal_data_consent"),
            tracker.get_slot("personal_data_consent"),
        )
        if consent is True:
            confirm_changes(dispatcher, tracker, events)
            return events
        kept = [e for e in events if not (e.get("event") == "slot" and e.get("name") in PERSONAL_SLOTS)]
        given = [slot for slot in PERSONAL_SLOTS if tracker.get_slot(slot) is not None]
        if given and tracker.get_slot("requested_slot") == "personal_data_consent":
            dispatcher.utter_message(text="Antes de registrar sus datos personales necesito su autorización.")
        return kept + [SlotSet(slot, None) for slot in given]

    async def required_slots(
        self, domain_slots: list[str], dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[str]:
        if tracker.get_slot("personal_data_consent") is False:
            return list(BEFORE_CONSENT)
        return domain_slots

    async def validate_product(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        product = await product_info(str(first(value)))
        if product is None:
            return reject("product", UNREADABLE["product"], dispatcher, tracker)
        events: dict[str, Any] = {"product": product["code"]}
        # Amount and term given before the product are re-checked against its ranges.
        for slot, check in (("amount", check_amount), ("term_months", check_term)):
            if tracker.get_slot(slot) is not None:
                try:
                    check(tracker.get_slot(slot), product)
                except Invalid as error:
                    events.update(reject(slot, error, dispatcher, tracker))
        return events

    async def validate_monthly_income(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        try:
            return {"monthly_income": str(check_income(value))}
        except Invalid as error:
            return reject("monthly_income", error, dispatcher, tracker)

    async def validate_employment_type(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        if first(value) not in EMPLOYMENT_TYPES:
            return reject("employment_type", UNREADABLE["employment_type"], dispatcher, tracker)
        return {"employment_type": first(value)}

    async def validate_employment_tenure_months(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        try:
            return {"employment_tenure_months": str(check_tenure(value))}
        except Invalid as error:
            return reject("employment_tenure_months", error, dispatcher, tracker)

    async def validate_date_of_birth(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        product = await product_info(tracker.get_slot("product"))
        term = tracker.get_slot("term_months")
        try:
            born = check_birth_date(value, product, int(term) if term else None, date.today())
        except Invalid as error:
            return reject("date_of_birth", error, dispatcher, tracker)
        return {"date_of_birth": born.isoformat()}

    async def validate_email(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        try:
            return {"email": check_email(value)}
        except Invalid as error:
            return reject("email", error, dispatcher, tracker)

    async def validate_phone(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        try:
            return {"phone": check_phone(value)}
        except Invalid as error:
            return reject("phone", error, dispatcher, tracker)


class ValidateSimulationForm(CreditFormValidation):
    def name(self) -> str:
        return f"validate_{SIMULATION_FORM}"


class ValidateApplicationStatusForm(CreditFormValidation):
    """Identify the customer: a code plus the document, or the document plus the date of birth."""

    def name(self) -> str:
        return f"validate_{STATUS_FORM}"

    async def required_slots(
        self, domain_slots: list[str], dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[str]:
        if tracker.get_slot("application_code"):
            return ["application_code", "document_number"]
        return domain_slots

    async def validate_date_of_birth(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        try:
            return {"date_of_birth": check_birth_date(value, None, None, date.today()).isoformat()}
        except Invalid as error:
            return reject("date_of_birth", error, dispatcher, tracker)


class ActionCreditIntro(Action):
    """Say what the application takes, or that we resume where the customer left off."""

    def name(self) -> str:
        return "action_credit_intro"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        answered = [slot for slot in CREDIT_STEPS if tracker.get_slot(slot) is not None]
        resumed = any(e.get("event") == "active_loop" and e.get("name") == CREDIT_FORM for e in tracker.events)
        if resumed and answered and tracker.get_slot("personal_data_consent") is not False:
            dispatcher.utter_message(
                text=f"Retomemos su solicitud: ya tengo {len(answered)} de {len(CREDIT_STEPS)} datos."
            )
        else:
            dispatcher.utter_message(
                text=f"¡Con gusto! Son {len(CREDIT_STEPS)} preguntas cortas y al final le doy una respuesta "
                "inmediata. Puede escribir «cancelar» cuando quiera y retomarla después."
            )
        return [SlotSet("personal_data_consent", None)] if tracker.get_slot("personal_data_consent") is False else []
