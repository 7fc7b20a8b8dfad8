"""Databases of the tests' own on the PostgreSQL server of AUTHZ_TEST_DATABASE_URL.

Each caller gets a new database with a unique name, so parallel test runs never collide,
and drops it afterwards. Never touches the server itself (no restarts, no settings).
"""

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
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
