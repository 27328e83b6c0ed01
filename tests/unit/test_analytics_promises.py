"""Promise-kept rate: hand-computed from promise outcomes, then read from a real core-banking process through
``GET /promises`` (pending promises settled as kept or broken first), and "no disponible" when it is down."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import update

from credia.analytics.metrics import Filters, build_report
from credia.analytics.promises import promise_kept, promise_outcomes
from credia.analytics.report import render_markdown
from credia.core_banking.loans import LIMA, today_lima
from credia.core_banking.models import PromiseToPay
from credia.db import make_engine
from credia.processes import free_port
from tests.unit.conftest import CoreBankingService
from tests.unit.test_analytics_metrics import sample_conversations, store

CHANNEL = "prueba_promesas"  # no seeded promise uses it, so the counts below are this test's own


def test_kept_over_due_counts_settled_promises_only() -> None:
    statuses = ["kept", "broken", "pending", "kept", "broken", "kept", "pending"]
    # Due = settled = 3 kept + 2 broken; the 2 pending are not due yet.
    assert promise_outcomes([{"status": status} for status in statuses]) == {
        "available": True, "count": 3, "of": 5, "rate": 0.6, "broken": 2, "pending": 2,
    }
    assert promise_outcomes([{"status": "pending"}]) == {
        "available": True, "count": 0, "of": 0, "rate": None, "broken": 0, "pending": 1,
    }


def test_without_core_banking_the_figure_is_unavailable_not_an_error() -> None:
    assert promise_kept(None, Filters()) == {"available": False, "reason": "no core-banking URL configured"}
    down = promise_kept(f"http://127.0.0.1:{free_port()}", Filters())
    assert down == {"available": False, "reason": "core-banking: connection failed (ClientConnectorError)"}
    # Promises belong to collections: another journey has none, and core banking is not even asked.
    assert promise_kept(f"http://127.0.0.1:{free_port()}", Filters(journey="credit"))["of"] == 0


def test_the_figure_is_read_also_from_inside_a_running_event_loop(core_banking: CoreBankingService) -> None:
    async def inside_a_loop() -> dict[str, Any]:
        return promise_kept(core_banking.url, Filters())

    figures = asyncio.run(inside_a_loop())
    assert figures["available"] and figures["of"] == figures["count"] + figures["broken"] > 0


def test_the_markdown_report_says_no_disponible_or_the_rate(tmp_path_factory: pytest.TempPathFactory) -> None:
    url = store(tmp_path_factory.mktemp("tracker") / "rasa_tracker.db", sample_conversations())
    report = build_report(url, core_banking_url=f"http://127.0.0.1:{free_port()}")
    unavailable = "| promise-kept rate | no disponible | core banking: core-banking: connection failed"
    assert unavailable in render_markdown(report)
    report["collections"]["promise_kept"] = promise_outcomes([{"status": s} for s in ("kept", "broken", "pending")])
    assert "| promise-kept rate | 50.0 % | 1 of 2 promises due (1 pending) |" in render_markdown(report)


@pytest.fixture(scope="module")
def service(core_banking: CoreBankingService) -> CoreBankingService:
    return core_banking


@pytest.fixture(scope="module")
def overdue_loans(service: CoreBankingService) -> Iterator[dict[str, Any]]:
    """Overdue loans of generated customers with nothing pending, each handed to one promise."""

    def loans() -> Iterator[dict[str, Any]]:
        for customer in service.get("/customers", limit=500).json():
            if customer["id"] <= 8:
                continue
            for loan in service.get(f"/customers/{customer['id']}/loans").json():
                if loan["active_plan_id"] is not None:
                    continue
                terms = service.get(f"/loans/{loan['id']}/promise-terms")
                if terms.status_code == 200 and terms.json()["pending_promise"] is None:
                    yield {**loan, "terms": terms.json()}

    return loans()


def promise_on(service: CoreBankingService, loan: dict[str, Any]) -> dict[str, Any]:
    terms = loan["terms"]
    made = service.post(f"/loans/{loan['id']}/promises", {
        "amount": terms["min_amount"], "promised_date": terms["latest_date"], "channel": CHANNEL,
    })
    assert made.status_code == 201, made.text
    return made.json()


def test_core_banking_settles_and_lists_the_promises_of_a_period(
    service: CoreBankingService, overdue_loans: Iterator[dict[str, Any]]
) -> None:
    seeded = service.get("/promises").json()
    assert {promise["status"] for promise in seeded} >= {"kept", "broken"}  # the seed's history

    to_break, to_keep = next(overdue_loans), next(overdue_loans)
    broken, kept = promise_on(service, to_break), promise_on(service, to_keep)
    assert promise_kept(service.url, Filters(channel=CHANNEL)) == {
        "available": True, "count": 0, "of": 0, "rate": None, "broken": 0, "pending": 2,
    }

    # One promise made three days ago for yesterday, never paid: broken when listed. The other paid in full.
    engine = make_engine(service.database_url)
    with engine.begin() as connection:
        connection.execute(
            update(PromiseToPay).where(PromiseToPay.id == broken["id"]).values(
                created_at=datetime.now(LIMA) - timedelta(days=3), promised_date=today_lima() - timedelta(days=1)
            )
        )
    engine.dispose()
    paid = service.post(f"/loans/{to_keep['id']}/payments",
                        {"amount": str(Decimal(kept["amount"])), "external_id": f"kept-{kept['id']}"})
    assert paid.status_code == 201, paid.text

    assert promise_kept(service.url, Filters(channel=CHANNEL)) == {
        "available": True, "count": 1, "of": 2, "rate": 0.5, "broken": 1, "pending": 0,
    }
    # By the day the promise was made, in Lima: today's only is the kept one.
    today = today_lima()
    assert promise_kept(service.url, Filters(start=today, end=today, channel=CHANNEL))["of"] == 1
    listed = service.get("/promises", channel=CHANNEL, to=(today - timedelta(days=1)).isoformat()).json()
    assert [(promise["id"], promise["status"]) for promise in listed] == [(broken["id"], "broken")]

    wrong = service.get("/promises", **{"from": "2025-02-01", "to": "2025-01-01"})
    assert wrong.status_code == 422 and "from is after to" in wrong.json()["detail"]
    assert service.get("/promises", **{"from": "ayer"}).status_code == 422
