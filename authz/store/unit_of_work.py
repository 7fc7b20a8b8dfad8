"""One change, one transaction: domain rows, Casbin rule rows, a changelog row and audit rows.

Leave the `with` block without `commit()` and everything rolls back (DESIGN.md invariant 2).

Every write locks what it reads (invariant 5a): before it reads a precondition, a write
locks its aggregate (`lock_context`: the org row, or the personal account; `lock_resource`:
the resource row), and the unit of work refuses a rule or resource change whose
aggregate it has not locked, and a commit of a write that locked nothing. So a service
cannot forget the lock: the first test that runs it fails. On PostgreSQL (READ COMMITTED)
a statement after the lock sees everything its previous holder committed; SQLite takes
its single write lock at BEGIN (authz.store.database).
"""

import json
from collections.abc import Callable
from datetime import datetime
from types import TracebackType
from typing import Any, Self

from sqlalchemy import and_, delete, func, select, text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from authz.domain import ids
from authz.domain.errors import NotFound, Unavailable
from authz.store.database import Database
from authz.store.notifications import CHANNEL
from authz.store.rules import ALL_COLUMNS, Rule, rule_from, rule_values, rules_where
from authz.store.tables import (
    AuditEntry,
    CasbinRule,
    ChangelogEntry,
    Organization,
    Resource,
    RevisionCounter,
)

Op = dict[str, Any]
# Markers of an org's lifecycle in the changelog (no rule change of their own: the rules
# moved are remove_rule/add_rule ops beside them); the index ignores them.
ORG_STATE_OPS = frozenset({"archive_org", "restore_org", "purge_org"})
GLOBAL = "*"  # the aggregate of the policy itself and of service keys (the policy's own domain)


class UnlockedWrite(RuntimeError):
    """A programming error: a write changed an aggregate it had not locked."""


