"""This process's copy of the policy data, at a known revision, following the changelog.

At start `load` reads every rule, resource and service key at one consistent snapshot;
afterwards `catch_up` applies each newer changelog row in order (DESIGN.md invariant 3).
Decisions read `index` without locks; updates are serialized by `_apply_lock`.
"""

import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from authz.engine.index import DecisionIndex
from authz.policy.document import PolicyDocument
from authz.store.database import Database
from authz.store.tables import CasbinRule, ChangelogEntry, PolicyState, Resource, RevisionCounter, ServiceKey

CATCH_UP_BATCH = 1000


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
        self._advanced = threading.Condition()

    @property
    def loaded(self) -> bool:
        return self.revision >= 0

    def staleness(self) -> float:
        """Seconds since this replica last read the changelog successfully."""
        return time.monotonic() - self.last_sync

    # ---- reading the database -----------------------------------------------------------

    def load(self, database: Database) -> None:
        """Read everything at one snapshot; replaces the current state."""
        index = DecisionIndex()
        with database.session() as session:
            if database.is_postgres:
                session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            revision = session.scalar(select(RevisionCounter.value).where(RevisionCounter.id == 1)) or 0
            policy = _read_policy(session)
            rows = session.execute(
                select(CasbinRule.ptype, CasbinRule.v0, CasbinRule.v1, CasbinRule.v2, CasbinRule.v3)
            )
            for ptype, v0, v1, v2, v3 in rows:
                rule = (ptype, v0, v1, v2, v3) if ptype == "p" else (ptype, v0, v1, v2)
                index.add_rule(rule)
            for resource_type, resource_id, context in session.execute(
                select(Resource.type, Resource.id, Resource.context)
            ):
                index.add_resource(resource_type, resource_id, context)
            keys = _read_service_keys(session)
        with self._apply_lock:
            self.index, self.policy, self.service_keys = index, policy, keys
            self._advance(revision)

    def catch_up(self, database: Database) -> int:
        """Apply every changelog row newer than `revision`, in order; returns how many."""
        applied = 0
        with self._apply_lock:
            while True:
                gap = False
                with database.session() as session:
                    rows = session.execute(
                        select(ChangelogEntry.revision, ChangelogEntry.delta)
                        .where(ChangelogEntry.revision > self.revision)
                        .order_by(ChangelogEntry.revision)
                        .limit(CATCH_UP_BATCH)
                    ).all()
                    for revision, delta in rows:
                        if revision != self.revision + 1:
                            # A gap: revisions commit in order (the counter row serializes
                            # writers), so a missing row is still in flight. Stop before it;
                            # the next catch-up reads it.
                            gap = True
                            break
                        self._apply(session, delta)
                        self._advance(revision)
                        applied += 1
                self.last_sync = time.monotonic()
                self.last_sync_error = None
                if gap or len(rows) < CATCH_UP_BATCH:
                    return applied

    def _apply(self, session: Session, delta: list[dict[str, Any]]) -> None:
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
