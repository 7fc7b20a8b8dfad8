"""A PostgreSQL database of the bench's own on 127.0.0.1:5432 (user postgres, trust), dropped afterwards."""

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

SERVER = os.environ.get("AUTHZ_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


@contextmanager
def postgres_database() -> Iterator[str | None]:
    """The SQLAlchemy URL of a new database, or None when no server answers."""
    name = f"authz_bench_{os.getpid()}_{secrets.token_hex(3)}"
    try:
        with psycopg.connect(SERVER, autocommit=True, connect_timeout=3) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError:
        yield None
        return
    base = SERVER.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(SERVER, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
