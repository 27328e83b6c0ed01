"""Metrics from conversations written into a real SQL tracker store by Rasa's own ``SQLTrackerStore``.

The store below holds ten customer sessions (and two sessions nobody wrote in) whose figures are computed by
hand in ``test_every_metric_matches_the_hand_computed_values``. Times are in Lima (UTC-5).
"""

from __future__ import annotations

import asyncio
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Optional
from zoneinfo import ZoneInfo

import pytest
from rasa.core.tracker_store import SQLTrackerStore
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import (
    ActionExecuted,
    ActiveLoop,
    Event,
    Restarted,
    SessionStarted,
    SlotSet,
    UserUtteranceReverted,
    UserUttered,
)
from rasa.shared.core.slots import AnySlot
from rasa.shared.core.trackers import DialogueStateTracker

from credia.analytics.metrics import Filters, build_report, percentile
from credia.analytics.nlu_review import render_nlu_yaml, review_groups
from credia.analytics.sessions import read_sessions, split_sessions, tracker_store_url
from credia.analytics.texts import fold, mask_personal_data

LIMA = ZoneInfo("America/Lima")


class Conversation:
    """One conversation's events as Rasa logs them, on a clock the test sets."""

    def __init__(self, sender: str, channel: str = "rest") -> None:
        self.sender = sender
        self.channel = channel
        self.events: list[Event] = []
        self.now = 0.0

    def at(self, day: int, hour: int, minute: int, second: int = 0) -> "Conversation":
        self.now = datetime(2024, 5, day, hour, minute, second, tzinfo=LIMA).timestamp()
        return self

    def after(self, seconds: float) -> "Conversation":
        self.now += seconds
        return self

    def _add(self, event: Event) -> "Conversation":
        event.timestamp = self.now
        self.events.append(event)
        return self

    def session(self) -> "Conversation":
        for event in (ActionExecuted("action_session_start"), SessionStarted(), ActionExecuted("action_listen")):
            self._add(event)
        return self

    def user(
        self, text: str, intent: str, confidence: float = 0.95, ranking: Optional[list[tuple[str, float]]] = None
    ) -> "Conversation":
        ranking = ranking or [(intent, confidence)]
        parse = {
            "intent": {"name": intent, "confidence": confidence},
            "intent_ranking": [{"name": name, "confidence": value} for name, value in ranking],
            "entities": [],
            "text": text,
        }
        return self._add(UserUttered(text, parse["intent"], [], parse, input_channel=self.channel))

    def external(self, intent: str, **entities: str) -> "Conversation":
        listed = [{"entity": name, "value": value} for name, value in entities.items()]
        return self._add(UserUttered.create_external(intent, listed, self.channel))

    def action(self, name: str) -> "Conversation":
        return self._add(ActionExecuted(name))

    def slot(self, name: str, value: Any) -> "Conversation":
        return self._add(SlotSet(name, value))

    def form(self, name: Optional[str]) -> "Conversation":
        return self._add(ActiveLoop(name))

    def ask(self, field: str) -> "Conversation":
        return self.slot("requested_slot", field)

    def goal(self, goal: str) -> "Conversation":
        return self.slot("goal_reached", goal)

    def restart(self) -> "Conversation":
        return self.action("action_restart")._add(Restarted())


def store(path: Path, conversations: list[Conversation]) -> str:
    """Save the conversations with Rasa's SQLTrackerStore, as the Rasa server does; return the store's URL."""
    tracker_store = SQLTrackerStore(Domain.empty(), dialect="sqlite", db=str(path))

    async def save_all() -> None:
        for conversation in conversations:
            slots = {event.key for event in conversation.events if isinstance(event, SlotSet)}
            tracker = DialogueStateTracker(conversation.sender, [AnySlot(name, mappings=[]) for name in slots])
            for event in conversation.events:
                tracker.update(event)
            await tracker_store.save(tracker)

    asyncio.run(save_all())
    tracker_store.engine.dispose()
    return f"sqlite:///{path}"


