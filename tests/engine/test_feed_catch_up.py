"""`FeedCatchUp`: many waiting requests, one catch-up at a time, each served by a run that started after it asked.

The catch-up here is a real blocking function in the worker thread that counts its runs
and can be held mid-run; the sidecar's own (the upstream's changelog read and applied)
is tested end to end in tests/sidecar/test_sidecar_keys.py.
"""

import asyncio
import logging
import threading

import pytest

from authz.engine.feed_catch_up import CatchUpOutcome, FeedCatchUp


class Upstream:
    """Stands for the upstream's changelog: each run records what it saw; `hold` keeps a run in its thread."""

    def __init__(self, applied: int = 1) -> None:
        self.applied = applied
        self.runs = 0
        self.hold = threading.Event()
        self.hold.set()
        self.running = threading.Event()
        self.error: Exception | None = None

    def catch_up(self) -> int:
        self.runs += 1
        self.running.set()
        self.hold.wait(10)
        self.running.clear()
        if self.error is not None:
            raise self.error
        return self.applied


def test_concurrent_requests_share_one_run_and_later_ones_the_next() -> None:
    upstream = Upstream()
    outcomes: list[CatchUpOutcome] = []
    catch_up = FeedCatchUp(upstream.catch_up, per_second=100.0, wait=10.0, on_done=outcomes.append)

    async def scenario() -> None:
        upstream.hold.clear()
        first = [asyncio.create_task(catch_up.fresh()) for _ in range(200)]
        while not upstream.running.is_set():  # the run has read the changelog's first part...
            await asyncio.sleep(0.001)
        # ...so these, asking now, may need what it has not seen: they wait for the next run.
        later = [asyncio.create_task(catch_up.fresh()) for _ in range(200)]
        await asyncio.sleep(0.05)
        assert not any(task.done() for task in first + later)
        upstream.hold.set()
        await asyncio.gather(*first)
        assert upstream.runs in (1, 2)  # the second may be under way already
        await asyncio.gather(*later)

    asyncio.run(scenario())
    assert upstream.runs == 2 and catch_up.runs == 2
    assert outcomes == ["applied", "applied"]


def test_a_run_that_hangs_lets_its_requests_go_and_starts_no_other() -> None:
    upstream = Upstream(applied=0)
    outcomes: list[CatchUpOutcome] = []
    catch_up = FeedCatchUp(upstream.catch_up, per_second=100.0, wait=0.1, on_done=outcomes.append)

    async def scenario() -> None:
        upstream.hold.clear()
        await asyncio.gather(*(catch_up.fresh() for _ in range(50)))  # gave up waiting (the caller refuses)
        await asyncio.gather(*(catch_up.fresh() for _ in range(50)))  # these wait for the run after it
        assert upstream.runs == 1
        upstream.hold.set()
        while len(outcomes) < 2:  # the hung run ends, and the one the second requests asked for runs
            await asyncio.sleep(0.001)

    asyncio.run(scenario())
    assert upstream.runs == 2
    assert outcomes == ["current", "current"]


def test_failures_are_counted_and_logged_once_per_reason(caplog: pytest.LogCaptureFixture) -> None:
    upstream = Upstream()
    upstream.error = ConnectionError("upstream unreachable")
    outcomes: list[CatchUpOutcome] = []
    catch_up = FeedCatchUp(upstream.catch_up, per_second=100.0, wait=10.0, on_done=outcomes.append)

    async def scenario() -> None:
        for _ in range(3):
            await asyncio.gather(*(catch_up.fresh() for _ in range(20)))

    with caplog.at_level(logging.WARNING, logger="authz.sidecar"):
        asyncio.run(scenario())
    assert outcomes == ["failed", "failed", "failed"]
    assert len([r for r in caplog.records if "upstream unreachable" in r.getMessage()]) == 1
