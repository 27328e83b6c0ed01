"""Debian's Chromium driven by Playwright, as every browser test opens it (Playwright never downloads a browser)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
from playwright.sync_api import BrowserContext, Playwright, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
# Headless comes from Playwright (headless=True); the rest keep Chromium off the closed network.
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]


@contextmanager
def playwright_driver() -> Iterator[Playwright]:
    """Playwright, with a clear failure when Chromium is not installed."""
    if not CHROMIUM.exists():
        pytest.fail("Debian's Chromium is needed at /usr/bin/chromium: apt-get install -y chromium")
    with sync_playwright() as driver:
        yield driver


def open_chromium(driver: Playwright, profile: Path, width: int = 1280, height: int = 900,
                  timeout_ms: int = 30_000) -> BrowserContext:
    """Chromium with a fresh, empty profile of its own (``--user-data-dir``), in Peruvian Spanish."""
    context = driver.chromium.launch_persistent_context(
        str(profile), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS, locale="es-PE",
        viewport={"width": width, "height": height},
    )
    context.set_default_timeout(timeout_ms)
    return context