def credit_form_steps(conversation: Conversation, answers: list[tuple[str, str, str, float]]) -> Conversation:
    """Ask each (field, answer, intent, confidence) in turn, ten seconds apart."""
    conversation.form("credit_application_form")
    for field, text, intent, confidence in answers:
        conversation.ask(field).after(10).user(text, intent, confidence).action("credit_application_form")
    return conversation


def sample_conversations() -> list[Conversation]:
    c1 = Conversation("c1").at(10, 10, 0).session().after(5).user("hola", "greet", 0.98).action("utter_greet")
    c1.after(5).user("quiero un préstamo", "request_credit", 0.97).action("credit_application_form")
    credit_form_steps(c1, [
        ("product", "el personal", "inform", 0.9),
        ("amount", "8 mil", "inform", 0.55),
        ("term_months", "18 meses", "inform", 0.8),
    ])
    c1.form(None).at(10, 10, 2, 10).action("action_submit_application")
    c1.slot("application_outcome", "pre_approved").goal("application_submitted")

    # The application goes to an advisor: a goal, then a handoff.
    c2 = Conversation("c2").at(10, 11, 0).session().after(5).user("necesito un crédito", "request_credit", 0.9)
    credit_form_steps(c2, [("product", "personal", "inform", 0.9)]).form(None)
    c2.at(10, 11, 5, 5).action("action_submit_application")
    c2.slot("application_outcome", "referred").goal("application_submitted").slot("handoff_reason", "credit_referred")

    # Abandoned in the form after a message nobody understood.
    c3 = Conversation("c3", "socketio").at(10, 12, 0).session()
    c3.after(5).user("quiero un préstamo", "request_credit", 0.95)
    credit_form_steps(c3, [("product", "personal", "inform", 0.92)])
    c3.ask("amount").after(10).user(
        "mmm no sé", "nlu_fallback", 0.45, ranking=[("nlu_fallback", 0.45), ("inform", 0.30), ("deny", 0.2)]
    )
    c3.action("utter_please_rephrase").action("credit_application_form").ask("amount")

    # Starts before midnight, reaches its goals after; the same conversation gets payments the next days.
    c4 = Conversation("c4").at(10, 23, 58).session().after(30).user("cuánto debo", "check_debt", 0.96)
    c4.action("action_collections_start").action("verification_form").form("verification_form").ask("verify_document")
    c4.at(10, 23, 59, 0).user("45879632", "inform", 0.9).action("verification_form").ask("verify_answer")
    c4.at(10, 23, 59, 30).user("02/11/1979", "inform", 0.9).action("verification_form")
    c4.slot("identity_verified", True).slot("requested_slot", None).form(None)
    c4.at(11, 0, 1, 0).action("action_collections_goal").goal("debt_shown")
    c4.at(11, 0, 2, 0).user("le pago el viernes", "promise_to_pay", 0.9).form("promise_form").ask("promise_amount")
    c4.at(11, 0, 2, 30).user("200", "inform", 0.9).form(None).action("action_register_promise").goal("promise_created")
    c4.at(11, 0, 3, 0).user("quiero pagar", "pay_now", 0.95).action("action_collections_goal").goal("payment_link")
    c4.at(11, 0, 5, 0).external("EXTERNAL_payment_received", payment_id="pay_1", paid_amount="80.00")
    c4.action("action_announce_payment")
    # Two days later a fresh session only announces payments: the first one again (a repeated delivery).
    c4.at(12, 8, 0).session().after(1).external("EXTERNAL_payment_received", payment_id="pay_1", paid_amount="80.00")
    c4.action("action_announce_payment")
    c4.after(60).external("EXTERNAL_payment_received", payment_id="pay_2", paid_amount="120.50")
    c4.action("action_announce_payment")

    c5 = Conversation("c5", "whatsapp").at(11, 9, 0).session()
    c5.after(10).user("no reconozco esta deuda", "dispute_debt", 0.58).form("verification_form").ask("verify_document")
    c5.after(10).user("10117410", "inform", 0.9).ask("verify_answer")
    c5.after(10).user("14/03/1985", "inform", 0.9).slot("identity_verified", True).form(None)
    c5.action("action_collections_goal").slot("case_code", "CAS-ABC234").slot("handoff_reason", "dispute")

    # Asks for a person, restarts, and the new session simulates a loan.
    c6 = Conversation("c6").at(11, 10, 0).session().after(5).user("hola", "greet", 0.99)
    c6.after(5).user("quiero hablar con un asesor", "ask_human", 0.97).action("utter_human_contact")
    c6.after(10).user("/restart", "restart", 1.0).restart().action("action_listen")
    c6.at(11, 10, 10).session().after(5).user("cuánto pagaría si pido 5 mil a 12 meses", "simulate_loan", 0.88)
    c6.action("simulation_form").form("simulation_form").form(None).after(1).action("action_simulate_loan")

    c8 = Conversation("c8", "socketio").at(12, 9, 0).session().after(5).user("hola", "greet", 0.99)
    c8.after(5).user("qué puedes hacer", "ask_capabilities", 0.9).after(5).user("/affirm", "affirm", 1.0)
    c8.after(5).user("MMM  no se", "out_of_scope", 0.5, ranking=[("out_of_scope", 0.5), ("deny", 0.2)])
    c8.action("action_default_fallback")._add(UserUtteranceReverted())

    # A web chat opened (session_request) and nothing written.
    c9 = Conversation("c9", "socketio").at(12, 9, 30).session()

    c10 = Conversation("c10").at(12, 10, 0).session().after(10).user("cómo va mi solicitud", "check_application_status")
    c10.form("application_status_form").ask("document_number").after(10).user("46210987", "inform", 0.5)
    c10.ask("date_of_birth").after(10).user("17/09/1995", "inform", 0.9).form(None)
    c10.after(10).action("action_application_status").goal("status_answered")

    c11 = Conversation("c11").at(12, 11, 0).session().after(10).user("quiero 10 mil", "request_credit", 0.9)
    c11.after(60).action("action_submit_application").slot("application_outcome", "counter_offer")
    c11.goal("application_submitted").after(10).user("/affirm", "affirm", 1.0).action("action_accept_offer")
    c11.slot("application_outcome", "pre_approved")
    return [c1, c2, c3, c4, c5, c6, c8, c9, c10, c11]


