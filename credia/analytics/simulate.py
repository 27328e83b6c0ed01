"""Realistic Spanish traffic through the real bot, and the figures the metrics must then show.

``python -m credia.analytics.simulate --rasa-url URL --conversations N --seed S [--expected FILE]`` plays N
conversations through the REST channel (``POST /webhooks/rest/webhook``), a few at a time: complete credit
applications (pre-approved, and referred to an advisor), loan simulations, status look-ups, debt look-ups and
payment links after identity verification, requests for a person, disputes, small talk, and customers who stop
answering in the middle of a form. Each conversation has its own sender id. It writes what it expects the
metrics to count (sessions, handoffs by reason, journeys started and completed, abandonments) as JSON, and
lists as ``surprises`` any answer that shows the bot did not follow the script (the expectations are then off).

It is meant for the project's own stack: the demo customers of the core-banking seed, and for applications fresh
DNIs (``8xxxxxxx``, outside the seed's range) whose mock-bureau rating gives the wanted outcome. The seed fixes
the mix of conversations and their wording; ``--run-id`` (random by default) keeps sender ids and applicants
new on every run, so a second run against the same services gets the same answers.
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import requests

from credia.analytics.sessions import COLLECTIONS, CREDIT, EXPLICIT_REQUEST, JOURNEYS, SIMULATION, STATUS
from credia.core_banking.bureau import bureau_report
from credia.core_banking.models import DocumentType

REPLY_TIMEOUT = 60

# Demo customers of credia/core_banking/seed.py (README, "Demo data").
DEBTORS = (("45879632", "02/11/1979"), ("40236715", "21/07/1990"), ("41528367", "09/05/1988"))
LINK_PAYER = ("45879632", "02/11/1979")  # one customer only: every run reuses the same pending link
APPLICANT_WITH_APPLICATION = ("46210987", "17/09/1995")
UP_TO_DATE_CUSTOMER = ("10117410", "14/03/1985")
NAMES = ("ana.rojas", "luis.quispe", "carmen.flores", "jorge.huaman", "rosa.mamani", "pedro.diaz", "lucia.vega")


@dataclass(frozen=True)
class Turn:
    """A customer message, and a piece of the answer that shows the bot followed (checked, never waited for)."""

    text: str
    expect: Optional[str] = None


@dataclass(frozen=True)
class Script:
    """One conversation and what the metrics must count for it."""

    scenario: str
    turns: tuple[Turn, ...]
    journeys: tuple[str, ...] = ()
    completed: tuple[str, ...] = ()
    handoffs: tuple[str, ...] = ()

    @property
    def resolved(self) -> bool:
        return bool(self.completed) and not self.handoffs

    @property
    def abandoned(self) -> bool:
        return bool(self.journeys) and not self.completed and not self.handoffs


@dataclass
class Identities:
    """Fresh applicants for this run: a DNI whose mock-bureau rating is the one asked for, a birth date, contact."""

    rng: random.Random
    used: set[str] = field(default_factory=set)

    def applicant(self, rating: str) -> list[str]:
        while True:
            dni = str(self.rng.randint(80_000_000, 89_999_999))
            if dni not in self.used and bureau_report(DocumentType.DNI, dni).rating == rating:
                break
        self.used.add(dni)
        born = date(self.rng.randint(1972, 1998), self.rng.randint(1, 12), self.rng.randint(1, 28))
        phone = f"9{self.rng.randint(10, 99)} {self.rng.randint(100, 999)} {self.rng.randint(100, 999)}"
        return [dni, born.strftime("%d/%m/%Y"), f"{self.rng.choice(NAMES)}{dni[-3:]}@correo.pe", phone]


def _application(rng: random.Random, identities: Identities, rating: str, result: str) -> list[Turn]:
    """A clean request (Préstamo Personal S/ 3,000 in 12 months, income S/ 2,500, employee for two years)."""
    dni, born, email, phone = identities.applicant(rating)
    opening = rng.choice(
        ("quiero un préstamo", "buenas, quisiera un prestamo", "quisiera solicitar un crédito, por favor")
    )
    answers = [
        (opening, "Paso 1 de 11"), ("el personal", "Paso 2 de 11"), (rng.choice(("3 mil soles", "3000")), None),
        ("a 12 meses", None), ("si, autorizo", None), ("gano 2500 al mes", None),
        ("soy dependiente, en planilla", None), ("hace 2 años", None), (dni, None), (born, None), (email, None),
        (phone, result),
    ]
    return [Turn(text, expect) for text, expect in answers]


def credit_application(rng: random.Random, identities: Identities) -> Script:
    return Script("credit_application", tuple(_application(rng, identities, "Normal", "preaprobada")),
                  (CREDIT,), (CREDIT,))


def credit_referred(rng: random.Random, identities: Identities) -> Script:
    """Submitted (the goal) and then sent to an advisor (a handoff): completed but not resolved."""
    turns = _application(rng, identities, "CPP", "revisión de un asesor")
    return Script("credit_referred", tuple(turns), (CREDIT,), (CREDIT,), ("credit_referred",))


def simulation(rng: random.Random, identities: Identities) -> Script:
    text = rng.choice(("cuánto pagaría al mes si pido 5 mil a 12 meses?", "simulame un préstamo de 10000 a 24 meses"))
    return Script("simulation", (Turn(text, "simulación"),), (SIMULATION,), (SIMULATION,))


def application_status(rng: random.Random, identities: Identities) -> Script:
    dni, born = APPLICANT_WITH_APPLICATION
    opening = rng.choice(("quiero saber el estado de mi solicitud de préstamo", "cómo va mi solicitud"))
    turns = (Turn(opening), Turn(dni), Turn(born, "Este es el estado de su solicitud"))
    return Script("application_status", turns, (STATUS,), (STATUS,))


def _verified(opening: str, customer: tuple[str, str], result: str) -> tuple[Turn, ...]:
    dni, born = customer
    return Turn(opening, "DNI"), Turn(dni), Turn(born, result)


def debt(rng: random.Random, identities: Identities) -> Script:
    opening = rng.choice(("¿cuánto debo?", "hola buenas, quisiera saber cuánto debo", "cuál es mi deuda"))
    turns = _verified(opening, rng.choice(DEBTORS), "Este es el estado de sus créditos")
    return Script("debt", turns, (COLLECTIONS,), (COLLECTIONS,))


def payment_link(rng: random.Random, identities: Identities) -> Script:
    opening = rng.choice(("quiero pagar lo vencido", "quiero pagar mi cuota", "me mandas el link de pago"))
    return Script("payment_link", _verified(opening, LINK_PAYER, "/pay/"), (COLLECTIONS,), (COLLECTIONS,))


def dispute(rng: random.Random, identities: Identities) -> Script:
    opening = rng.choice(("no reconozco esta deuda", "ese crédito no es mío"))
    turns = _verified(opening, UP_TO_DATE_CUSTOMER, "Registré su reclamo")
    return Script("dispute", turns, (COLLECTIONS,), (), ("dispute",))


def ask_for_a_person(rng: random.Random, identities: Identities) -> Script:
    turns = (Turn(rng.choice(("hola", "hola que tal, buen día"))), Turn("quiero hablar con un asesor"))
    return Script("ask_for_a_person", turns, handoffs=(EXPLICIT_REQUEST,))


def small_talk(rng: random.Random, identities: Identities) -> Script:
    turns = (Turn("hola"), Turn(rng.choice(("qué puedes hacer?", "en qué me puede ayudar usted"))), Turn("gracias"))
    return Script("small_talk", turns)


def abandoned_application(rng: random.Random, identities: Identities) -> Script:
    """Stops answering at the term (step 3), after the product and the amount."""
    turns = (Turn("necesito un prestamo urgente", "Paso 1 de 11"), Turn("el personal"), Turn("5 mil", "Paso 3 de 11"))
    return Script("abandoned_application", turns, (CREDIT,))


def abandoned_verification(rng: random.Random, identities: Identities) -> Script:
    """Asks for the debt and never gives the DNI."""
    return Script("abandoned_verification", (Turn("cuánto tengo vencido", "DNI"),), (COLLECTIONS,))


SCENARIOS: dict[str, tuple[Callable[[random.Random, Identities], Script], int]] = {
    "credit_application": (credit_application, 3),
    "credit_referred": (credit_referred, 1),
    "simulation": (simulation, 2),
    "application_status": (application_status, 2),
    "debt": (debt, 3),
    "payment_link": (payment_link, 2),
    "dispute": (dispute, 1),
    "ask_for_a_person": (ask_for_a_person, 2),
    "small_talk": (small_talk, 1),
    "abandoned_application": (abandoned_application, 2),
    "abandoned_verification": (abandoned_verification, 1),
}


def plan(conversations: int, seed: int, run_id: str) -> list[tuple[str, Script]]:
    """The conversations, each with its sender id: every scenario once (as far as N allows), then by weight."""
    rng = random.Random(seed)
    names = list(SCENARIOS)
    rng.shuffle(names)
    weights = [weight for _, weight in SCENARIOS.values()]
    names += rng.choices(list(SCENARIOS), weights=weights, k=max(0, conversations - len(names)))
    identities = Identities(random.Random(f"{seed}:{run_id}"))
    return [
        (f"sim-{run_id}-{index:03d}-{name}", SCENARIOS[name][0](rng, identities))
        for index, name in enumerate(names[:conversations])
    ]


def expected_tallies(scripts: Sequence[Script]) -> dict[str, Any]:
    """What the metrics must count for these conversations, one session each."""
    reasons = Counter(reason for script in scripts for reason in script.handoffs)
    return {
        "sessions": len(scripts),
        "handed_off": sum(bool(script.handoffs) for script in scripts),
        "handoffs_by_reason": dict(sorted(reasons.items())),
        "resolved": sum(script.resolved for script in scripts),
        "started_a_journey": sum(bool(script.journeys) for script in scripts),
        "abandoned": sum(script.abandoned for script in scripts),
        "journeys": {
            journey: {
                "started": sum(journey in script.journeys for script in scripts),
                "completed": sum(journey in script.completed for script in scripts),
            }
            for journey in JOURNEYS
        },
    }


def play(rasa_url: str, sender: str, script: Script) -> list[dict[str, Any]]:
    """Say every turn and wait for each answer; return the surprises (answers off the script, errors)."""
    url = f"{rasa_url.rstrip('/')}/webhooks/rest/webhook"
    surprises = []
    with requests.Session() as http:
        for number, turn in enumerate(script.turns, start=1):
            try:
                response = http.post(url, json={"sender": sender, "message": turn.text}, timeout=REPLY_TIMEOUT)
                response.raise_for_status()
                answer = "\n".join(reply.get("text") or "" for reply in response.json())
            except (requests.RequestException, ValueError) as exc:
                return surprises + [{"sender": sender, "turn": number, "said": turn.text, "error": str(exc)}]
            if turn.expect and turn.expect not in answer:
                surprises.append(
                    {"sender": sender, "turn": number, "said": turn.text, "expected": turn.expect, "answer": answer}
                )
    return surprises


def simulate(rasa_url: str, conversations: int, seed: int, run_id: str, concurrency: int = 4) -> dict[str, Any]:
    """Play the conversations, a few at a time, and return the expectations with any surprises."""
    planned = plan(conversations, seed, run_id)
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(lambda item: play(rasa_url, *item), planned))
    return {
        "seed": seed,
        "run_id": run_id,
        "sender_prefix": f"sim-{run_id}-",
        "conversations": [
            {
                "sender": sender,
                "scenario": script.scenario,
                "journeys": list(script.journeys),
                "completed": list(script.completed),
                "handoffs": list(script.handoffs),
            }
            for sender, script in planned
        ],
        "expected": expected_tallies([script for _, script in planned]),
        "surprises": [surprise for found in results for surprise in found],
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m credia.analytics.simulate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rasa-url", required=True, help="the Rasa server, e.g. http://127.0.0.1:5005")
    parser.add_argument("--conversations", type=int, required=True, help="how many conversations to play")
    parser.add_argument("--seed", type=int, required=True, help="fixes the mix of conversations and their wording")
    parser.add_argument("--expected", type=Path, help="write the expectations here (default: standard output)")
    parser.add_argument("--concurrency", type=int, default=4, help="conversations played at the same time")
    parser.add_argument("--run-id", default=None, help="part of every sender id (default: random)")
    args = parser.parse_args(argv)
    if args.conversations < 1 or args.concurrency < 1:
        parser.error("--conversations and --concurrency must be at least 1")
    run_id = args.run_id or secrets.token_hex(4)
    result = simulate(args.rasa_url, args.conversations, args.seed, run_id, args.concurrency)
    text = json.dumps(result, ensure_ascii=False, indent=2)
    if args.expected is None:
        print(text)
    else:
        args.expected.parent.mkdir(parents=True, exist_ok=True)
        args.expected.write_text(text + "\n", encoding="utf-8")
    tallies = result["expected"]
    print(
        f"{tallies['sessions']} conversations (sender ids sim-{run_id}-...), {tallies['handed_off']} handed off, "
        f"{tallies['abandoned']} abandoned; {len(result['surprises'])} answers off the script.",
        file=sys.stderr,
    )
    for surprise in result["surprises"]:
        print(json.dumps(surprise, ensure_ascii=False), file=sys.stderr)
    return 1 if result["surprises"] else 0


if __name__ == "__main__":
    sys.exit(main())
