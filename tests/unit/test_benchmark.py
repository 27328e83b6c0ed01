"""The benchmark's parts: percentiles, summaries, ratios, target verdicts, the printed table and the REST load."""

from __future__ import annotations

from collections import Counter

import pytest

from credia.devtools import benchmark
from credia.devtools.benchmark import (
    DEBTORS,
    Load,
    journeys,
    latency_summary,
    minimal_script,
    percentile,
    ratios,
    render,
    table,
    verdicts,
)


def test_percentiles_interpolate_between_ranks() -> None:
    values = [float(n) for n in range(1, 101)]  # 1..100
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 95) == pytest.approx(95.05)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0  # order of the input does not matter
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None


def test_latency_summary_is_in_milliseconds() -> None:
    assert latency_summary([0.1, 0.2, 0.3]) == {"p50_ms": 200.0, "p95_ms": 290.0, "p99_ms": 298.0}
    assert latency_summary([]) == {"p50_ms": None, "p95_ms": None, "p99_ms": None}


def test_load_summary_counts_errors_and_throughput() -> None:
    load = Load("rest", customers=2, latencies=[0.1, 0.3], errors=Counter({"timeout": 1}), messages=3, seconds=1.5)
    summary = load.summary()
    assert summary["throughput_msg_s"] == 2.0
    assert (summary["errors"], summary["errors_by_kind"], summary["replies"]) == (1, {"timeout": 1}, 2)
    assert "ack_latency" not in summary
    assert Load("w", 1, acks=[0.01]).summary()["ack_latency"]["p50_ms"] == 10.0


def test_ratios_to_the_minimal_bot() -> None:
    ours = {"p50_ms": 300.0, "p95_ms": 900.0, "p99_ms": None}
    theirs = {"p50_ms": 100.0, "p95_ms": 600.0, "p99_ms": 700.0}
    assert ratios(ours, theirs) == {"p50_ms": 3.0, "p95_ms": 1.5, "p99_ms": None}


def report(errors: int = 0, customers: int = 50, ratio: float = 1.4, ack: float = 12.0,
           training: float | None = 200.0) -> dict:
    latency = {"p50_ms": 1.0, "p95_ms": 2.0, "p99_ms": 3.0}
    load = {"customers": customers, "messages": 200, "replies": 200, "seconds": 10.0, "throughput_msg_s": 20.0,
            "errors": errors, "errors_by_kind": {"timeout": errors} if errors else {}, "reply_latency": latency}
    return {
        "rest": load,
        "whatsapp": {**load, "errors": 0, "errors_by_kind": {},
                     "ack_latency": {"p50_ms": 5.0, "p95_ms": ack, "p99_ms": 60.0}},
        "minimal": load,
        "ratio_to_minimal": {"p50_ms": 1.0, "p95_ms": ratio, "p99_ms": 1.0},
        "training": {"seconds": training, "measured_now": True, "measured_at": "2026-12-04T21:00:00+00:00"},
        "memory_mb": {"rasa": 1200.5, "whatsapp-gateway": 60.2},
        "nlu_parse": {"requests": 60, "errors": 0, "p50_ms": 20.0, "p95_ms": 40.0, "p99_ms": 50.0},
    }


def test_every_target_met() -> None:
    assert [verdict.met for verdict in verdicts(report())] == [True, True, True, True]


@pytest.mark.parametrize(
    ("figures", "failing"),
    [
        ({"errors": 1}, 0),
        ({"ratio": 1.51}, 1),
        ({"ack": 50.0}, 2),
        ({"training": 300.0}, 3),
    ],
)
def test_each_target_can_fail(figures: dict, failing: int) -> None:
    found = verdicts(report(**figures))
    assert [verdict.met for verdict in found] == [index != failing for index in range(4)]


def test_targets_not_measured_are_said_so() -> None:
    partial = report(customers=10, training=None)
    del partial["ratio_to_minimal"]
    found = verdicts(partial)
    assert [verdict.met for verdict in found] == [None, None, True, None]
    assert "only 10 customers" in found[0].detail
    assert "--train" in found[3].detail


def test_a_skipped_training_shows_when_it_was_measured() -> None:
    skipped = report()
    skipped["training"] = {"seconds": 180.0, "measured_now": False, "measured_at": "2026-12-01T10:00:00+00:00"}
    assert "skipped this run" in verdicts(skipped)[3].detail
    assert "last measured 2026-12-01" in render(skipped)


def test_table_aligns_columns_and_shows_missing_values_as_dashes() -> None:
    lines = table(["a", "long header"], [["x", None], ["yyyy", 3]]).splitlines()
    assert lines[0] == "a     long header"
    assert lines[1] == "----  -----------"
    assert lines[2] == "x     –"
    assert lines[3] == "yyyy  3"


def test_render_prints_loads_ratio_memory_and_verdicts() -> None:
    text = render(report(ratio=2.0))
    for expected in ("Credia REST", "Credia WhatsApp", "minimal bot REST", "p95 2.0×", "whatsapp-gateway",
                     "NLU parse", "Targets"):
        assert expected in text
    assert "NO" in text  # the ratio target is missed


def test_scripts_have_four_turns_for_every_customer_and_the_debt_journey_verifies() -> None:
    assert {len(journeys(n)) for n in range(8)} == {4}
    assert {len(minimal_script(n)) for n in range(8)} == {4}
    debt = journeys(3)
    assert debt[2:] == list(DEBTORS[3 % len(DEBTORS)])


async def test_rest_load_plays_every_round_with_new_customers() -> None:
    """Against a real HTTP server: every round plays every customer's turns, in new conversations; errors count."""
    from aiohttp import web

    from credia.processes import free_port

    seen: list[tuple[str, str]] = []

    async def webhook(request: web.Request) -> web.Response:
        body = await request.json()
        seen.append((body["sender"], body["message"]))
        if body["message"] == "falla":
            return web.Response(status=500)
        return web.json_response([{"recipient_id": body["sender"], "text": "ok"}])

    app = web.Application()
    app.router.add_post("/webhooks/rest/webhook", webhook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        load = await benchmark.rest_load(f"http://127.0.0.1:{port}", 3, lambda n: ["hola", "falla" if n == 0 else "sí"],
                                         "test", "t", rounds=2)
    finally:
        await runner.cleanup()
    assert len(seen) == load.messages == 12
    assert len({sender for sender, _ in seen}) == 6  # 3 customers × 2 rounds, each a new conversation
    assert len(load.latencies) == 10 and load.errors == {"HTTP 500": 2} and load.seconds > 0