class UnitOfWork:
    """A write transaction that records its own delta for the changelog."""

    def __init__(
        self,
        database: Database,
        clock: Callable[[], datetime],
        actor: str,
        request_id: str | None,
        on_commit: Callable[[int, list[Op]], None] | None = None,
    ) -> None:
        """`on_commit(revision, delta)` runs after a commit that wrote a changelog row."""
        self._database = database
        self._on_commit = on_commit
        self._clock = clock
        self.actor = actor
        self.request_id = request_id
        self.ops: list[Op] = []
        self._audits: list[AuditEntry] = []
        self._session_cm: Any = None
        self.session: Session
        self.revision: int | None = None
        self.now = clock()
        self._locked: set[str] = set()  # contexts, resource scopes and GLOBAL locked by this transaction

    def __enter__(self) -> Self:
        self._session_cm = self._database.session()
        try:
            self.session = self._session_cm.__enter__()
            self.session.info["now"] = self.now  # grants that expire are judged at this instant
            self.session.begin()
        except OperationalError as exc:
            self._session_cm.__exit__(type(exc), exc, exc.__traceback__)
            raise Unavailable("the database is unavailable; nothing was changed") from exc
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._session_cm.__exit__(exc_type, exc, tb)

    # ---- locks ---------------------------------------------------------------------------

    def lock_context(self, context: str, *, shared: bool = False, archived: bool = False) -> Organization | None:
        """Lock a context for the rest of the transaction: its org row, or the personal account.

        Returns the org row (None for a personal context). An org that does not exist (or
        no longer does) is NotFound, and so is an archived one unless `archived` (only the
        lifecycle's own writes: restore, purge, and telling an invitation's holder why).
        `shared` (FOR SHARE) lets readers that write only an audit row run side by side
        while excluding every change of the context.
        """
        if ids.is_personal_context(context):
            if self._database.is_postgres:
                # A personal account has no row: a transaction-scoped advisory lock on its name.
                self.session.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(context, 0))))
            self._locked.add(context)
            return None
        org = self.session.scalar(
            select(Organization).where(Organization.id == context).with_for_update(read=shared)
        )
        if org is None or (org.archived_at is not None and not archived):
            raise NotFound("organization not found")
        self._locked.add(context)
        return org

    def lock_org(self, org_id: str) -> Organization:
        """Lock an organization's row (see `lock_context`); NotFound if it does not exist."""
        org = self.lock_context(org_id) if ids.is_org_id(org_id) else None
        if org is None:
            raise NotFound("organization not found")
        return org

    def lock_resource(self, resource_type: str, resource_id: str) -> Resource:
        """Lock a registered resource's row (the aggregate of its own roles); NotFound if it is gone."""
        row = self.session.scalar(
            select(Resource).where(Resource.type == resource_type, Resource.id == resource_id).with_for_update()
        )
        if row is None:
            raise NotFound("resource not found")
        self._locked.add(ids.resource_scope(resource_type, resource_id))
        return row

    def lock_global(self) -> None:
        """Lock the policy and the service keys (the revision counter row: every writer takes it at commit)."""
        self.session.execute(select(RevisionCounter.value).where(RevisionCounter.id == 1).with_for_update())
        self._locked.add(GLOBAL)

    def created(self, aggregate: str) -> None:
        """This transaction creates `aggregate` (a new org): no one else can see it to race."""
        self._locked.add(aggregate)

    def delete_resources_in(self, context: str) -> list[tuple[str, str]]:
        """Delete every resource of a locked context; returns their (type, id).

        The DELETE takes each row's lock (waiting for a concurrent change of its roles), so
        the scopes it returns are locked, and a later statement sees their roles as committed.
        """
        self._require(context)
        deleted = self.session.execute(
            delete(Resource).where(Resource.context == context).returning(Resource.type, Resource.id)
        ).all()
        for resource_type, resource_id in deleted:
            self._locked.add(ids.resource_scope(resource_type, resource_id))
            self.ops.append({"op": "remove_resource", "type": resource_type, "id": resource_id})
        return [(resource_type, resource_id) for resource_type, resource_id in deleted]

    def lock_resources_in(self, context: str) -> list[tuple[str, str]]:
        """Lock every resource row of a locked context (waiting for role changes in flight); their (type, id)."""
        self._require(context)
        rows = self.session.execute(
            select(Resource.type, Resource.id).where(Resource.context == context)
            .order_by(Resource.type, Resource.id).with_for_update()
        ).all()
        for resource_type, resource_id in rows:
            self._locked.add(ids.resource_scope(resource_type, resource_id))
        return [(resource_type, resource_id) for resource_type, resource_id in rows]

    def remove_grants_in(self, domains: list[str]) -> list[Rule]:
        """Delete every `g` rule of these locked domains in one statement; the rules, as remove_rule ops.

        One DELETE ... RETURNING instead of a statement per rule: archiving an org with
        thousands of members and shared resources stays one short transaction.
        """
        for domain in domains:
            self._require(domain)
        if not domains:
            return []
        rows = self.session.execute(
            delete(CasbinRule).where(CasbinRule.ptype == "g", CasbinRule.v2.in_(domains))
            .returning(*ALL_COLUMNS)
            .execution_options(synchronize_session=False)
        ).all()
        rules: list[Rule] = []
        for row in rows:
            rule = rule_from(row[0], row[1:])
            rules.append(rule)
            self.ops.append({"op": "remove_rule", "rule": list(rule)})
        return rules

    def _require(self, aggregate: str) -> None:
        if aggregate not in self._locked:
            raise UnlockedWrite(f"a write changed {aggregate!r} without locking it first")

    # ---- the change ---------------------------------------------------------------------

    def add_rule(self, rule: Rule) -> None:
        self._require(_aggregate_of(rule))
        self.session.add(CasbinRule(**rule_values(rule)))
        self.ops.append({"op": "add_rule", "rule": list(rule)})

    def remove_rule(self, rule: Rule) -> None:
        self._require(_aggregate_of(rule))
        values = rule_values(rule)
        conditions = [getattr(CasbinRule, column) == value for column, value in values.items() if value is not None]
        self.session.execute(delete(CasbinRule).where(and_(*conditions)))
        self.ops.append({"op": "remove_rule", "rule": list(rule)})

    def record(self, op: Op) -> None:
        """A change that is not a rule (a resource, the policy catalog) for the changelog."""
        if op["op"] == "add_resource":
            self._require(op["context"])
        elif op["op"] == "remove_resource":
            self._require(ids.resource_scope(op["type"], op["id"]))
        elif op["op"] in ORG_STATE_OPS:
            self._require(op["id"])
        else:
            self._require(GLOBAL)
        self.ops.append(op)

    def audit(
        self, action: str, *, context: str | None, target: str | None, detail: dict[str, Any] | None = None
    ) -> None:
        entry = AuditEntry(
            at=self.now,
            actor=self.actor,
            action=action,
            context=context,
            target=target,
            detail=detail or {},
            request_id=self.request_id,
        )
        self._audits.append(entry)

    def rules_where(self, ptype: str, **values: str) -> list[Rule]:
        """This transaction's view of the rules with these column values (see `authz.store.rules`)."""
        return rules_where(self.session, ptype, **values)

    def _record_revision_postgres(self) -> int:
        """The PostgreSQL form of the same rows as the ORM path: one statement (see _RECORD_REVISION)."""
        self.session.flush()  # the domain rows first, as the ORM path's autoflush does
        audits = [{"actor": e.actor, "action": e.action, "context": e.context, "target": e.target,
                   "detail": e.detail, "request_id": e.request_id} for e in self._audits]
        row = self.session.execute(_RECORD_REVISION, {
            "at": self.now, "delta": json.dumps(self.ops), "audits": json.dumps(audits),
        }).one()
        return int(row[0])

    def commit(self) -> int | None:
        """Commit everything; returns the new revision, or None when no policy data changed."""
        if not self._locked and (self.ops or self._audits or self.session.new or self.session.dirty
                                 or self.session.deleted):
            raise UnlockedWrite("a write must lock its aggregate before it reads its preconditions")
        try:
            if self.ops and self._database.is_postgres:
                self.revision = self._record_revision_postgres()
            else:
                if self.ops:
                    self.revision = self.session.scalar(
                        update(RevisionCounter)
                        .where(RevisionCounter.id == 1)
                        .values(value=RevisionCounter.value + 1)
                        .returning(RevisionCounter.value)
                    )
                    self.session.add(ChangelogEntry(revision=self.revision, created_at=self.now, delta=self.ops))
                for entry in self._audits:
                    entry.revision = self.revision
                    self.session.add(entry)
            self.session.flush()
        except OperationalError as exc:
            self.session.rollback()
            raise Unavailable("the database is unavailable; nothing was changed") from exc
        try:
            self.session.commit()
        except OperationalError as exc:
            # The connection failed during COMMIT itself: the server may or may not have
            # committed, and this process cannot know which. Say so rather than "nothing changed".
            raise Unavailable(
                "the database connection failed while committing; the change may or may not have been "
                "applied: read it back before retrying"
            ) from exc
        if self.revision is not None and self._on_commit is not None:
            self._on_commit(self.revision, self.ops)
        return self.revision


# The next revision, its changelog row, its audit rows and the replicas' notification in one
# round trip (four before): on PostgreSQL a write's own statements are most of its time.
# Data-modifying CTEs run exactly once whether or not the final SELECT reads them.
_RECORD_REVISION = text(f"""
WITH next AS (UPDATE revision_counter SET value = value + 1 WHERE id = 1 RETURNING value),
logged AS (
    INSERT INTO changelog (revision, created_at, delta) SELECT value, :at, CAST(:delta AS json) FROM next
    RETURNING revision
),
audited AS (
    INSERT INTO audit_log (at, actor, action, context, target, detail, request_id, revision)
    SELECT :at, a.actor, a.action, a.context, a.target, a.detail, a.request_id, logged.revision
    FROM logged, json_to_recordset(CAST(:audits AS json))
        AS a(actor text, action text, context text, target text, detail json, request_id text)
)
SELECT revision, pg_notify('{CHANNEL}', revision::text) FROM logged
""")


def _aggregate_of(rule: Rule) -> str:
    """The aggregate a rule belongs to: its domain (a context, a resource scope, or GLOBAL for `*`)."""
    return GLOBAL if rule[0] == "p" else rule[3]
