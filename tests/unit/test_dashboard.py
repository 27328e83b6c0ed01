"""The supervisors' dashboard on a real desk process reading the hand-computed tracker store of
test_analytics_metrics and a real core banking: who may see it, that every figure of the report is on the page
with the same value, filters (and bad ones), and a tracker store that cannot be read."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import date
from html import unescape
from pathlib import Path
from typing import Any

import pytest
import requests

from credia.analytics.metrics import Filters, build_report
from tests.unit.conftest import CoreBankingService
from tests.unit.fake_receiver import FakeReceiver
from tests.unit.test_analytics_metrics import sample_conversations, store
from tests.unit.test_desk_api import Console, DeskService, start_desk

METRICS = "/console/metrics"
FIGURE = re.compile(r'data-metric="([^"]+)" data-value="([^"]*)"')


@pytest.fixture(scope="module")
def tracker_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return store(tmp_path_factory.mktemp("tracker") / "rasa_tracker.db", sample_conversations())


@pytest.fixture(scope="module")
def desk(
    tmp_path_factory: pytest.TempPathFactory, fake_rasa: FakeReceiver, tracker_url: str,
    core_banking: CoreBankingService,
) -> Iterator[DeskService]:
    service = start_desk(tmp_path_factory.mktemp("desk"), fake_rasa.url, DESK_TRACKER_DB=tracker_url,
                         CORE_BANKING_URL=core_banking.url)
    yield service
    service.stop()


def figures(html: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for path, value in FIGURE.findall(html):
        assert path not in found, f"{path} twice on the page"
        found[unescape(path)] = unescape(value)
    return found


def leaves(value: Any, path: str = "") -> dict[str, Any]:
    """The report's figures by dotted path (list items by index), as the page names them."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return {path: value}
    found: dict[str, Any] = {}
    for name, item in items:
        found.update(leaves(item, f"{path}.{name}" if path else str(name)))
    return found


