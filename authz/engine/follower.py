"""A background thread that keeps this replica following the changelog.

It reads the changelog when woken (`wake()`: after a local write, by a PostgreSQL
notification, or by a check waiting for `min_revision`) and at least every `interval`
seconds, the safety net for a lost notification. A failed read is recorded on the
replica, whose staleness then grows until checks fail closed (DESIGN.md invariant 4);
the next successful read catches up on its own.
"""

import logging

from authz.domain.errors import Unavailable
from authz.engine.replica import Replica
from authz.periodic import PeriodicThread
from authz.store.database import UNREACHABLE, Database
from authz.store.notifications import ChangelogListener

log = logging.getLogger("authz.follower")


class Follower:
    def __init__(self, replica: Replica, database: Database, interval: float, *, listen: bool = True) -> None:
        self.replica = replica
        self.database = database
        self._thread = PeriodicThread("authz-follower", interval, self.poll_once)
        self.listener: ChangelogListener | None = None
        if listen and database.is_postgres:
            self.listener = ChangelogListener(database.url, self.wake)

    def start(self) -> None:
        self._thread.start()
        if self.listener is not None:
            self.listener.start()

    def stop(self) -> None:
        if self.listener is not None:
            self.listener.stop()
        self._thread.stop()

    def wake(self) -> None:
        self._thread.wake()

    @property
    def listening(self) -> bool:
        """True while a notification connection is open (else polling alone keeps up)."""
        return self.listener is not None and self.listener.connected.is_set()

    def poll_once(self) -> None:
        was_failing = self.replica.last_sync_error is not None
        try:
            applied = self.replica.catch_up(self.database)
        except (Unavailable, *UNREACHABLE) as exc:
            if not was_failing:
                log.warning("cannot read the changelog: the database is unreachable (%s)", _cause(exc))
            self.replica.last_sync_error = "database unreachable"
            return
        except Exception:  # a bad row must not kill the thread; staleness will show it
            if not was_failing:
                log.exception("cannot apply the changelog after revision %d", self.replica.revision)
            self.replica.last_sync_error = "changelog apply failed"
            return
        if was_failing:
            log.info("reading the changelog again; now at revision %d", self.replica.revision,
                     extra={"applied": applied})
        elif applied:
            log.debug("applied %d changelog rows, now at revision %d", applied, self.replica.revision)


def _cause(exc: BaseException) -> str:
    root = exc.__cause__ or exc
    return type(root).__name__
