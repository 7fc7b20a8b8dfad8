"""A background thread that keeps this replica following the changelog.

It polls every `interval` seconds; `wake()` (called after a local write, or by a
notification listener) makes it read at once. A failed read is recorded on the replica,
whose staleness then grows until checks fail closed.
"""

import logging
import threading

from authz.engine.replica import Replica
from authz.store.database import Database

log = logging.getLogger("authz.follower")


class Follower:
    def __init__(self, replica: Replica, database: Database, interval: float) -> None:
        self.replica = replica
        self.database = database
        self.interval = interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="authz-follower", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            self.poll_once()

    def poll_once(self) -> None:
        try:
            applied = self.replica.catch_up(self.database)
        except Exception as exc:  # noqa: BLE001 - any failure to read the database is staleness
            if self.replica.last_sync_error is None:
                log.warning("cannot read the changelog: %s", type(exc).__name__)
            self.replica.last_sync_error = f"{type(exc).__name__}: database unreachable"
            return
        if applied:
            log.debug("applied %d changelog rows, now at revision %d", applied, self.replica.revision)
