"""One change, one transaction: domain rows, Casbin rule rows, a changelog row and audit rows.

Leave the `with` block without `commit()` and everything rolls back (DESIGN.md invariant 2).
"""

from collections.abc import Callable
from datetime import datetime
from types import TracebackType
from typing import Any, Self

from sqlalchemy import and_, delete, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from authz.domain.errors import Unavailable
from authz.store.database import Database
from authz.store.notifications import notify_revision
from authz.store.tables import AuditEntry, CasbinRule, ChangelogEntry, RevisionCounter

Rule = tuple[str, ...]
Op = dict[str, Any]
RULE_COLUMNS = ("v0", "v1", "v2", "v3", "v4", "v5")


def rule_values(rule: Rule) -> dict[str, str | None]:
    values = list(rule[1:]) + [None] * (len(RULE_COLUMNS) - len(rule) + 1)
    return {"ptype": rule[0], **dict(zip(RULE_COLUMNS, values, strict=True))}


def rule_of(row: CasbinRule) -> Rule:
    values = [row.v0, row.v1, row.v2, row.v3, row.v4, row.v5]
    while values and values[-1] is None:
        values.pop()
    return (row.ptype, *(v or "" for v in values))


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

    def __enter__(self) -> Self:
        self._session_cm = self._database.session()
        try:
            self.session = self._session_cm.__enter__()
            self.session.begin()
        except OperationalError as exc:
            self._session_cm.__exit__(type(exc), exc, exc.__traceback__)
            raise Unavailable("the database is unavailable; nothing was changed") from exc
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._session_cm.__exit__(exc_type, exc, tb)

    # ---- the change ---------------------------------------------------------------------

    def add_rule(self, rule: Rule) -> None:
        self.session.add(CasbinRule(**rule_values(rule)))
        self.ops.append({"op": "add_rule", "rule": list(rule)})

    def remove_rule(self, rule: Rule) -> None:
        values = rule_values(rule)
        conditions = [getattr(CasbinRule, column) == value for column, value in values.items() if value is not None]
        self.session.execute(delete(CasbinRule).where(and_(*conditions)))
        self.ops.append({"op": "remove_rule", "rule": list(rule)})

    def record(self, op: Op) -> None:
        """A change that is not a rule (a resource, the policy catalog) for the changelog."""
        self.ops.append(op)

    def audit(self, action: str, *, context: str | None, target: str | None, detail: dict[str, Any] | None = None) -> None:
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
        conditions = [CasbinRule.ptype == ptype] + [getattr(CasbinRule, k) == v for k, v in values.items()]
        return [rule_of(row) for row in self.session.scalars(select(CasbinRule).where(*conditions))]

    def commit(self) -> int | None:
        """Commit everything; returns the new revision, or None when no policy data changed."""
        try:
            if self.ops:
                self.revision = self.session.scalar(
                    update(RevisionCounter)
                    .where(RevisionCounter.id == 1)
                    .values(value=RevisionCounter.value + 1)
                    .returning(RevisionCounter.value)
                )
                self.session.add(ChangelogEntry(revision=self.revision, created_at=self.now, delta=self.ops))
                if self._database.is_postgres:
                    notify_revision(self.session, self.revision)  # delivered to replicas at commit
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
