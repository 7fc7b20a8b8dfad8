"""PostgreSQL LISTEN/NOTIFY on the changelog: writers announce each revision, replicas wake.

A notification only says "the changelog grew"; a replica still reads the rows themselves,
in order (DESIGN.md invariant 3). So a lost notification only delays a replica until its
next poll, and the listener never has to be perfect, only quick when it is connected.
"""

import logging
import threading
import time
from collections.abc import Callable

import psycopg
from psycopg.conninfo import make_conninfo
from sqlalchemy.engine import make_url

log = logging.getLogger("authz.listener")

CHANNEL = "authz_changelog"
NOTIFIES_WAIT = 0.05  # seconds; how quickly the thread notices stop() (tests stop one per test)
# libpq options that turn a silently dead peer into an error instead of an endless wait.
TCP_OPTIONS: dict[str, int] = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,  # ms: unacknowledged data for this long means the link is dead
}


def libpq_url(url: str) -> str:
    """The SQLAlchemy URL `postgresql+psycopg://...` as a libpq connection string."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class ChangelogListener:
    """A thread with its own connection that LISTENs and calls `on_notify` for each notification.

    When the connection drops it reconnects with exponential backoff; after every
    (re)connection it calls `on_notify` once, because notifications sent while it was not
    listening are lost.
    """

    def __init__(
        self,
        url: str,
        on_notify: Callable[[], None],
        *,
        connect_timeout: int = 5,
        initial_backoff: float = 0.1,
        max_backoff: float = 2.0,
        idle_check: float = 5.0,
    ) -> None:
        self._conninfo = libpq_url(url)
        self._on_notify = on_notify
        self._connect_timeout = connect_timeout
        self._initial_backoff = initial_backoff
        self._max_backoff = max_backoff
        self._idle_check = idle_check
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()
        self.reconnects = 0  # successful connections after the first one

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="authz-changelog-listener", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        backoff = self._initial_backoff
        ever_connected = False
        lost_logged = False
        while not self._stop.is_set():
            try:
                conninfo = make_conninfo(self._conninfo, connect_timeout=self._connect_timeout,
                                         application_name="authz-listener", **TCP_OPTIONS)
                conn = psycopg.connect(conninfo, autocommit=True)
            except psycopg.Error as exc:
                if not lost_logged:
                    log.warning("cannot connect to listen for changelog notifications: %s; retrying",
                                type(exc).__name__)
                    lost_logged = True
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            try:
                with conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.connected.set()
                    if ever_connected:
                        self.reconnects += 1
                        log.info("listening for changelog notifications again")
                    ever_connected, lost_logged, backoff = True, False, self._initial_backoff
                    self._on_notify()  # whatever was announced while we were not listening
                    self._listen(conn)
            except psycopg.Error as exc:
                if not self._stop.is_set():
                    log.warning("lost the changelog notification connection: %s; reconnecting", type(exc).__name__)
                    lost_logged = True
            except Exception:  # the thread must outlive any surprise; polling covers
                log.exception("changelog listener failed; reconnecting")
                self._stop.wait(backoff)
            finally:
                self.connected.clear()

    def _listen(self, conn: psycopg.Connection) -> None:
        """Wake the follower on every notification; ping when idle so a dead link is noticed."""
        last_heard = time.monotonic()
        while not self._stop.is_set():
            for _ in conn.notifies(timeout=NOTIFIES_WAIT):
                last_heard = time.monotonic()
                self._on_notify()
                if self._stop.is_set():
                    return
            if time.monotonic() - last_heard >= self._idle_check:
                conn.execute("SELECT 1")
                last_heard = time.monotonic()
