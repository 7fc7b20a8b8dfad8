"""Reading every rule and resource into a new `DecisionIndex` at start-up, fast and compact.

Through the ORM, a million rules cost seconds and hundreds of MB of transient objects.
Here the database groups them: one row per domain with its `g` rules packed into one
string (and one row per context with its resources), read from the session's own
connection, so the rows come from the same snapshot as the revision read before them,
through a server-side cursor on PostgreSQL. The index splits the strings in C.
Rules of any other shape (the policy's few dozen, or anything authz never writes) take
the general `add_rule` path, so the result is the one `add_rule` would build.
"""

from collections.abc import Iterator
from typing import Any

import psycopg
from sqlalchemy.orm import Session

from authz_client.decisions.index import IndexEditor

FETCH_ROWS = 5_000

# `g` rules of a concrete domain (membership or a role on one resource) without an expiry,
# grouped by domain; expiring grants (v3) are few and take the general path.
_GROUPED = ("ptype = 'g' AND v0 IS NOT NULL AND v1 IS NOT NULL AND v2 IS NOT NULL AND v2 <> '*'"
            " AND (v3 IS NULL OR v3 = '')")
_OTHER_RULES = (
    "SELECT ptype, v0, v1, v2, v3 FROM casbin_rule"
    " WHERE ptype <> 'g' OR v0 IS NULL OR v1 IS NULL OR v2 IS NULL OR v2 = '*' OR (v3 IS NOT NULL AND v3 <> '')"
)
_SQL = {
    "postgres": ("string_agg({}, chr(31))", "chr(31)"),
    "sqlite": ("group_concat({}, char(31))", "char(31)"),
}


def _sql(dialect: str) -> tuple[str, str]:
    """The grouped rules and grouped resources queries, joined with GROUP_SEPARATOR (chr 31)."""
    aggregate, separator = _SQL[dialect]
    packed_rules = aggregate.format(f"v0 || {separator} || v1")
    packed_scopes = aggregate.format("type || ':' || id")
    return (
        f"SELECT v2, {packed_rules} FROM casbin_rule WHERE {_GROUPED} GROUP BY v2",
        f"SELECT context, {packed_scopes} FROM resources GROUP BY context",
    )


def load_index(session: Session, index: IndexEditor, *, is_postgres: bool) -> dict[str, int]:
    """Fill `index` with every rule and resource visible in the session's transaction; returns counts."""
    grouped_rules, grouped_resources = _sql("postgres" if is_postgres else "sqlite")
    other = 0
    for ptype, v0, v1, v2, v3 in stream_rows(session, _OTHER_RULES, is_postgres=is_postgres):
        index.add_rule((ptype, v0, v1, v2, v3) if ptype == "p" or v3 else (ptype, v0, v1, v2))
        other += 1
    rules = index.load_grouped_rules(stream_rows(session, grouped_rules, is_postgres=is_postgres))
    resources = index.load_grouped_resources(stream_rows(session, grouped_resources, is_postgres=is_postgres))
    return {"rules": rules + other, "resources": resources}


def stream_rows(session: Session, sql: str, *, is_postgres: bool) -> Iterator[tuple[Any, ...]]:
    """The rows of `sql` as tuples, FETCH_ROWS at a time, inside the session's transaction."""
    driver_connection = session.connection().connection.dbapi_connection
    assert driver_connection is not None
    if is_postgres:
        cursor = driver_connection.cursor(name="authz_snapshot")  # server-side: never all rows in memory
        assert isinstance(cursor, psycopg.ServerCursor)
        cursor.itersize = FETCH_ROWS
    else:
        cursor = driver_connection.cursor()
    try:
        cursor.execute(sql)
        while True:
            batch = cursor.fetchmany(FETCH_ROWS)
            if not batch:
                return
            yield from batch
    finally:
        cursor.close()
