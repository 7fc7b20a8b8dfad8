"""How many examples a property-based test draws, and how many rounds a race runs.

`make test` and CI draw each test's full count. `make test-fast`, the edit-test loop, sets
AUTHZ_TEST_EXAMPLE_SHARE=0.2 and draws a fifth of it (at least one): the property tests were a
third of its time, and a property broken by an edit usually fails within the first examples. A
race's rounds (tests/api/test_consistency.py) are examples of its interleavings and take the same
share: on SQLite, where test-fast runs them, writers queue one behind the other and later rounds
rarely find what the first ones missed.
CI=true always draws the full count, whatever the variable says.
"""

import os


def _share() -> float:
    if os.environ.get("CI", "").lower() == "true":
        return 1.0
    share = float(os.environ.get("AUTHZ_TEST_EXAMPLE_SHARE", "1"))
    if not 0 < share <= 1:
        raise ValueError(f"AUTHZ_TEST_EXAMPLE_SHARE must be in (0, 1], not {share}")
    return share


SHARE = _share()


def examples(full: int) -> int:
    """`full` examples, or this run's share of them."""
    return max(1, round(full * SHARE))