@pytest.fixture(scope="module")
def tracker_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return store(tmp_path_factory.mktemp("tracker") / "rasa_tracker.db", sample_conversations())


def test_conversations_are_split_into_sessions_at_session_starts_and_restarts(tracker_url: str) -> None:
    sessions = list(read_sessions(tracker_url))
    assert [(s.sender_id, len(s.messages)) for s in sessions] == [
        ("c1", 5), ("c10", 3), ("c11", 2), ("c2", 2), ("c3", 3), ("c4", 6), ("c4", 0), ("c5", 3), ("c6", 3),
        ("c6", 1), ("c8", 4), ("c9", 0),
    ]
    restarted, after = [s for s in sessions if s.sender_id == "c6"]
    assert restarted.handoff_reasons == ["explicit_request"] and not restarted.journeys
    assert list(after.journeys) == ["simulation"] and after.resolved


def test_a_restart_without_a_new_session_start_still_opens_a_new_session() -> None:
    def user(text: str, intent: str, timestamp: float) -> tuple[str, dict[str, Any]]:
        return "user", {"event": "user", "timestamp": timestamp, "text": text, "input_channel": "rest",
                        "parse_data": {"intent": {"name": intent, "confidence": 0.9}}}

    sessions = split_sessions("s", [
        user("cuánto debo", "check_debt", 1.0),
        ("restart", {"event": "restart", "timestamp": 2.0}),
        ("action", {"event": "action", "timestamp": 3.0, "name": "action_listen"}),
        user("quiero un préstamo", "request_credit", 4.0),
    ])
    assert [(s.started_at, list(s.journeys)) for s in sessions] == [(1.0, ["collections"]), (4.0, ["credit"])]
    assert sessions[0].abandoned and sessions[1].abandoned


