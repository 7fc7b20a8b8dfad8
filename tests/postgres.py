"""Databases of the tests' own on the PostgreSQL server of AUTHZ_TEST_DATABASE_URL.

Each caller gets a new database with a unique name, so parallel test runs never collide,
and drops it afterwards. Never touches the server itself (no restarts, no settings).
"""

import functools
import os
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, Table, insert, select, text
from sqlalchemy.engine import make_url

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


class PostgresUnavailable(Exception):
    """No PostgreSQL server answers at the configured address."""


def server_url() -> str:
    return os.environ.get("AUTHZ_TEST_DATABASE_URL", DEFAULT_PG)


def postgres_required() -> bool:
    """In CI (or when asked) PostgreSQL tests must run: an unreachable server fails them."""
    return os.environ.get("CI", "").lower() == "true" or os.environ.get("AUTHZ_REQUIRE_POSTGRES") == "1"


def _admin(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def create_database(prefix: str) -> str:
    """A new, empty database; returns its SQLAlchemy URL."""
    base = server_url()
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"
    try:
        with psycopg.connect(_admin(base), autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        raise PostgresUnavailable(f"PostgreSQL unreachable at {base}: {exc}") from exc
    return make_url(base).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    name = make_url(url).database
    with psycopg.connect(_admin(server_url()), autocommit=True, connect_timeout=3) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def own_database(prefix: str) -> Iterator[str]:
    """A new database for a fixture, dropped afterwards. Without a server the test is skipped, or
    fails where PostgreSQL is required (CI=true, AUTHZ_REQUIRE_POSTGRES=1)."""
    try:
        url = create_database(prefix)
    except PostgresUnavailable as exc:
        if postgres_required():
            pytest.fail(f"PostgreSQL is required (CI) but {exc}")
        pytest.skip(f"{exc}; set AUTHZ_TEST_DATABASE_URL to run these tests")
    try:
        yield url
    finally:
        drop_database(url)



@dataclass(frozen=True)
class Contents:
    """Every row of `tables` and the position of every sequence of one database, to be put back.

    The PostgreSQL tests share one database per session: each starts from the contents captured
    once (migrated, the shipped policy applied), which `restore` puts back by deleting what the
    previous test wrote and inserting the captured rows again. Deleting a test's few rows takes
    milliseconds where TRUNCATE of every table took 0.2-0.4 s, and no test applies the policy again.
    The deletes and the sequences' positions go as one script, in one round trip: a statement each
    (about 20) took 6 ms of CPU per test, the script 3 ms.
    """

    tables: tuple[Table, ...]
    rows: dict[str, list[dict[str, Any]]]
    sequences: dict[str, tuple[int, bool]]  # name -> (last_value, is_called), as setval() takes them

    @classmethod
    def capture(cls, engine: Engine, tables: Sequence[Table]) -> "Contents":
        with engine.connect() as conn:
            rows = {table.name: [dict(row) for row in conn.execute(select(table)).mappings()] for table in tables}
            names = conn.execute(text("SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'")).scalars()
            sequences = {}
            for name in names.all():
                value, called = conn.execute(text(f'SELECT last_value, is_called FROM "{name}"')).one()
                sequences[name] = (int(value), bool(called))
        return cls(tuple(tables), rows, sequences)

    def restore(self, engine: Engine) -> None:
        with engine.begin() as conn:
            conn.exec_driver_sql(self._reset_script)
            for table in self.tables:
                if self.rows[table.name]:
                    conn.execute(insert(table), self.rows[table.name])

    @functools.cached_property
    def _reset_script(self) -> str:
        """Every table emptied, children first (no foreign key refuses a delete), and every sequence
        back at its captured position. The names are the schema's own, quoted; the values are ints."""
        deletes = [f'DELETE FROM "{table.name}"' for table in reversed(self.tables)]
        positions = [f"SELECT setval('\"{name}\"', {value:d}, {'true' if called else 'false'})"
                     for name, (value, called) in self.sequences.items()]
        return "; ".join(deletes + positions)
