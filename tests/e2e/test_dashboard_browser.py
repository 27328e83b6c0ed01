"""The supervisors' dashboard in a real browser (Debian's Chromium driven by Playwright) against the real assistant.

Simulated customers talk to the bot first; a supervisor logs in to the desk, opens the dashboard and finds every
chart drawn and every figure equal to ``build_report`` over the same tracker store, core banking and filters;
changes the filters and finds the filtered report; then, with the page left open, one more customer writes and
the figures change without a reload. Screenshot artifact: ``results/screenshots/dashboard.png``.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import BrowserContext, Page, Playwright, expect

from credia.analytics.metrics import Filters, build_report
from credia.desk.dashboard import REFRESH_SECONDS
from credia.identity import country_profile
from credia.settings import PROJECT_ROOT
from tests.e2e.browser import open_chromium, playwright_driver
from tests.e2e.conftest import Assistant
from tests.e2e.test_analytics_simulator import python_module
from tests.unit.test_dashboard import leaves, raw

pytestmark = pytest.mark.e2e

SCREENSHOT = PROJECT_ROOT / "results" / "screenshots" / "dashboard.png"
CONVERSATIONS = 6
READ_FIGURES = "() => Object.fromEntries([...document.querySelectorAll('[data-metric]')].map(" \
               "element => [element.dataset.metric, element.dataset.value]))"

expect.set_options(timeout=30_000)


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with playwright_driver() as driver:
        yield driver


@pytest.fixture
def browser(playwright: Playwright, tmp_path: Path) -> Iterator[BrowserContext]:
    context = open_chromium(playwright, tmp_path / "profile")
    yield context
    context.close()


def expected_figures(report: dict[str, Any]) -> dict[str, str]:
    return {path: raw(value) for path, value in leaves(report).items() if not path.startswith("filters.")}


def shows_the_report(page: Page, report_now: Callable[[], dict[str, Any]], attempts: int = 3) -> dict[str, Any]:
    """The page's figures equal the report computed right after reading them (read again after a reload when
    they differ, in case a background process of the shared assistant wrote in between)."""
    for _ in range(attempts - 1):
        shown, report = page.evaluate(READ_FIGURES), report_now()
        if shown == expected_figures(report):
            return report
        page.reload()
    shown, report = page.evaluate(READ_FIGURES), report_now()
    assert shown == expected_figures(report)
    return report


def test_a_supervisor_reads_the_same_figures_as_the_report(
    assistant: Assistant, browser: BrowserContext, tmp_path: Path
) -> None:
    expected_file = tmp_path / "expected.json"
    run_id = f"dash{secrets.token_hex(3)}"
    played = python_module(
        "credia.analytics.simulate", "--rasa-url", assistant.rasa_url, "--conversations", str(CONVERSATIONS),
        "--seed", "7", "--run-id", run_id, "--expected", str(expected_file),
    )
    assert played.returncode == 0, played.stderr
    simulated = json.loads(expected_file.read_text(encoding="utf-8"))["expected"]

    desk_env = assistant.processes["desk"].env
    desk = f"http://127.0.0.1:{desk_env['DESK_PORT']}"
    tracker, core_banking = desk_env["DESK_TRACKER_DB"], assistant.core_banking_url

    page = browser.pages[0] if browser.pages else browser.new_page()
    page.goto(f"{desk}/console/metrics")
    expect(page).to_have_url(f"{desk}/login?next=/console/metrics")
    page.get_by_label("Usuario").fill("supervisor")
    page.get_by_label("Contraseña").fill(desk_env["DESK_SUPERVISOR_PASSWORD"])
    page.get_by_role("button", name="Ingresar").click()
    expect(page).to_have_url(f"{desk}/console/metrics")
    expect(page.get_by_role("heading", level=1)).to_have_text("Métricas del asistente")

    report = shows_the_report(page, lambda: build_report(tracker, Filters(), core_banking_url=core_banking))
    assert report["sessions"] >= simulated["sessions"] == CONVERSATIONS
    assert report["collections"]["promise_kept"]["available"]  # read from this run's core banking

    # Every chart is drawn, with one bar per figure and its values written in it.
    charts = page.locator("svg.chart")
    assert charts.count() >= 4
    for index in range(charts.count()):
        chart = charts.nth(index)
        expect(chart).to_be_visible()
        box = chart.bounding_box()
        assert box is not None and box["width"] > 100 and box["height"] > 10
        assert chart.locator("rect").count() == chart.locator("text.chart-value").count() > 0
        assert chart.get_attribute("role") == "img" and chart.locator("title").first.text_content()
    expect(page.get_by_role("img", name=re.compile("^Traspasos por motivo"))).to_be_visible()
    by_reason = report["handoff"]["by_reason"]
    assert page.locator("#chart-handoffs rect").count() == len(by_reason) > 0
    assert page.locator("#chart-journeys rect").count() == len(report["journeys"])
    rate = report["containment"]["rate"]
    expect(page.locator('[data-metric="containment.rate"]')).to_have_text(f"{rate * 100:.1f} %".replace(".", ","))
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    # Filters: the REST channel's collections sessions of today (Lima); seed 7 plays a debt look-up and a
    # verification left half-way besides credit conversations.
    today = datetime.now(ZoneInfo(country_profile().time_zone)).date()
    page.get_by_label("Desde", exact=True).fill(today.isoformat())
    page.get_by_label("Canal", exact=True).select_option("rest")
    page.get_by_label("Recorrido", exact=True).select_option("collections")
    page.get_by_role("button", name="Aplicar").click()
    expect(page).to_have_url(f"{desk}/console/metrics?from={today}&to=&channel=rest&journey=collections")
    filters = Filters(start=today, channel="rest", journey="collections")
    filtered = shows_the_report(page, lambda: build_report(tracker, filters, core_banking_url=core_banking))
    assert 0 < filtered["sessions"] < report["sessions"]
    assert list(filtered["journeys"]) == ["collections"]

    # Left open, the page follows new conversations by itself.
    page.get_by_role("link", name="Quitar filtros").click()
    expect(page).to_have_url(f"{desk}/console/metrics")
    page.evaluate("() => { window.notReloaded = true; }")
    sessions = page.locator('[data-metric="sessions"]')
    before = int(sessions.get_attribute("data-value") or "0")
    customer = assistant.chat(f"{run_id}-live")
    assert "Credia" in customer.say("hola")
    customer.say("¿cuánto debo?")
    expect(sessions).to_have_attribute("data-value", str(before + 1), timeout=(REFRESH_SECONDS * 3) * 1000)
    assert page.evaluate("() => window.notReloaded") is True  # swapped in place, not reloaded
    shows_the_report(page, lambda: build_report(tracker, Filters(), core_banking_url=core_banking))
