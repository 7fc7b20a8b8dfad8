"""roles are data: the role a personal account's holder has is a policy rule, not "owner" in code

Before, the Casbin matcher and the compiled index gave every user the role "owner" in their
own personal account, whatever the policy said. Now the policy names that role
(`context_owner` in roles.yaml) and writes it as the rule `g, account-holder, <role>, *`,
which the matcher asks for. A database that already holds a policy gets exactly the old
meaning: the rule for "owner" and `context_owner: owner` in the stored document, as one
revision (changelog row, audit row and, on PostgreSQL, the replicas' notification), so
replicas and sidecars following the changelog apply it like any policy change. The next
`authz policy apply` replaces it with whatever roles.yaml names.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

import authz.store.tables

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

ACCOUNT_HOLDER = "account-holder"  # authz.domain.ids.ACCOUNT_HOLDER, as of this revision
OLD_OWNER = "owner"  # the role the code gave a personal account's holder before
CHANNEL = "authz_changelog"  # authz.store.notifications.CHANNEL

casbin_rule = sa.table("casbin_rule", sa.column("ptype", sa.String), sa.column("v0", sa.String),
                       sa.column("v1", sa.String), sa.column("v2", sa.String), sa.column("v3", sa.String))
policy_state = sa.table("policy_state", sa.column("id", sa.Integer), sa.column("document", sa.JSON))
revision_counter = sa.table("revision_counter", sa.column("id", sa.Integer), sa.column("value", sa.BigInteger))
changelog = sa.table("changelog", sa.column("revision", sa.BigInteger),
                     sa.column("created_at", authz.store.tables.UtcDateTime(timezone=True)),
                     sa.column("delta", sa.JSON))
audit_log = sa.table("audit_log", sa.column("at", authz.store.tables.UtcDateTime(timezone=True)),
                     sa.column("actor", sa.String), sa.column("action", sa.String), sa.column("context", sa.String),
                     sa.column("target", sa.String), sa.column("detail", sa.JSON), sa.column("request_id", sa.String),
                     sa.column("revision", sa.BigInteger))


def _holder_rules(bind: sa.Connection) -> list[tuple[str, ...]]:
    rows = bind.execute(sa.select(casbin_rule.c.ptype, casbin_rule.c.v0, casbin_rule.c.v1, casbin_rule.c.v2).where(
        casbin_rule.c.ptype == "g", casbin_rule.c.v0 == ACCOUNT_HOLDER, casbin_rule.c.v2 == "*"))
    return [tuple(row) for row in rows]


def _record(bind: sa.Connection, ops: list[dict[str, Any]], detail: dict[str, Any]) -> None:
    """One revision for `ops`, as the unit of work writes it: counter, changelog row, audit row, notification."""
    now = datetime.now(UTC)
    number = bind.execute(sa.update(revision_counter).where(revision_counter.c.id == 1)
                          .values(value=revision_counter.c.value + 1).returning(revision_counter.c.value)).scalar_one()
    bind.execute(sa.insert(changelog).values(revision=number, created_at=now, delta=ops))
    bind.execute(sa.insert(audit_log).values(at=now, actor="cli:migration-0005", action="policy.migrate",
                                             context=None, target="policy", detail=detail, request_id=None,
                                             revision=number))
    if bind.dialect.name == "postgresql":
        bind.execute(sa.text("SELECT pg_notify(:channel, :revision)"), {"channel": CHANNEL, "revision": str(number)})


def upgrade() -> None:
    bind = op.get_bind()
    document = bind.execute(sa.select(policy_state.c.document).where(policy_state.c.id == 1)).scalar()
    if document is None:
        return  # no policy yet: the first start applies policies/, which names its context owner
    if isinstance(document, str):
        document = json.loads(document)
    ops: list[dict[str, Any]] = []
    added: list[list[str]] = []
    if not _holder_rules(bind):
        rule = ["g", ACCOUNT_HOLDER, OLD_OWNER, "*"]
        bind.execute(sa.insert(casbin_rule).values(ptype="g", v0=ACCOUNT_HOLDER, v1=OLD_OWNER, v2="*"))
        ops.append({"op": "add_rule", "rule": rule})
        added.append(rule)
    if "context_owner" not in document:
        document = {"context_owner": OLD_OWNER, **document}
        bind.execute(sa.update(policy_state).where(policy_state.c.id == 1).values(document=document))
        ops.append({"op": "policy", "document": document})
    if ops:
        _record(bind, ops, {"added": added, "removed": [],
                            "why": "personal accounts act as the policy's context_owner, written as a rule"})


def downgrade() -> None:
    """The older code hard-codes "owner" and ignores the rule and the key: remove the rule only."""
    bind = op.get_bind()
    bind.execute(sa.delete(casbin_rule).where(casbin_rule.c.ptype == "g", casbin_rule.c.v0 == ACCOUNT_HOLDER,
                                              casbin_rule.c.v2 == "*"))
