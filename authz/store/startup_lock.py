"""One replica at a time migrates the schema and seeds the policy, however many start together.

N replicas started at once on an empty PostgreSQL database would otherwise race in
Alembic's CREATE TABLEs and in the first policy apply. A session-level advisory lock,
held on a connection of its own, makes them take turns; on SQLite there are no replicas
to coordinate (and SQLite serializes writers anyway), so it does nothing.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from authz.store.notifications import libpq_url

STARTUP_LOCK_KEY = 0x617574687A  # "authz"
LOCK_WAIT = "120s"  # a start-up never waits for ever on a stuck peer


@contextmanager
def startup_lock(url: str) -> Iterator[None]:
    """Hold the cluster-wide start-up lock for the block (PostgreSQL only)."""
    if not url.startswith("postgresql"):
        yield
        return
    with psycopg.connect(libpq_url(url), autocommit=True, connect_timeout=10, application_name="authz-startup") as conn:
        conn.execute(f"SET lock_timeout = '{LOCK_WAIT}'")
        conn.execute("SELECT pg_advisory_lock(%s)", (STARTUP_LOCK_KEY,))
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (STARTUP_LOCK_KEY,))
