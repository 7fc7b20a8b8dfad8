"""A short-lived decision cache that never answers older than the caller's `min_revision`.

Each entry keeps the revision it was answered at. A lookup with `min_revision` misses
when the entry is older, so a service that just wrote (and got revision N back) never
reads a decision from before its own write. Entries also expire after `ttl` seconds,
which bounds how long a revoked permission can still be served to callers that pass no
revision. Thread-safe; no awaits inside, so one instance serves sync and async clients.
"""

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from authz_client.models import CheckResult


@dataclass(frozen=True)
class _Entry:
    result: CheckResult
    expires_at: float


class DecisionCache:
    """Maps a question (credential, context and all) to its last answer, for `ttl` seconds."""

    def __init__(self, ttl: float, *, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, min_revision: int | None = None) -> CheckResult | None:
        """The cached answer, unless it expired or is older than `min_revision`."""
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry.expires_at <= now:
                del self._entries[key]
                return None
            if min_revision is not None and entry.result.revision < min_revision:
                return None
            self._entries.move_to_end(key)
            return entry.result

    def put(self, key: Hashable, result: CheckResult) -> None:
        """Remember an answer; never replaces a newer one with an older one."""
        now = self._clock()
        with self._lock:
            current = self._entries.get(key)
            if current is not None and current.expires_at > now and current.result.revision > result.revision:
                return
            self._entries[key] = _Entry(result, now + self.ttl)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


__all__ = ["DecisionCache"]
