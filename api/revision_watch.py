"""Async waiting for this replica's next revision, without a thread per waiter.

Long-polls and event streams of the change feed wait here. One asyncio task per app
samples the replica's revision while anyone waits (every `interval` seconds, a float
comparison) and wakes every waiter at once when it moves; with no waiter it stops. So
a thousand idle feed connections cost one sleeping task, not a thousand threads.
"""

import asyncio
from collections.abc import Callable

DEFAULT_INTERVAL = 0.02  # seconds: a change reaches waiting consumers within ~20 ms of the replica


class RevisionWatch:
    def __init__(self, revision: Callable[[], int], interval: float = DEFAULT_INTERVAL) -> None:
        self._revision = revision
        self._interval = interval
        self._event: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._waiters = 0

    async def wait_beyond(self, revision: int, timeout: float) -> bool:
        """Until this replica is past `revision` (True) or `timeout` seconds pass (False)."""
        if self._revision() > revision:
            return True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._waiters += 1
        try:
            if self._event is None:
                self._event = asyncio.Event()
            if self._task is None or self._task.done():
                self._task = loop.create_task(self._sample())
            while self._revision() <= revision:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                try:
                    await asyncio.wait_for(self._event.wait(), remaining)
                except TimeoutError:
                    return self._revision() > revision
            return True
        finally:
            self._waiters -= 1

    async def _sample(self) -> None:
        last = self._revision()
        while self._waiters > 0:
            await asyncio.sleep(self._interval)
            current = self._revision()
            if current != last:
                last = current
                event, self._event = self._event, asyncio.Event()
                if event is not None:
                    event.set()
