"""This process's copy of the policy data, at a known revision, following the changelog.

At start `load` reads every rule, resource and service key at one consistent snapshot;
afterwards `catch_up` applies each newer changelog row in order (DESIGN.md invariant 3).
Decisions read `index` without locks; updates are serialized by `_apply_lock`.
"""

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from authz.engine.index import DecisionIndex
from authz.engine.snapshot import bulk_allocation, load_index
from authz.policy.document import PolicyDocument
from authz.store.database import Database
from authz.store.tables import ChangelogEntry, PolicyState, RevisionCounter, ServiceKey

log = logging.getLogger("authz.replica")

CATCH_UP_BATCH = 1000
GAP_RELOAD_AFTER = 10.0  # seconds a missing revision may stay missing before a full reload


@dataclass(frozen=True)
class ServiceKeyRecord:
    id: str
    name: str
    secret_hash: str
    scopes: frozenset[str]


class Replica:
    """The decision index, the policy catalog and the service keys at `revision`."""

    def __init__(self) -> None:
        self.index = DecisionIndex()
        self.policy: PolicyDocument | None = None
        self.service_keys: dict[str, ServiceKeyRecord] = {}
        self.revision = -1  # not loaded
        self.last_sync = 0.0  # time.monotonic() of the last successful read of the database
        self.last_sync_error: str | None = None
        self._apply_lock = threading.Lock()
        self._reloading = threading.Lock()
        self._gap: tuple[int, float] | None = None  # (missing revision, monotonic time first seen)
        self.gap_reload_after = GAP_RELOAD_AFTER
        self._advanced = threading.Condition()

    def staleness(self) -> float:
        """Seconds since this replica last read the changelog successfully."""
        return time.monotonic() - self.last_sync

    # ---- reading the database -----------------------------------------------------------

    def load(self, database: Database) -> None:
        """Read everything at one snapshot; replaces the current state.

        Rules and resources come grouped per domain straight from the driver into the
        index's bulk loaders (1M memberships load in seconds; see authz.engine.snapshot).
        """
        index = DecisionIndex()
        with database.session() as session, bulk_allocation():
            if database.is_postgres:
                session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            revision = session.scalar(select(RevisionCounter.value).where(RevisionCounter.id == 1)) or 0
            policy = _read_policy(session)
            load_index(session, index, is_postgres=database.is_postgres)
            keys = _read_service_keys(session)
        with self._apply_lock:
            self.index, self.policy, self.service_keys = index, policy, keys
            self._advance(revision)

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
                    rows = session.execute(
                        select(ChangelogEntry.revision, ChangelogEntry.delta)
                        .where(ChangelogEntry.revision > self.revision)
                        .order_by(ChangelogEntry.revision)
                        .limit(CATCH_UP_BATCH)
                    ).all()
                    for revision, delta in rows:
                        if revision != self.revision + 1:
                            missing = (self.revision + 1, revision)
                            break
                        self._apply(session, delta)
                        self._advance(revision)
                        applied += 1
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
            log.info("changelog gap at revision %d filled; now at revision %d", self._gap[0], self.revision)
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
            if self.revision != revision - 1:
                return False
            self._apply(None, delta)
            self._advance(revision)
        return True

    def _apply(self, session: Session | None, delta: list[dict[str, Any]]) -> None:
        for op in delta:
            kind = op["op"]
            if kind == "add_rule":
                self.index.add_rule(tuple(op["rule"]))
            elif kind == "remove_rule":
                self.index.remove_rule(tuple(op["rule"]))
            elif kind == "add_resource":
                self.index.add_resource(op["type"], op["id"], op["context"])
            elif kind == "remove_resource":
                self.index.remove_resource(op["type"], op["id"])
            elif kind == "policy":
                self.policy = PolicyDocument.from_json(op["document"])
            elif kind == "service_keys":
                assert session is not None, "service-key changes are read from their table"
                self.service_keys = _read_service_keys(session)

    def _advance(self, revision: int) -> None:
        with self._advanced:
            self.revision = revision
            self.last_sync = time.monotonic()
            self._advanced.notify_all()

    # ---- waiting ------------------------------------------------------------------------

    def wait_for(self, revision: int, timeout: float) -> bool:
        """Block until this replica has applied `revision`; False if `timeout` passes first."""
        deadline = time.monotonic() + timeout
        with self._advanced:
            while self.revision < revision:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._advanced.wait(remaining)
        return True


def _read_policy(session: Session) -> PolicyDocument | None:
    document = session.scalar(select(PolicyState.document).where(PolicyState.id == 1))
    return PolicyDocument.from_json(document) if document is not None else None


def _read_service_keys(session: Session) -> dict[str, ServiceKeyRecord]:
    rows = session.scalars(select(ServiceKey).where(ServiceKey.revoked_at.is_(None)))
    return {
        row.id: ServiceKeyRecord(row.id, row.name, row.secret_hash, frozenset(row.scopes.split()))
        for row in rows
    }
