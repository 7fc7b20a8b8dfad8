"""One headless Chromium (Debian's package) per test session, driven by Playwright for Python.

Playwright's own browser download is not used: `.ci/run` installs Debian's `chromium`
and we launch it by path. Without it the browser tests skip, except under CI=true.
"""

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("AUTHZ_TEST_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = Path(__file__).parent / "screenshots"


def launch() -> Iterator[object]:
    if not CHROMIUM.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs Chromium at {CHROMIUM} (apt-get install chromium)")
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium to run the browser tests")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def screenshot(page: object, name: str) -> Path:
    """Save the whole page under tests/e2e/screenshots/ (not committed) for people to look at."""
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / (re.sub(r"[^a-z0-9-]+", "-", name.lower()) + ".png")
    page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
    return path
