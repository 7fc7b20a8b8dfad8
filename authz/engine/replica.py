"""This process's copy of the policy data, at a known revision, following the changelog.

At start `load` reads every rule, resource and service key at one consistent snapshot;
afterwards `catch_up` applies each newer changelog row in order (DESIGN.md invariant 3).

The state is published as one immutable `Snapshot` (revision, index, policy, service
keys), replaced by a single reference assignment (invariant 4). A request reads
`replica.snapshot` once and answers everything from it, so a decision, its revision and a
listing never mix two revisions. Changes are applied copy-on-write (`IndexEditor`) under
`_apply_lock`; readers take no lock.

Waiting for a revision costs no thread: `reached()` parks an asyncio future that the
publishing thread resolves through the waiter's own event loop.
"""

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from authz.engine.snapshot import load_index
from authz.policy.document import PolicyDocument
from authz.store.database import Database
from authz.store.tables import ChangelogEntry, PolicyState, RevisionCounter, ServiceKey
from authz_client.decisions.index import Clock, DecisionIndex, IndexEditor
from authz_client.decisions.stream import bulk_allocation

log = logging.getLogger("authz.replica")

CATCH_UP_BATCH = 1000
GAP_RELOAD_AFTER = 10.0  # seconds a missing revision may stay missing before a full reload


@dataclass(frozen=True)
class ServiceKeyRecord:
    id: str
    name: str
    secret_hash: str
    scopes: frozenset[str]


@dataclass(frozen=True)
class Snapshot:
    """Everything a decision needs, at one revision. Never changed once published."""

    revision: int
    index: DecisionIndex
    policy: PolicyDocument | None
    service_keys: Mapping[str, ServiceKeyRecord] = field(default_factory=dict)
    clock: Clock = time.time  # "now" of the decisions made from it (grants expire): the replica's clock


@dataclass
class _Waiter:
    revision: int
    loop: asyncio.AbstractEventLoop
    future: "asyncio.Future[Snapshot]"


