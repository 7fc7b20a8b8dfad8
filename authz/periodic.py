"""A daemon thread that runs one job every `interval` seconds, and at once when woken.

The changelog follower and the mail outbox sender both work this way: poll as a safety
net, react immediately to a hint (a notification, a local write).
"""

import threading
from collections.abc import Callable


class PeriodicThread:
    """Calls `job()` every `interval` seconds until stopped; `wake()` runs it now.

    `job` must handle its own errors: an exception escaping it ends the thread.
    """

    def __init__(self, name: str, interval: float, job: Callable[[], None], *, run_first: bool = False) -> None:
        self.name = name
        self.interval = interval
        self._job = job
        self._run_first = run_first
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            self._thread = None

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        if self._run_first:
            self._job()
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            self._job()
