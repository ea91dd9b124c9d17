"""A real browser for page tests: Debian's Chromium driven by Playwright (no browser download).

``launch_browser()`` skips the calling tests, naming what is missing, when Playwright or a Chromium
binary is not installed (``apt-get install chromium``; ``AMBIENCE_TEST_CHROMIUM`` names another). In
CI (the ``CI`` environment variable set, as CI services set it) a missing browser fails them instead:
the page's tests never pass there by not running (``.ci/run`` installs Chromium).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import pytest

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def chromium_path() -> str | None:
    given = os.environ.get("AMBIENCE_TEST_CHROMIUM")
    if given:
        return given if os.path.exists(given) else None
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


class Browser:
    """Each ``open()`` gets a fresh context: no cookie or storage leaks from one test to the next."""

    def __init__(self, chromium: Any, viewport: dict[str, int]) -> None:
        self.chromium = chromium
        self.viewport = viewport
        self.errors: list[str] = []

    def open(self, url: str, viewport: dict[str, int] | None = None) -> Any:
        context = self.chromium.new_context(viewport=viewport or self.viewport)
        page = context.new_page()
        page.on("pageerror", lambda exc: self.errors.append(f"{url}: {exc}"))
        page.goto(url)
        return page


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing(reason: str) -> NoReturn:
    """Skip the browser tests for ``reason``; fail them in CI."""
    if in_ci():
        pytest.fail(f"{reason} (CI is set: the page's tests must run here)", pytrace=False)
    pytest.skip(reason)


@contextmanager
def launch_browser(viewport: dict[str, int] | None = None) -> Iterator[Browser]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("browser tests need Playwright (pip install playwright; it is in the test extra)")
    path = chromium_path()
    if path is None:
        missing("browser tests need Chromium: apt-get install chromium (or set AMBIENCE_TEST_CHROMIUM)")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=path, args=["--no-sandbox", "--disable-gpu"])
        try:
            browser = Browser(chromium, viewport or {"width": 1280, "height": 900})
            yield browser
            assert not browser.errors, f"script errors on the page: {browser.errors}"
        finally:
            chromium.close()
