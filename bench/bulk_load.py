"""Loading a `Dataset` into a migrated database fast, with every invariant the services keep.

The core services write one org per transaction, far too slow for a million rows. This
loader writes the same rows (organizations, memberships, their `g` rules, resources,
per-resource roles) in a few large revisions, each with its changelog row (the full rule
and resource delta, so a replica that follows the changelog from revision 0 arrives at
the same state) and one audit row. The policy itself goes through the service layer
(`open_runtime` → `ensure_policy`), exactly as `authz serve` does.
PostgreSQL rows go in with COPY; SQLite rows with executemany in one transaction each.
"""

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from authz.bootstrap import open_runtime
from authz.settings import Settings
from authz.store.tables import Organization
from bench.dataset import Dataset, org_id

ROOT = Path(__file__).resolve().parent.parent
ACTOR = "cli:bench"
Row = Sequence[Any]


def bench_settings(database_url: str, **overrides: Any) -> Settings:
    """Settings of every bench process: the repository's policy and model, nothing from .env."""
    values: dict[str, Any] = {
        "env": "test",
        "database_url": database_url,
        "policy_dir": ROOT / "policies",
        "policy_model": ROOT / "authz" / "policy" / "policy_model.conf",
        "log_level": "WARNING",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@dataclass(frozen=True)
class LoadResult:
    revision: int
    revisions: int
    seconds: float


@dataclass
class _Revision:
    """The rows and changelog delta of one bulk revision."""

    organizations: Sequence[Row]
    memberships: Sequence[Row]
    rules: Sequence[Row]
    resources: Sequence[Row]
    delta: list[dict[str, Any]]
    detail: dict[str, int]


def bulk_load(database_url: str, dataset: Dataset, *, orgs_per_revision: int = 10_000) -> LoadResult:
    """Migrate, apply the policy through the services, then load `dataset` in bulk revisions."""
    started = time.perf_counter()
    runtime = open_runtime(bench_settings(database_url))
    database = runtime.database
    now = datetime.now(UTC)
    shape = dataset.shape
    by_chunk: list[list[int]] = [[] for _ in range(0, shape.orgs, orgs_per_revision)]
    for k in range(shape.resources):
        by_chunk[dataset.resource_org(k) // orgs_per_revision].append(k)
    writer = _PostgresWriter(database) if database.is_postgres else _SqliteWriter(database, now)
    revisions = 0
    try:
        for n, low in enumerate(range(0, shape.orgs, orgs_per_revision)):
            writer.write(
                _org_revision(dataset, range(low, min(low + orgs_per_revision, shape.orgs)), by_chunk[n], now), now
            )
            revisions += 1
        if shape.resource_roles:
            writer.write(_resource_role_revision(dataset), now)
            revisions += 1
        writer.finish()
        revision = writer.revision
    finally:
        writer.close()
        database.dispose()
    return LoadResult(revision, revisions, time.perf_counter() - started)


def _org_revision(dataset: Dataset, orgs: range, resources: list[int], now: datetime) -> _Revision:
    organizations, memberships, rules, rows, delta = [], [], [], [], []
    for i in orgs:
        oid = org_id(i)
        owner = dataset.owner_of(i)
        organizations.append((oid, f"Org {i}", "1 Qubit Way", None, "10115", "Berlin", "DE", owner, now, now))
    for oid, uid, role in dataset.memberships(orgs):
        memberships.append((oid, uid, f"{uid}@example.com", now))
        rule = ("g", "user:" + uid, role, oid)
        rules.append(rule)
        delta.append({"op": "add_rule", "rule": list(rule)})
    for k in resources:
        resource_type, rid, oid = dataset.resource(k)
        rows.append((resource_type, rid, oid, dataset.owner_of(dataset.resource_org(k)), now))
        delta.append({"op": "add_resource", "type": resource_type, "id": rid, "context": oid})
    detail = {"organizations": len(organizations), "memberships": len(memberships), "resources": len(rows)}
    return _Revision(organizations, memberships, rules, rows, delta, detail)


def _resource_role_revision(dataset: Dataset) -> _Revision:
    rules, delta = [], []
    for n in range(dataset.shape.resource_roles):
        resource_type, rid, uid, role = dataset.resource_role(n)
        rule = ("g", "user:" + uid, role, f"{resource_type}:{rid}")
        rules.append(rule)
        delta.append({"op": "add_rule", "rule": list(rule)})
    return _Revision([], [], rules, [], delta, {"resource_roles": len(rules)})


ORG_COLUMNS = ("id, name, billing_line1, billing_line2, billing_postal_code, billing_city, billing_country, "
               "created_by, created_at, updated_at")
RESOURCE_COLUMNS = "type, id, context, created_by, created_at"


class _PostgresWriter:
    """COPY into each table, one transaction per revision."""

    def __init__(self, database: Any) -> None:
        self.connection = database.engine.raw_connection()
        self.revision = 0

    def write(self, rev: _Revision, now: datetime) -> None:
        cur = self.connection.cursor()
        _copy(cur, f"organizations ({ORG_COLUMNS})", rev.organizations)
        _copy(cur, "memberships (org_id, user_id, email, joined_at)", rev.memberships)
        _copy(cur, "casbin_rule (ptype, v0, v1, v2)", rev.rules)
        _copy(cur, f"resources ({RESOURCE_COLUMNS})", rev.resources)
        cur.execute("UPDATE revision_counter SET value = value + 1 WHERE id = 1 RETURNING value")
        self.revision = cur.fetchone()[0]
        cur.execute(
            "INSERT INTO changelog (revision, created_at, delta) VALUES (%s, %s, %s::json)",
            (self.revision, now, orjson.dumps(rev.delta).decode()),
        )
        cur.execute(
            "INSERT INTO audit_log (at, actor, action, context, target, detail, request_id, revision)"
            " VALUES (%s, %s, 'bench.bulk_load', NULL, NULL, %s::json, NULL, %s)",
            (now, ACTOR, orjson.dumps(rev.detail).decode(), self.revision),
        )
        self.connection.commit()

    def finish(self) -> None:
        self.connection.autocommit = True
        self.connection.cursor().execute("ANALYZE")

    def close(self) -> None:
        self.connection.close()


def _copy(cur: Any, target: str, rows: Iterable[Row]) -> None:
    with cur.copy(f"COPY {target} FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


class _SqliteWriter:
    """executemany in one BEGIN IMMEDIATE transaction per revision (timestamps as SQLAlchemy stores them)."""

    def __init__(self, database: Any, now: datetime) -> None:
        self.connection = database.engine.raw_connection()
        self.revision = 0
        to_database = Organization.__table__.c.created_at.type.bind_processor(database.engine.dialect)
        assert to_database is not None, "UtcDateTime converts datetimes"
        self.stamp = to_database(now)

    def write(self, rev: _Revision, now: datetime) -> None:
        stamp = self.stamp
        cur = self.connection.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            cur.executemany(
                f"INSERT INTO organizations ({ORG_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (tuple(r[:8]) + (stamp, stamp) for r in rev.organizations),
            )
            cur.executemany(
                "INSERT INTO memberships (org_id, user_id, email, joined_at) VALUES (?,?,?,?)",
                (tuple(r[:3]) + (stamp,) for r in rev.memberships),
            )
            cur.executemany("INSERT INTO casbin_rule (ptype, v0, v1, v2) VALUES (?,?,?,?)", rev.rules)
            cur.executemany(
                f"INSERT INTO resources ({RESOURCE_COLUMNS}) VALUES (?,?,?,?,?)",
                (tuple(r[:4]) + (stamp,) for r in rev.resources),
            )
            cur.execute("UPDATE revision_counter SET value = value + 1 WHERE id = 1")
            self.revision = cur.execute("SELECT value FROM revision_counter WHERE id = 1").fetchone()[0]
            cur.execute(
                "INSERT INTO changelog (revision, created_at, delta) VALUES (?, ?, ?)",
                (self.revision, stamp, orjson.dumps(rev.delta).decode()),
            )
            cur.execute(
                "INSERT INTO audit_log (at, actor, action, context, target, detail, request_id, revision)"
                " VALUES (?, ?, 'bench.bulk_load', NULL, NULL, ?, NULL, ?)",
                (stamp, ACTOR, orjson.dumps(rev.detail).decode(), self.revision),
            )
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise

    def finish(self) -> None:
        self.connection.cursor().execute("ANALYZE")

    def close(self) -> None:
        self.connection.close()
