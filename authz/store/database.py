"""Connecting to SQLite or PostgreSQL, with the settings each needs for safe concurrent writes."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from authz.domain.errors import Unavailable
from authz.store.notifications import TCP_OPTIONS

# The database cannot be reached (or its pool is exhausted): a 503 for the caller, not a 500.
UNREACHABLE = (OperationalError, InterfaceError, PoolTimeout)


def _configure_sqlite(engine: Engine) -> None:
    """SQLite: WAL, foreign keys, and BEGIN IMMEDIATE so writers queue instead of failing.

    pysqlite's own transaction handling is turned off (isolation_level=None) so that the
    "begin" event below decides how a transaction starts: IMMEDIATE takes the write lock
    at once, which serializes writers (DESIGN.md invariant 5 on SQLite).
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA busy_timeout = 30000")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    """The engine and session factory of one database URL."""

    def __init__(self, url: str, *, echo: bool = False, connect_timeout: float = 5.0) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.is_postgres = url.startswith("postgresql")
        kwargs: dict[str, Any] = {"echo": echo, "future": True}
        if self.is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        elif self.is_postgres:
            # connect_timeout and TCP keepalives: a write fails fast instead of hanging on a dead link.
            kwargs["connect_args"] = {"connect_timeout": max(1, int(connect_timeout)), **TCP_OPTIONS}
            kwargs["pool_pre_ping"] = True
            kwargs["pool_timeout"] = 10
            kwargs["pool_size"] = 10
            kwargs["max_overflow"] = 10
        self.engine: Engine = create_engine(url, **kwargs)
        if self.is_sqlite:
            _configure_sqlite(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose transaction rolls back unless the caller commits.

        Losing the database anywhere inside (connecting, a query, the rollback) raises
        `Unavailable`, so every caller answers 503 with nothing half-written.
        """
        try:
            with self._sessions() as session:
                try:
                    yield session
                finally:
                    if session.in_transaction():
                        session.rollback()
        except UNREACHABLE as exc:
            raise Unavailable("the database is unavailable; nothing was changed, retry shortly") from exc

    def dispose(self) -> None:
        self.engine.dispose()
