"""Catching up with the upstream on demand, for many waiting requests at once (the sidecar's new keys).

A request whose service key the sidecar's replica does not know asks for a catch-up
(`ReplicaFeed.catch_up`: the changelog read now, not when the stream brings it) and then
checks its key again. Such requests may come in floods (a client with a revoked key, or
garbage key ids), so the catch-ups are bounded whatever the request rate:

- one runs at a time, in one worker thread; a waiting request is a parked future, never a
  thread, and the event loop never waits for the upstream;
- a request is served by a catch-up that starts after it asked (one already running may
  have read the changelog before the key was created), and every request that asks
  meanwhile shares that same next run;
- runs start at most `per_second` times a second;
- a request waits at most `wait` seconds and then goes on (its key, still unknown, is
  refused); a run that outlasts it finishes in the background, bounded by its own timeouts,
  and the next starts after it.
"""

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from typing import Literal, get_args

import anyio.to_thread

log = logging.getLogger("authz.sidecar")

# What one catch-up did: applied revisions, found the replica already at the upstream's
# head, or could not read the upstream (unreachable, refused, or an answer it could not apply).
CatchUpOutcome = Literal["applied", "current", "failed"]
CATCH_UP_OUTCOMES: tuple[CatchUpOutcome, ...] = get_args(CatchUpOutcome)


class FeedCatchUp:
    """Runs `catch_up` (blocking; returns how many revisions it applied) for async callers, bounded as above."""

    def __init__(self, catch_up: Callable[[], int], *, per_second: float, wait: float,
                 on_done: Callable[[CatchUpOutcome], None] = lambda outcome: None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._catch_up = catch_up
        self._interval = 1.0 / per_second
        self._wait = wait
        self._on_done = on_done
        self._clock = clock
        self._next: asyncio.Future[None] | None = None  # done when the next run to start has finished
        self._driver: asyncio.Task[None] | None = None
        self._last_start = -math.inf
        self._last_failure: str | None = None
        self.runs = 0  # catch-ups started (for tests and debugging)

    async def fresh(self) -> None:
        """Return once a catch-up that started after this call has finished, or after `wait` seconds."""
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
        finished = self._next
        if self._driver is None:
            self._driver = asyncio.create_task(self._drive(), name="authz-feed-catch-up")
        with contextlib.suppress(TimeoutError):  # waited long enough: the caller refuses its key
            await asyncio.wait_for(asyncio.shield(finished), self._wait)

    def close(self) -> None:
        """Stop starting catch-ups (at shutdown); a run in its thread ends by its own timeouts."""
        if self._driver is not None:
            self._driver.cancel()

    async def _drive(self) -> None:
        """Start runs while someone waits for one, spaced by the rate bound."""
        try:
            while self._next is not None:
                delay = self._last_start + self._interval - self._clock()
                if delay > 0:
                    await asyncio.sleep(delay)
                # Who asks from here on needs a run that starts after it: the next one.
                finished, self._next = self._next, None
                self._last_start = self._clock()
                self.runs += 1
                try:
                    self._on_done(await self._run())
                finally:
                    finished.set_result(None)
        finally:
            self._driver = None

    async def _run(self) -> CatchUpOutcome:
        try:
            applied = await anyio.to_thread.run_sync(self._catch_up)
        except Exception as exc:  # noqa: BLE001 - any failure: the keys stay as the feed left them (fail closed)
            reason = f"{type(exc).__name__}: {exc}"[:200]
            if reason != self._last_failure:  # once per reason: a flood must not become a flood of log lines
                log.warning("catching up with the upstream for an unknown service key failed: %s", reason)
            self._last_failure = reason
            return "failed"
        self._last_failure = None
        return "applied" if applied else "current"