def test_inside_a_form_only_what_the_bot_leaves_the_form_for_counts_as_a_request_or_not_understood() -> None:
    def user(text: str, intent: str, timestamp: float) -> tuple[str, dict[str, Any]]:
        return "user", {"timestamp": timestamp, "text": text, "parse_data": {"intent": {"name": intent}}}

    def action(name: str, timestamp: float) -> tuple[str, dict[str, Any]]:
        return "action", {"timestamp": timestamp, "name": name}

    [session] = split_sessions("s", [
        ("session_started", {"timestamp": 0.0}),
        user("quiero un préstamo", "request_credit", 1.0),
        action("credit_application_form", 2.0),
        ("active_loop", {"timestamp": 2.0, "name": "credit_application_form"}),
        user("ana@correo.pe", "check_debt", 3.0),  # an answer NLU misread: the form goes on
        action("credit_application_form", 4.0),
        user("987654321", "nlu_fallback", 4.5),  # an answer NLU did not read: the form takes it
        action("credit_application_form", 4.6),
        user("no reconozco esta deuda", "dispute_debt", 5.0),  # the form gives way to it
        ("action_execution_rejected", {"timestamp": 6.0, "name": "credit_application_form"}),
        action("action_collections_start", 6.0),
        ("active_loop", {"timestamp": 6.5, "name": "verification_form"}),
        user("qwerty", "nlu_fallback", 6.6),  # not an answer: the form rejects it and the bot asks to rephrase
        ("action_execution_rejected", {"timestamp": 6.7, "name": "verification_form"}),
        action("utter_please_rephrase", 6.7),
        user("quiero hablar con un asesor", "ask_human", 7.0),  # the last message, nothing answered it yet
    ])
    assert [message.text for message in session.messages if message.not_understood] == ["qwerty"]
    assert {journey: run.started_at for journey, run in session.journeys.items()} == {"credit": 1.0, "collections": 5.0}
    assert session.handoff_reasons == ["explicit_request"]


