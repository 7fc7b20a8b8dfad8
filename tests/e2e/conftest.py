"""Fixtures of the end-to-end tests: one browser, shared by the browser tests (all in one module, so
the browser closes before the rest of the suite runs and the session starts it once)."""

from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.browser import launch


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch()
