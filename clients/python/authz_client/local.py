"""`LocalDecisions`: authz's decisions answered inside this process, in microseconds.

The same follower as `authz sidecar` (`authz_client.decisions.feed`): it loads the
service's snapshot, then follows its change feed in a daemon thread, and answers from the
same decision index the service runs (`authz_client.decisions.index`). The caller owns
its lifetime (`start`/`stop`, or `with` / `async with` in an app's lifespan).

- **Consistency:** every answer is at the revision reached; `min_revision` (a write's
  revision) waits until the follower has it, bounded by `min_revision_wait`, then raises
  `Unavailable` (what the service answers with 503).
- **Fail closed:** before the first snapshot, and once `max_staleness` seconds pass
  without a word from the upstream (a change or its keep-alive), every decision raises
  `Unavailable`; the follower reconnects on its own and catches up from its revision.
- **Names are not validated:** anything not spelled exactly as authz stored it is denied
  (the service answers 422 for a malformed id instead; it never allows more).

    decisions = LocalDecisions("http://authz:8000", feed_key)   # a service key with `changes:read`
    with decisions:                                              # waits for the snapshot
        if decisions.check("delete", "algorithm:grover", subject="alice"):
            ...
"""

import asyncio
import contextlib
import threading
import time
from dataclasses import dataclass
from time import monotonic
from types import TracebackType
from typing import Any, Self

from authz_client.decisions.feed import MAX_BACKOFF, FeedFollower
from authz_client.decisions.ids import personal_context
from authz_client.decisions.index import Clock, DecisionIndex
from authz_client.decisions.stream import StreamSnapshot
from authz_client.errors import Unavailable
from authz_client.models import CheckResult

PERSONAL = "personal"


@dataclass(frozen=True)
class _State:
    """One revision's index; replaced whole, so an answer never mixes two revisions."""

    revision: int
    index: DecisionIndex


@dataclass
class _Waiter:
    revision: int
    loop: asyncio.AbstractEventLoop
    future: "asyncio.Future[None]"