def raw(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def assert_page_shows(html: str, report: dict[str, Any]) -> None:
    expected = {path: raw(value) for path, value in leaves(report).items() if not path.startswith("filters.")}
    assert figures(html) == expected


def test_anonymous_users_go_to_the_login_and_agents_are_refused(desk: DeskService) -> None:
    anonymous = requests.get(f"{desk.url}{METRICS}?journey=credit", allow_redirects=False, timeout=10)
    assert anonymous.status_code == 303 and anonymous.headers["location"] == f"/login?next={METRICS}"

    agent = Console(desk, "agente1")
    refused = agent.get(METRICS)
    assert refused.status_code == 403
    assert "Solo los supervisores pueden ver las métricas del asistente." in refused.text
    assert "data-metric" not in refused.text and f'href="{METRICS}"' not in agent.page("/console")

    supervisor = Console(desk, "supervisor")
    assert f'<a href="{METRICS}">Métricas</a>' in supervisor.page("/console")


def test_every_figure_of_the_report_is_on_the_page_with_its_value(
    desk: DeskService, tracker_url: str, core_banking: CoreBankingService
) -> None:
    page = Console(desk, "supervisor").get(METRICS)
    assert page.status_code == 200
    report = build_report(tracker_url, core_banking_url=core_banking.url)
    assert report["collections"]["promise_kept"]["available"] and report["collections"]["promise_kept"]["of"] > 0
    assert_page_shows(page.text, report)
    # What a person reads: rates with a decimal comma, times, money, labels in Spanish.
    assert '<span data-metric="containment.rate" data-value="0.7">70,0 %</span>' in page.text
    assert ">2 min 00 s<" in page.text and "S/" in page.text and "El cliente pidió una persona" in page.text
    # Charts drawn on the server, labelled; refreshed by the desk's own script; nothing from elsewhere.
    charts = re.findall(r'<svg class="chart" id="([^"]+)" role="img" aria-labelledby="\1-title \1-desc"', page.text)
    assert set(charts) >= {"chart-handoffs", "chart-journeys", "chart-form-credit_application_form",
                           "chart-not-understood", "chart-credit"}
    svgs = re.finditer(r'<svg class="chart" id="([^"]+)".*?</svg>', page.text)
    bars = {svg.group(1): svg.group(0).count("<rect ") for svg in svgs}
    assert (bars["chart-handoffs"], bars["chart-journeys"], bars["chart-credit"]) == (
        len(report["handoff"]["by_reason"]), len(report["journeys"]), len(report["credit"]["applications_by_outcome"])
    )
    assert 'data-refresh-seconds="15"' in page.text and '<script src="/assets/desk.js" defer>' in page.text
    assert not re.search(r'(src|href)="(https?:)?//', page.text)
    assert "'self'" in page.headers["content-security-policy"]


def test_filters_give_the_report_of_the_same_filters(desk: DeskService, tracker_url: str,
                                                     core_banking: CoreBankingService) -> None:
    supervisor = Console(desk, "supervisor")
    page = supervisor.get(f"{METRICS}?from=2024-05-10&to=2024-05-10&channel=rest&journey=collections")
    assert page.status_code == 200
    filters = Filters(start=date(2024, 5, 10), end=date(2024, 5, 10), channel="rest", journey="collections")
    report = build_report(tracker_url, filters, core_banking_url=core_banking.url)
    assert report["sessions"] == 1  # c4, the collections session on the REST channel that day
    assert_page_shows(page.text, report)
    assert '<option value="rest" selected>' in page.text and '<option value="collections" selected>' in page.text
    assert 'value="2024-05-10"' in page.text

    empty = supervisor.get(f"{METRICS}?from=2030-01-01")
    assert empty.status_code == 200
    assert figures(empty.text)["sessions"] == "0" and figures(empty.text)["containment.rate"] == "null"


@pytest.mark.parametrize("query, message", [
    ("from=2024-13-01", "La fecha «Desde» no es válida"),
    ("to=ayer", "La fecha «Hasta» no es válida"),
    ("from=2024-05-12&to=2024-05-10", "«Desde» es posterior a la fecha «Hasta»"),
    ("channel=telegram", "No hay un canal «telegram»"),
    ("journey=%3Cscript%3E", "No hay un recorrido «&lt;script&gt;»"),
    ("channel=" + "x" * 41, "demasiado largo"),
])
def test_bad_filters_get_a_clear_400(desk: DeskService, query: str, message: str) -> None:
    page = Console(desk, "supervisor").get(f"{METRICS}?{query}")
    assert page.status_code == 400
    assert message in page.text and 'role="alert"' in page.text and "data-metric" not in page.text
    assert "<script>" not in page.text.split("</head>")[1]


def test_a_tracker_store_that_cannot_be_read_is_said_on_the_page(
    tmp_path: Path, fake_rasa: FakeReceiver, tracker_url: str
) -> None:
    path = tmp_path / "rasa_tracker.db"
    desk = start_desk(tmp_path, fake_rasa.url, DESK_TRACKER_DB=str(path), CORE_BANKING_URL="http://127.0.0.1:9")
    try:
        supervisor = Console(desk, "supervisor")
        missing = supervisor.get(METRICS)
        assert missing.status_code == 503
        assert "No se pudo leer el registro de conversaciones" in missing.text
        assert f"There is no tracker store at {path}" in missing.text

        path.write_bytes(b"this is not a database" * 100)
        garbage = supervisor.get(METRICS)
        assert garbage.status_code == 503 and "has no readable Rasa events table" in garbage.text

        path.unlink()
        path.write_bytes(Path(tracker_url.removeprefix("sqlite:///")).read_bytes())
        working = supervisor.get(METRICS)
        assert working.status_code == 200
        shown = figures(working.text)
        assert shown["sessions"] == "10" and shown["collections.promise_kept.available"] == "false"
        assert "No disponible" in working.text
    finally:
        desk.stop()
