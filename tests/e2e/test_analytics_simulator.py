"""End to end: simulated customers talk to the real assistant, then the metrics read its tracker store.

The simulator says what it expects the metrics to count; the report computed from what Rasa stored must give
exactly the containment, handoff, resolution, abandonment and completion figures those tallies imply.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from credia.settings import PROJECT_ROOT
from tests.e2e.conftest import Assistant

pytestmark = pytest.mark.e2e

CONVERSATIONS = 16  # every scenario at least once, a few more by weight


def tracker_db(assistant: Assistant) -> Path:
    """The SQLite tracker store the launcher configured for this assistant, under its var directory."""
    return Path(assistant.processes["rasa"].env["CREDIA_VAR_DIR"]) / "rasa_tracker.db"


def only_conversations_of(source: Path, sender_prefix: str, target: Path) -> str:
    """A copy of the store with the simulator's conversations alone (other e2e tests share the assistant)."""
    with sqlite3.connect(target) as copy:
        copy.execute("ATTACH DATABASE ? AS source", (str(source),))
        copy.execute(
            "CREATE TABLE events AS SELECT * FROM source.events WHERE substr(sender_id, 1, ?) = ?",
            (len(sender_prefix), sender_prefix),
        )
    return f"sqlite:///{target}"


def python_module(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *argv], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=900
    )


def ratio(count: int, of: int) -> dict[str, Any]:
    return {"count": count, "of": of, "rate": count / of}


def test_the_report_on_simulated_traffic_gives_the_expected_figures(assistant: Assistant, tmp_path: Path) -> None:
    expected_file = tmp_path / "expected.json"
    played = python_module(
        "credia.analytics.simulate", "--rasa-url", assistant.rasa_url, "--conversations", str(CONVERSATIONS),
        "--seed", "20240510", "--run-id", "e2e", "--expected", str(expected_file),
    )
    simulation = json.loads(expected_file.read_text(encoding="utf-8"))
    assert played.returncode == 0 and simulation["surprises"] == [], played.stderr
    senders = [conversation["sender"] for conversation in simulation["conversations"]]
    assert len(set(senders)) == CONVERSATIONS
    assert {c["scenario"] for c in simulation["conversations"]} >= {
        "credit_application", "credit_referred", "simulation", "application_status", "debt", "payment_link",
        "dispute", "ask_for_a_person", "abandoned_application", "abandoned_verification",
    }

    url = only_conversations_of(tracker_db(assistant), simulation["sender_prefix"], tmp_path / "simulated.db")
    reported = python_module("credia.analytics", "report", "--format", "json", "--tracker-db", url)
    assert reported.returncode == 0, reported.stderr
    report = json.loads(reported.stdout)

    expected = simulation["expected"]
    sessions = expected["sessions"]
    assert report["sessions"] == sessions == CONVERSATIONS
    assert report["containment"] == ratio(sessions - expected["handed_off"], sessions)
    assert report["handoff"] == {**ratio(expected["handed_off"], sessions), "by_reason": expected["handoffs_by_reason"]}
    assert report["automatic_resolution"] == ratio(expected["resolved"], sessions)
    assert report["abandonment"] == ratio(expected["abandoned"], expected["started_a_journey"])
    for journey, counts in expected["journeys"].items():
        figures = report["journeys"][journey]
        assert (figures["started"], figures["completed"]) == (counts["started"], counts["completed"]), journey
        assert figures["completion_rate"] == (counts["completed"] / counts["started"] if counts["started"] else None)
        if counts["completed"]:
            assert 0 <= figures["completion_seconds"]["median"] <= figures["completion_seconds"]["p90"] < 600

    # Where the abandoned conversations stopped: at the term of the application, at the DNI of the verification.
    scenarios = [conversation["scenario"] for conversation in simulation["conversations"]]
    stopped = {
        (form, step["field"]): step["stopped"]
        for form, funnel in report["forms"].items()
        for step in funnel["fields"]
        if step["stopped"]
    }
    assert stopped == {
        key: count
        for key, count in {
            ("credit_application_form", "term_months"): scenarios.count("abandoned_application"),
            ("verification_form", "verify_document"): scenarios.count("abandoned_verification"),
        }.items()
        if count
    }
    assert report["collections"]["links_sent"] == scenarios.count("payment_link")
    assert report["credit"]["applications_by_outcome"].get("referred") == scenarios.count("credit_referred")
    assert sum(report["credit"]["applications_by_outcome"].values()) == (
        scenarios.count("credit_application") + scenarios.count("credit_referred")
    )

    on_rest = python_module("credia.analytics", "report", "--format", "json", "--tracker-db", url, "--channel", "rest")
    assert json.loads(on_rest.stdout)["sessions"] == sessions