class Replica:
    """The published snapshot of this process, and the machinery that advances it."""

    def __init__(self, clock: Clock = time.time) -> None:
        self.clock = clock
        self.snapshot = Snapshot(-1, DecisionIndex(), None, clock=clock)  # revision -1: not loaded
        self.last_sync = 0.0  # time.monotonic() of the last successful read of the database
        self.last_sync_error: str | None = None
        self._apply_lock = threading.Lock()
        self._reloading = threading.Lock()
        self._gap: tuple[int, float] | None = None  # (missing revision, monotonic time first seen)
        self.gap_reload_after = GAP_RELOAD_AFTER
        self._waiters: list[_Waiter] = []
        self._waiters_lock = threading.Lock()

    @property
    def revision(self) -> int:
        """The published revision (for reports; a request reads `snapshot` once instead)."""
        return self.snapshot.revision

    def staleness(self) -> float:
        """Seconds since this replica last read the changelog successfully."""
        return time.monotonic() - self.last_sync

    # ---- reading the database -----------------------------------------------------------

    def load(self, database: Database) -> None:
        """Read everything at one snapshot; replaces the current state.

        Rules and resources come grouped per domain straight from the driver into the
        index's bulk loaders (1M memberships load in seconds; see authz.engine.snapshot).
        """
        editor = DecisionIndex.build()
        with database.session() as session, bulk_allocation():
            if database.is_postgres:
                session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            revision = session.scalar(select(RevisionCounter.value).where(RevisionCounter.id == 1)) or 0
            policy = _read_policy(session)
            load_index(session, editor, is_postgres=database.is_postgres)
            keys = _read_service_keys(session)
            index = editor.finish()
        with self._apply_lock:
            self._publish(Snapshot(revision, index, policy, keys, clock=self.clock), synced=True)

    def catch_up(self, database: Database) -> int:
        """Apply every changelog row newer than `revision`, in order; returns how many.

        A missing revision (a gap) stops the catch-up just before it: the next call reads
        the missing rows again. Revisions commit in order (the counter row serializes
        writers), so a gap can only be a row still becoming visible; one that stays
        missing for `gap_reload_after` seconds is logged and the state reloaded at a
        consistent snapshot, since a change that never appears cannot be applied.
        """
        applied = 0
        reload = False
        with self._apply_lock:
            while True:
                missing: tuple[int, int] | None = None  # (expected revision, next one found)
                with database.session() as session:
                    current = self.snapshot
                    rows = session.execute(
                        select(ChangelogEntry.revision, ChangelogEntry.delta)
                        .where(ChangelogEntry.revision > current.revision)
                        .order_by(ChangelogEntry.revision)
                        .limit(CATCH_UP_BATCH)
                    ).all()
                    changes = _Changes(current)
                    for revision, delta in rows:
                        if revision != changes.revision + 1:
                            missing = (changes.revision + 1, revision)
                            break
                        changes.apply(revision, delta, lambda: _read_service_keys(session))
                        applied += 1
                    if changes.revision != current.revision:
                        self._publish(changes.finish())
                self.last_sync_error = None
                if missing is not None:
                    reload = self._gap_seen(*missing)
                    break
                self._gap_closed()
                self.last_sync = time.monotonic()  # at the head of the changelog as of this read
                if len(rows) < CATCH_UP_BATCH:
                    return applied
        if reload:
            self._reload_after_gap(database)
        return applied

    # ---- following the change feed instead (the sidecar: authz.sidecar) -------------------

    def install(self, snapshot: Snapshot) -> None:
        """Publish a whole snapshot loaded from elsewhere (GET /v1/snapshot); replaces the state."""
        with self._apply_lock:
            self._publish(replace(snapshot, clock=self.clock), synced=True)

    def apply_feed(self, revision: int, ops: list[dict[str, Any]],
                   read_service_keys: Callable[[], Mapping[str, ServiceKeyRecord]]) -> bool:
        """Apply one change of the feed if it is the next revision (an older one is skipped).

        The feed withholds service-key hashes, so a service-key change calls
        `read_service_keys` (the upstream's current keys). Returns whether it was applied.
        """
        with self._apply_lock:
            current = self.snapshot
            if revision <= current.revision:
                return False
            if revision != current.revision + 1:
                raise ValueError(f"the feed skipped from revision {current.revision} to {revision}")
            changes = _Changes(current)
            changes.apply(revision, ops, read_service_keys)
            self._publish(changes.finish(), synced=True)
        return True

    def mark_synced(self) -> None:
        """The source confirmed there is nothing newer (a feed keep-alive): staleness restarts."""
        self.last_sync = time.monotonic()
        self.last_sync_error = None

    def _gap_seen(self, expected: int, found: int) -> bool:
        """Remember when `expected` went missing; True once it has been missing too long."""
        now = time.monotonic()
        if self._gap is None or self._gap[0] != expected:
            self._gap = (expected, now)
            log.warning("changelog gap: revision %d not visible yet (next is %d); reading it again", expected, found)
            return False
        missing_for = now - self._gap[1]
        if missing_for < self.gap_reload_after:
            return False
        log.error("changelog gap: revision %d still missing after %.1fs; reloading the whole state",
                  expected, missing_for)
        return True

    def _gap_closed(self) -> None:
        if self._gap is not None:
            log.info("changelog gap at revision %d filled; now at revision %d", self._gap[0], self.snapshot.revision)
            self._gap = None

    def _reload_after_gap(self, database: Database) -> None:
        """The last resort for a revision that never appears: a full load at one snapshot."""
        if not self._reloading.acquire(blocking=False):
            return  # another thread is already reloading
        try:
            self.load(database)
            self._gap = None
        finally:
            self._reloading.release()

    def apply_committed(self, revision: int, delta: list[dict[str, Any]]) -> bool:
        """Apply a change this process has just committed, without reading it back.

        Only when it is the very next revision (otherwise rows of other writers come
        first, in order: the caller then catches up from the changelog), and only when
        the delta carries all it needs (a service-key change is re-read from its table).
        Returns whether it was applied.
        """
        if any(op["op"] == "service_keys" for op in delta):
            return False
        with self._apply_lock:
            current = self.snapshot
            if current.revision != revision - 1:
                return False
            changes = _Changes(current)
            changes.apply(revision, delta, None)
            self._publish(changes.finish(), synced=False)
        return True

    def _publish(self, snapshot: Snapshot, *, synced: bool = True) -> None:
        """Make `snapshot` the one every new request reads; wake the waiters it satisfies.

        `synced`: it was read from the database (so staleness restarts from now).
        """
        self.snapshot = snapshot
        if synced:
            self.last_sync = time.monotonic()
        with self._waiters_lock:
            ready = [w for w in self._waiters if w.revision <= snapshot.revision]
            if ready:
                self._waiters = [w for w in self._waiters if w.revision > snapshot.revision]
        for waiter in ready:
            waiter.loop.call_soon_threadsafe(_resolve, waiter.future, snapshot)

    # ---- waiting ------------------------------------------------------------------------

    async def reached(self, revision: int, timeout: float) -> Snapshot | None:
        """The first published snapshot at `revision` or later; None if `timeout` passes first.

        Awaiting parks a future on the caller's event loop: no thread waits.
        """
        current = self.snapshot
        if current.revision >= revision:
            return current
        loop = asyncio.get_running_loop()
        waiter = _Waiter(revision, loop, loop.create_future())
        with self._waiters_lock:
            self._waiters.append(waiter)
        current = self.snapshot  # published between the first look and the registration?
        if current.revision >= revision:
            self._forget(waiter)
            return current
        try:
            return await asyncio.wait_for(waiter.future, timeout)
        except TimeoutError:
            return None
        finally:
            self._forget(waiter)

    def waiting(self) -> int:
        """How many requests are waiting for a revision (a gauge)."""
        return len(self._waiters)

    def _forget(self, waiter: _Waiter) -> None:
        with self._waiters_lock:
            if waiter in self._waiters:
                self._waiters.remove(waiter)