class LocalDecisions:
    """Decisions of the authz service at `upstream`, answered from memory in this process.

    `key` is a service key with the `changes:read` scope (it reads the snapshot and the feed).
    """

    def __init__(self, upstream: str, key: str, *, max_staleness: float = 30.0, min_revision_wait: float = 2.0,
                 clock: Clock = time.time, freeze_gc: bool = False, max_backoff: float = MAX_BACKOFF,
                 connect_timeout: float = 5.0, read_timeout: float = 60.0) -> None:
        self.max_staleness = max_staleness
        self.min_revision_wait = min_revision_wait
        self._clock = clock  # grants that expire are compared with it
        self._state = _State(-1, DecisionIndex())  # revision -1: nothing loaded, every decision refused
        self._last_sync = float("-inf")  # time.monotonic() of the last word from the upstream
        self._changed = threading.Condition()
        self._waiters: list[_Waiter] = []
        # The feed's read timeout must outlast the upstream's keep-alive interval; `freeze_gc` is off by
        # default because gc.freeze() would also freeze the application's own objects.
        self._follower = FeedFollower(self, upstream, key, user_agent="authz-client-local", max_backoff=max_backoff,
                                      connect_timeout=connect_timeout, read_timeout=read_timeout,
                                      freeze_gc=freeze_gc)

    # ---- lifecycle ---------------------------------------------------------------------

    def start(self, wait: float | None = 10.0) -> None:
        """Start following; with `wait`, block until the first snapshot is loaded (else raise Unavailable)."""
        self._follower.start()
        if wait is not None and not self._follower.loaded.wait(wait):
            self._follower.stop()
            raise Unavailable(f"no snapshot from {self._follower.upstream} within {wait:.0f}s: "
                              f"{self.last_error or 'still loading'}", status=503)

    def stop(self) -> None:
        self._follower.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        await asyncio.to_thread(self.start)  # the snapshot loads in the follower's thread; the loop stays free
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await asyncio.to_thread(self.stop)

    # ---- state -------------------------------------------------------------------------

    @property
    def revision(self) -> int:
        """The revision reached (-1 before the first snapshot)."""
        return self._state.revision

    @property
    def last_error(self) -> str | None:
        """Why the upstream cannot be followed right now (None while it can)."""
        return self._follower.last_error

    def staleness(self) -> float:
        """Seconds since the upstream last said something (a change or a keep-alive)."""
        return time.monotonic() - self._last_sync

    # ---- decisions ---------------------------------------------------------------------

    def check(self, action: str, resource: str | tuple[str, str | None], *, subject: str,
              context: str | None = None, min_revision: int | None = None) -> bool:
        """May `subject` do `action` on `resource` (`"type:id"`, `(type, id)`, or a type with `context`)?

        `context` is an org id, `user:<id>` or `personal` (the subject's own account).
        Raises Unavailable when stale, or when `min_revision` is not reached in time.
        """
        state = self._state
        if min_revision is not None and state.revision < min_revision:
            state = self._wait_for(min_revision)
        return self._decide(state, action, resource, subject, context)

    def check_result(self, action: str, resource: str | tuple[str, str | None], *, subject: str,
                     context: str | None = None, min_revision: int | None = None) -> CheckResult:
        """`check` with the revision it was answered at (what `AuthzClient.check` returns)."""
        state = self._state
        if min_revision is not None and state.revision < min_revision:
            state = self._wait_for(min_revision)
        return CheckResult(self._decide(state, action, resource, subject, context), state.revision)

    async def check_async(self, action: str, resource: str | tuple[str, str | None], *, subject: str,
                          context: str | None = None, min_revision: int | None = None) -> CheckResult:
        """`check_result` for an event loop: a `min_revision` wait parks a future, not the loop."""
        state = self._state
        if min_revision is not None and state.revision < min_revision:
            state = await self._reached(min_revision)
        return CheckResult(self._decide(state, action, resource, subject, context), state.revision)

    def list_resources(self, action: str, resource_type: str, *, subject: str, context: str | None = None,
                       min_revision: int | None = None, after: str | None = None,
                       limit: int | None = None) -> list[str]:
        """The ids of `resource_type` that `subject` may `action`, in id order (after `after`, at most `limit`)."""
        state = self._state
        if min_revision is not None and state.revision < min_revision:
            state = self._wait_for(min_revision)
        self._require_fresh()
        if context == PERSONAL:
            context = personal_context(subject)
        return state.index.list_resources(subject, action, resource_type, context, after=after, limit=limit,
                                          clock=self._clock)

    def wait_for(self, revision: int, timeout: float | None = None) -> bool:
        """Block until `revision` is reached; False if `timeout` (default `min_revision_wait`) passes first."""
        limit = self.min_revision_wait if timeout is None else timeout
        with self._changed:
            return self._changed.wait_for(lambda: self._state.revision >= revision, limit)

    def _decide(self, state: _State, action: str, resource: str | tuple[str, str | None], subject: str,
                context: str | None) -> bool:
        """A freshness test, the resource's parts, and the index's few lookups: every check's one path."""
        if monotonic() - self._last_sync > self.max_staleness:
            raise self._stale()
        if resource.__class__ is tuple:
            resource_type, resource_id = resource
        else:
            resource_type, found, resource_id = resource.partition(":")  # type: ignore[union-attr]
            if not found:
                resource_id = None
        if context == PERSONAL:
            context = personal_context(subject)
        return state.index.check(subject, action, resource_type, resource_id, context, self._clock)

    def _require_fresh(self) -> None:
        if time.monotonic() - self._last_sync > self.max_staleness:
            raise self._stale()

    def _stale(self) -> Unavailable:
        if self._state.revision < 0:
            return Unavailable(f"no snapshot loaded from {self._follower.upstream} yet"
                               f"{': ' + self.last_error if self.last_error else ''}", status=503)
        return Unavailable(f"no word from {self._follower.upstream} for {self.staleness():.0f}s "
                           f"(limit {self.max_staleness:.0f}s): refusing to answer from stale data", status=503)

    def _wait_for(self, revision: int) -> _State:
        if not self.wait_for(revision):
            raise self._behind(revision)
        return self._state

    async def _reached(self, revision: int) -> _State:
        loop = asyncio.get_running_loop()
        waiter = _Waiter(revision, loop, loop.create_future())
        with self._changed:
            if self._state.revision >= revision:
                return self._state
            self._waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter.future, self.min_revision_wait)
        except TimeoutError:
            raise self._behind(revision) from None
        finally:
            with self._changed:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        return self._state

    def _behind(self, revision: int) -> Unavailable:
        return Unavailable(f"at revision {self.revision}, behind the requested {revision} after "
                           f"{self.min_revision_wait:.1f}s; retry shortly", status=503)

    # ---- the follower's sink (authz_client.decisions.feed.FeedSink) ------------------------

    def install_snapshot(self, snapshot: StreamSnapshot) -> None:
        self._publish(_State(snapshot.revision, snapshot.index))

    def apply_change(self, revision: int, ops: list[dict[str, Any]]) -> bool:
        current = self._state  # only the follower's thread publishes: no lock needed to read-modify-write
        if revision <= current.revision:
            return False
        if revision != current.revision + 1:
            raise ValueError(f"the feed skipped from revision {current.revision} to {revision}")
        self._publish(_State(revision, current.index.apply(ops)))  # ops that are not the index's are skipped
        return True

    def mark_synced(self) -> None:
        self._last_sync = time.monotonic()

    def sync_failed(self, reason: str) -> None:
        """Nothing to record: the follower keeps the reason (`last_error`), and staleness grows on its own."""

    def _publish(self, state: _State) -> None:
        with self._changed:
            self._state = state
            self._last_sync = time.monotonic()
            self._changed.notify_all()
            ready = [w for w in self._waiters if w.revision <= state.revision]
            self._waiters = [w for w in self._waiters if w.revision > state.revision]
        for waiter in ready:
            with contextlib.suppress(RuntimeError):  # that event loop has closed: nobody is waiting there any more
                waiter.loop.call_soon_threadsafe(_resolve, waiter.future)


def _resolve(future: "asyncio.Future[None]") -> None:
    if not future.done():
        future.set_result(None)
