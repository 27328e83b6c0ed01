"""The traffic simulator without the bot: its plan, its expectations, and how it talks to a REST channel.

The real bot is in tests/e2e/test_analytics_simulator.py; here a small HTTP server plays the REST channel.
"""

from __future__ import annotations

import json
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

from credia.analytics.simulate import SCENARIOS, Identities, Script, Turn, expected_tallies, main, plan, play
from credia.core_banking.bureau import bureau_report
from credia.core_banking.models import DocumentType


class FakeRestChannel:
    """``POST /webhooks/rest/webhook`` answering every message with one text (or a status), recording what it got."""

    def __init__(self) -> None:
        self.answer = ""
        self.status = 200
        self.received: list[tuple[str, str]] = []
        channel = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                channel.received.append((body["sender"], body["message"]))
                payload = json.dumps([{"recipient_id": body["sender"], "text": channel.answer}]).encode()
                self.send_response(channel.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def rest_channel() -> Iterator[FakeRestChannel]:
    channel = FakeRestChannel()
    thread = threading.Thread(target=channel.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield channel
    finally:
        channel.server.shutdown()
        channel.server.server_close()


def test_the_plan_plays_every_scenario_with_distinct_senders_and_is_repeatable() -> None:
    planned = plan(20, seed=7, run_id="r1")
    senders = [sender for sender, _ in planned]
    assert len(set(senders)) == 20 and all(sender.startswith("sim-r1-") for sender in senders)
    assert {script.scenario for _, script in planned} == set(SCENARIOS)
    assert plan(20, seed=7, run_id="r1") == planned
    assert [s.scenario for _, s in plan(20, seed=7, run_id="r2")] == [s.scenario for _, s in planned]
    assert plan(20, seed=8, run_id="r1") != planned
    assert len(plan(3, seed=7, run_id="r1")) == 3


def test_applicants_are_new_dnis_with_the_rating_asked_for() -> None:
    identities = Identities(random.Random(1))
    applicants = [identities.applicant("Normal") for _ in range(5)] + [identities.applicant("CPP") for _ in range(2)]
    dnis = [applicant[0] for applicant in applicants]
    assert len(set(dnis)) == 7 and all(80_000_000 <= int(dni) <= 89_999_999 for dni in dnis)
    ratings = [bureau_report(DocumentType.DNI, dni).rating for dni in dnis]
    assert ratings == ["Normal"] * 5 + ["CPP"] * 2
    assert all(applicant[2].endswith("@correo.pe") and applicant[3].startswith("9") for applicant in applicants)


def test_expected_tallies_follow_the_metric_definitions() -> None:
    scripts = [
        Script("a", (), ("credit",), ("credit",)),  # resolved
        Script("b", (), ("credit",), ("credit",), ("credit_referred",)),  # goal, then a person
        Script("c", (), ("collections",), (), ("dispute",)),  # a person, no goal: not abandoned
        Script("d", (), ("collections",)),  # abandoned
        Script("e", (), (), (), ("explicit_request",)),  # no journey
        Script("f", ()),  # small talk
    ]
    assert expected_tallies(scripts) == {
        "sessions": 6,
        "handed_off": 3,
        "handoffs_by_reason": {"credit_referred": 1, "dispute": 1, "explicit_request": 1},
        "resolved": 1,
        "started_a_journey": 4,
        "abandoned": 1,
        "journeys": {
            "credit": {"started": 2, "completed": 2},
            "simulation": {"started": 0, "completed": 0},
            "status": {"started": 0, "completed": 0},
            "collections": {"started": 2, "completed": 0},
        },
    }


def test_answers_off_the_script_and_errors_are_surprises(rest_channel: FakeRestChannel) -> None:
    script = Script("x", (Turn("hola"), Turn("¿cuánto debo?", "DNI"), Turn("45879632")))
    rest_channel.answer = "¿Cuál es su número de DNI?"
    assert play(rest_channel.url, "s-1", script) == []
    assert rest_channel.received == [("s-1", "hola"), ("s-1", "¿cuánto debo?"), ("s-1", "45879632")]

    rest_channel.answer = "No le entendí"
    [surprise] = play(rest_channel.url, "s-2", script)
    assert surprise == {"sender": "s-2", "turn": 2, "said": "¿cuánto debo?", "expected": "DNI",
                        "answer": "No le entendí"}

    rest_channel.status = 500
    [failure] = play(rest_channel.url, "s-3", script)
    assert failure["turn"] == 1 and "500" in failure["error"]


def test_the_command_writes_the_expectations(rest_channel: FakeRestChannel, tmp_path: Path) -> None:
    planned = plan(12, seed=3, run_id="cli")
    rest_channel.answer = " ".join({turn.expect for _, s in planned for turn in s.turns if turn.expect})
    out = tmp_path / "expected.json"
    argv = ["--rasa-url", rest_channel.url, "--conversations", "12", "--seed", "3", "--run-id", "cli"]
    assert main([*argv, "--expected", str(out)]) == 0
    written = json.loads(out.read_text(encoding="utf-8"))
    assert written["expected"] == expected_tallies([script for _, script in planned])
    assert written["sender_prefix"] == "sim-cli-" and written["surprises"] == []
    assert [c["sender"] for c in written["conversations"]] == [sender for sender, _ in planned]
    assert len(rest_channel.received) == sum(len(script.turns) for _, script in planned)

    rest_channel.answer = "otra cosa"
    assert main([*argv, "--expected", str(out)]) == 1
    assert json.loads(out.read_text(encoding="utf-8"))["surprises"]