def _resolve(future: "asyncio.Future[Snapshot]", snapshot: Snapshot) -> None:
    if not future.done():
        future.set_result(snapshot)


class _Changes:
    """Changelog rows applied on top of a snapshot, published together as the next one."""

    def __init__(self, base: Snapshot) -> None:
        self._base = base
        self.revision = base.revision
        self._editor: IndexEditor | None = None
        self._policy = base.policy
        self._service_keys = base.service_keys

    def apply(self, revision: int, delta: list[dict[str, Any]],
              read_service_keys: Callable[[], Mapping[str, ServiceKeyRecord]] | None) -> None:
        for op in delta:
            kind = op["op"]
            if kind == "policy":
                self._policy = PolicyDocument.from_json(op["document"])
            elif kind == "service_keys":
                assert read_service_keys is not None, "service-key changes are read from their source"
                self._service_keys = read_service_keys()
        if self._editor is None:
            self._editor = self._base.index.edit()
        self._editor.apply(delta)
        self.revision = revision

    def finish(self) -> Snapshot:
        index = self._editor.finish() if self._editor is not None else self._base.index
        return replace(self._base, revision=self.revision, index=index, policy=self._policy,
                       service_keys=self._service_keys)


def _read_policy(session: Session) -> PolicyDocument | None:
    document = session.scalar(select(PolicyState.document).where(PolicyState.id == 1))
    return PolicyDocument.from_json(document) if document is not None else None


def _read_service_keys(session: Session) -> dict[str, ServiceKeyRecord]:
    rows = session.scalars(select(ServiceKey).where(ServiceKey.revoked_at.is_(None)))
    return {
        row.id: ServiceKeyRecord(row.id, row.name, row.secret_hash, frozenset(row.scopes.split()))
        for row in rows
    }
