"""The change feed: the changelog's deltas in revision order, for services that keep their own index.

Read straight from the changelog table (the database is the truth), one entry per
revision, only as far as the revisions run without a gap: a revision still becoming
visible on PostgreSQL stops the page just before it, so a consumer that passes
`next_after` back never skips one. Each op is copied field by field from a fixed list,
so nothing a later change might put into a delta (a secret, a hash) reaches the feed
unless it is listed here.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from authz.domain.errors import Forbidden, Invalid
from authz.domain.limits import MAX_STORED_INT
from authz.domain.principal import SCOPE_CHANGES_READ, Principal
from authz.services.runtime import Runtime
from authz.store.tables import ChangelogEntry

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

# The fields of each op that the feed shows; every other field is withheld.
PUBLIC_FIELDS: dict[str, tuple[str, ...]] = {
    "add_rule": ("rule",),
    "remove_rule": ("rule",),
    "add_resource": ("type", "id", "context"),
    "remove_resource": ("type", "id"),
    "policy": ("document",),
    "service_keys": ("id",),  # a key was created or revoked; never its secret
    # An org archived, restored or purged (authz.services.lifecycle); the rules it moved are
    # remove_rule/add_rule ops beside it, so a follower's index needs nothing else.
    "archive_org": ("id",),
    "restore_org": ("id",),
    "purge_org": ("id",),
}


@dataclass(frozen=True)
class Change:
    revision: int
    at: datetime
    kind: str  # "relationships" (memberships, resources, roles on resources), "policy" or "service_keys"
    ops: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {"revision": self.revision, "at": self.at.isoformat(), "kind": self.kind, "ops": self.ops}


@dataclass(frozen=True)
class ChangePage:
    changes: list[Change]
    next_after: int  # pass back as `after`; the same `after` when nothing newer was there


def require_feed_reader(principal: Principal) -> None:
    if principal.is_user or not principal.has_scope(SCOPE_CHANGES_READ):
        raise Forbidden("the change feed needs a service key with the `changes:read` scope")


def read_changes(rt: Runtime, after: int, limit: int = DEFAULT_LIMIT) -> ChangePage:
    """The changes with a revision greater than `after`, in order, without a gap, at most `limit`."""
    if isinstance(after, bool) or not isinstance(after, int) or not 0 <= after <= MAX_STORED_INT:
        raise Invalid(f"after must be a revision (an integer from 0 to {MAX_STORED_INT})", field="after")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise Invalid(f"limit must be 1-{MAX_LIMIT}", field="limit")
    with rt.database.session() as session:
        rows = session.execute(
            select(ChangelogEntry.revision, ChangelogEntry.created_at, ChangelogEntry.delta)
            .where(ChangelogEntry.revision > after)
            .order_by(ChangelogEntry.revision)
            .limit(limit)
        ).all()
    changes: list[Change] = []
    expected = after + 1
    for revision, at, delta in rows:
        if revision != expected:
            break  # a gap: this revision is not visible yet; the next read continues here
        changes.append(public_change(revision, at, delta))
        expected += 1
    return ChangePage(changes, changes[-1].revision if changes else after)


def public_change(revision: int, at: datetime, delta: list[dict[str, Any]]) -> Change:
    ops = [_public_op(op) for op in delta]
    names = {op["op"] for op in ops}
    kind = "policy" if "policy" in names else "service_keys" if "service_keys" in names else "relationships"
    return Change(revision, at, kind, ops)


def _public_op(op: dict[str, Any]) -> dict[str, Any]:
    name = str(op.get("op"))
    return {"op": name, **{field: op[field] for field in PUBLIC_FIELDS.get(name, ()) if field in op}}