def test_every_metric_matches_the_hand_computed_values(tracker_url: str) -> None:
    report = build_report(tracker_url)
    # Customer sessions: c1 c2 c3 c4 c5 c6 c6' c8 c10 c11; c4's payment-only session and c9 wrote nothing.
    assert report["sessions"] == 10
    # Handoffs: c2 (after its goal), c5, c6 (before the restart).
    assert report["containment"] == {"count": 7, "of": 10, "rate": 0.7}
    assert report["handoff"] == {
        "count": 3, "of": 10, "rate": 0.3, "by_reason": {"credit_referred": 1, "dispute": 1, "explicit_request": 1}
    }
    # Goals without a handoff: c1 c4 c6' c10 c11; c2 reached its goal but went to a person.
    assert report["automatic_resolution"] == {"count": 5, "of": 10, "rate": 0.5}
    # Started a journey: c1 c2 c3 c4 c5 c6' c10 c11; only c3 ended with neither a goal nor a person.
    assert report["abandonment"] == {"count": 1, "of": 8, "rate": 0.125}

    journeys = report["journeys"]
    assert journeys["credit"] == {
        "started": 4, "completed": 3, "completion_rate": 0.75,
        # c11 60 s, c1 120 s, c2 300 s: p90 at rank 1.8 = 120 + 0.8 × 180.
        "completion_seconds": {"median": pytest.approx(120), "p90": pytest.approx(264)},
    }
    assert journeys["simulation"]["completed"] == 1
    assert journeys["simulation"]["completion_seconds"]["median"] == pytest.approx(1)
    assert journeys["status"]["completion_seconds"] == {"median": pytest.approx(30), "p90": pytest.approx(30)}
    # c4: "cuánto debo" at 23:58:30, debt shown at 00:01:00; c5 (dispute) started and went to a person.
    assert journeys["collections"] == {
        "started": 2, "completed": 1, "completion_rate": 0.5,
        "completion_seconds": {"median": pytest.approx(150), "p90": pytest.approx(150)},
    }

    forms = report["forms"]
    assert forms["credit_application_form"] == {
        "sessions": 3,
        "abandoned": 1,
        "fields": [
            {"field": "product", "asked": 3, "stopped": 0},
            {"field": "amount", "asked": 2, "stopped": 1},
            {"field": "term_months", "asked": 1, "stopped": 0},
        ],
    }
    assert forms["verification_form"]["fields"] == [
        {"field": "verify_document", "asked": 2, "stopped": 0}, {"field": "verify_answer", "asked": 2, "stopped": 0}
    ]
    assert forms["promise_form"]["sessions"] == 1 and forms["application_status_form"]["sessions"] == 1
    assert "simulation_form" not in forms  # filled from the first message, nothing asked

    nlu = report["nlu"]
    # 29 typed messages (button presses /restart, /affirm ×2 and the payment events left out).
    assert nlu["messages"] == 29
    assert nlu["not_understood"] == {"count": 2, "of": 29, "rate": 2 / 29}
    # Below 0.6: "8 mil" 0.55, "mmm no sé" (inform 0.30 behind the fallback), "MMM no se" 0.5,
    # "no reconozco esta deuda" 0.58, "46210987" 0.5.
    assert nlu["low_confidence"] == {"count": 5, "of": 29, "rate": 5 / 29}
    assert nlu["top_not_understood"] == [{"text": "mmm no sé", "count": 2}]

    assert report["collections"] == {
        "verified_contacts": 2,
        "promises": 1,
        "promise_to_pay_rate": {"count": 1, "of": 2, "rate": 0.5},
        "links_sent": 1,
        "links_paid": {"count": 2, "amount": "200.50"},
        "plans_created": 0,
        # From core banking, which build_report was not given.
        "promise_kept": {"available": False, "reason": "no core-banking URL configured"},
    }
    assert report["credit"] == {
        "applications_by_outcome": {"counter_offer": 1, "pre_approved": 1, "referred": 1},
        "counter_offers_accepted": 1,
    }


def test_a_session_across_midnight_counts_on_the_day_it_started(tracker_url: str) -> None:
    report = build_report(tracker_url, Filters(end=date(2024, 5, 10)))
    assert report["sessions"] == 4  # c1 c2 c3 c4
    assert report["journeys"]["collections"]["completed"] == 1
    assert report["containment"]["count"] == 3 and report["automatic_resolution"]["count"] == 2
    # Only the payment announced in c4's first session; the later session started on the 12th.
    assert report["collections"]["links_paid"] == {"count": 1, "amount": "80.00"}

    next_day = build_report(tracker_url, Filters(start=date(2024, 5, 11), end=date(2024, 5, 11)))
    assert next_day["sessions"] == 3  # c5, c6 before and after its restart
    assert next_day["handoff"]["count"] == 2 and next_day["journeys"]["collections"]["started"] == 1


def test_filters_by_channel_and_journey(tracker_url: str) -> None:
    web = build_report(tracker_url, Filters(channel="socketio"))
    assert web["sessions"] == 2  # c3 and c8; c9 opened the chat and wrote nothing
    assert web["abandonment"] == {"count": 1, "of": 1, "rate": 1.0}
    assert web["collections"]["links_paid"]["count"] == 0

    collections = build_report(tracker_url, Filters(journey="collections"))
    assert collections["sessions"] == 2
    assert list(collections["journeys"]) == ["collections"]
    assert collections["containment"] == {"count": 1, "of": 2, "rate": 0.5}
    assert collections["collections"]["links_paid"] == {"count": 2, "amount": "200.50"}

    credit = build_report(tracker_url, Filters(journey="credit"))
    assert credit["sessions"] == 4 and credit["journeys"]["credit"]["started"] == 4
    assert credit["collections"]["links_paid"]["count"] == 0 and credit["collections"]["verified_contacts"] == 0


def test_rates_are_none_when_nothing_counts(tracker_url: str) -> None:
    report = build_report(tracker_url, Filters(start=date(2030, 1, 1)))
    assert report["sessions"] == 0
    assert report["containment"] == {"count": 0, "of": 0, "rate": None}
    assert report["journeys"]["credit"]["completion_seconds"] == {"median": None, "p90": None}


def test_unknown_journeys_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown journey"):
        Filters(journey="mortgage")


def test_percentiles_interpolate_between_ranks() -> None:
    assert percentile([], 0.5) is None
    assert percentile([7.0], 0.9) == 7.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile([10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0], 0.9) == pytest.approx(91)


def test_personal_data_is_masked_and_variants_fold_together() -> None:
    said = "Mi DNI es 45879632, nací el 02/11/1979, cel 987 654 321 y correo Ana.R@correo.pe"
    assert mask_personal_data(said) == "Mi DNI es <número>, nací el <fecha>, cel <número> y correo <correo>"
    assert mask_personal_data("quiero 8 mil a 18 meses") == "quiero 8 mil a 18 meses"
    assert fold("  Cuánto   DEBO ") == fold("cuanto debo") == "cuanto debo"


def test_messages_to_label_are_grouped_by_predicted_intent_without_personal_data(tracker_url: str) -> None:
    groups = review_groups(read_sessions(tracker_url))
    assert groups == [
        {
            "intent": "inform",
            "messages": 4,
            "not_understood": 2,
            "low_confidence": 4,
            "examples": [
                {"text": "mmm no sé", "count": 2}, {"text": "8 mil", "count": 1}, {"text": "<número>", "count": 1}
            ],
        },
        {
            "intent": "dispute_debt",
            "messages": 1,
            "not_understood": 0,
            "low_confidence": 1,
            "examples": [{"text": "no reconozco esta deuda", "count": 1}],
        },
    ]
    stricter = review_groups(read_sessions(tracker_url), threshold=0.95)
    assert sum(group["messages"] for group in stricter) > 5
    assert review_groups(read_sessions(tracker_url), Filters(channel="whatsapp"))[0]["intent"] == "dispute_debt"


def test_the_export_is_a_rasa_nlu_file_with_a_commented_block_per_group(tracker_url: str) -> None:
    from rasa.shared.nlu.training_data.formats.rasa_yaml import RasaYAMLReader

    text = render_nlu_yaml(review_groups(read_sessions(tracker_url)), 0.6, "2024-05-13 09:00 -05")
    assert "# predicted inform: 4 messages, 3 distinct (2 not understood, 4 below 0.6)" in text
    assert "# predicted dispute_debt: 1 messages, 1 distinct (0 not understood, 1 below 0.6)" in text
    assert "46210987" not in text
    training = RasaYAMLReader().reads(text)
    examples = {(m.get("intent"), m.get("text")) for m in training.training_examples}
    assert examples == {
        ("inform", "mmm no sé"), ("inform", "8 mil"), ("inform", "<número>"),
        ("dispute_debt", "no reconozco esta deuda"),
    }
    empty = render_nlu_yaml([], 0.6, "2024-05-13 09:00 -05")
    assert RasaYAMLReader().reads(empty).training_examples == []


def test_the_default_store_is_the_launchers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from credia import settings

    monkeypatch.setattr(settings, "VAR_DIR", tmp_path)
    assert tracker_store_url() == f"sqlite:///{tmp_path / 'rasa_tracker.db'}"
    assert tracker_store_url(str(tmp_path / "other.db")) == f"sqlite:///{tmp_path / 'other.db'}"
    assert tracker_store_url("postgresql://u:p@db/rasa") == "postgresql://u:p@db/rasa"


def test_paid_amounts_are_read_as_decimals(tracker_url: str) -> None:
    payments = [p for s in read_sessions(tracker_url) for p in s.payments]
    assert [(p.payment_id, p.amount) for p in payments] == [
        ("pay_1", Decimal("80.00")), ("pay_1", Decimal("80.00")), ("pay_2", Decimal("120.50"))
    ]
