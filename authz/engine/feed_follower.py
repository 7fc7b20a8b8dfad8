"""A replica fed by the upstream's HTTP API instead of the database (the sidecar).

It loads `GET /v1/snapshot` once, then follows `GET /v1/changes` as server-sent events
from the snapshot's revision on, applying each change in order (`Replica.apply_feed`).
A dropped stream is reopened from the revision reached (`Last-Event-ID`), after a backoff
that doubles up to `max_backoff`; nothing is lost and nothing is applied twice. Every line
the upstream sends (a change or its keep-alive comment) proves the replica in step, so
staleness counts from the last one: without the upstream, checks fail closed once it
passes AUTHZ_MAX_STALENESS (DESIGN.md invariant 4), and the next stream catches up.
"""

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping

import httpx
import orjson

from authz.engine import transfer
from authz.engine.replica import Replica, ServiceKeyRecord, Snapshot

log = logging.getLogger("authz.sidecar")

FIRST_BACKOFF = 0.1
MAX_BACKOFF = 5.0
FEED_PAGE = 1000


class FeedFollower:
    """A daemon thread: snapshot, then the change feed, reconnecting until stopped."""

    def __init__(self, replica: Replica, upstream: str, key: str, *, max_backoff: float = MAX_BACKOFF,
                 before_install: Callable[[Snapshot], None] | None = None,
                 connect_timeout: float = 5.0, read_timeout: float = 60.0) -> None:
        self.replica = replica
        self.upstream = upstream.rstrip("/")
        self.max_backoff = max_backoff
        self.before_install = before_install  # e.g. validate the route file against the policy loaded
        self._headers = {"Authorization": f"Bearer {key}", "User-Agent": "authz-sidecar"}
        # A read timeout longer than the upstream's keep-alive interval: a silent link is dropped and reopened.
        self._timeout = httpx.Timeout(connect_timeout, read=read_timeout)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._http: httpx.Client | None = None
        self._response: httpx.Response | None = None  # the open change stream
        self.connected = threading.Event()  # a change stream is open right now
        self.loaded = threading.Event()  # the first snapshot is installed
        self._reload = False  # the feed skipped a revision: start again from a snapshot

    # ---- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        self._http = httpx.Client(timeout=self._timeout, headers=self._headers)
        self._thread = threading.Thread(target=self._run, name="authz-feed-follower", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        """Stop following; a read blocked on a silent stream is left to the daemon thread's end."""
        self._stop.set()
        response = self._response
        if response is not None:
            response.close()  # usually ends a blocked read of the stream at once
        if self._http is not None:
            self._http.close()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            self._thread = None

    def wake(self) -> None:
        """The feed pushes every change as it commits: there is nothing to wake."""

    @property
    def listening(self) -> bool:
        return self.connected.is_set()

    # ---- the loop ----------------------------------------------------------------------

    def _run(self) -> None:
        backoff = FIRST_BACKOFF
        while not self._stop.is_set():
            try:
                if not self.loaded.is_set() or self._reload:
                    self.load_snapshot()
                self.follow()
                backoff = FIRST_BACKOFF  # the stream ended normally (upstream shutdown): reconnect soon
                self._stop.wait(FIRST_BACKOFF)
            except Exception as exc:  # noqa: BLE001 - any failure: record it, back off, try again
                if self._stop.is_set():
                    return
                reason = _reason(exc)
                if self.replica.last_sync_error != reason:
                    log.warning("upstream %s: %s; retrying (at revision %d)", self.upstream, reason,
                                self.replica.revision)
                self.replica.last_sync_error = reason
                self._stop.wait(backoff * (0.5 + random.random()))  # jitter: sidecars do not reconnect in step
                backoff = min(backoff * 2, self.max_backoff)
            finally:
                self.connected.clear()
                self._response = None

    def load_snapshot(self) -> None:
        assert self._http is not None
        started = time.monotonic()
        with self._http.stream("GET", self.upstream + "/v1/snapshot") as response:
            _raise_for(response)
            snapshot = transfer.load(transfer.lines_of(response.iter_bytes()), clock=self.replica.clock)
        if self.before_install is not None:
            self.before_install(snapshot)
        self.replica.install(snapshot)
        self._reload = False
        self.loaded.set()
        log.info("loaded the snapshot at revision %d from %s in %.2fs", snapshot.revision, self.upstream,
                 time.monotonic() - started, extra={"revision": snapshot.revision})

    def follow(self) -> None:
        """Apply the change stream until it ends; raises when it cannot be read."""
        assert self._http is not None
        after = self.replica.revision
        headers = {"Accept": "text/event-stream", "Last-Event-ID": str(after)}
        with self._http.stream("GET", self.upstream + "/v1/changes", params={"after": after, "limit": FEED_PAGE},
                               headers=headers) as response:
            _raise_for(response)
            self._response = response
            self.connected.set()
            if self.replica.last_sync_error is not None:
                log.info("following %s again from revision %d", self.upstream, after)
            self.replica.mark_synced()
            data: list[str] = []
            for line in response.iter_lines():
                if self._stop.is_set():
                    return
                if line.startswith("data:"):
                    data.append(line[5:].strip())
                elif not line:
                    if data:
                        self._apply("\n".join(data))
                        data = []
                    self.replica.mark_synced()
                elif line.startswith(":"):
                    self.replica.mark_synced()  # a keep-alive: the upstream is there and has nothing newer

    def _apply(self, payload: str) -> None:
        change = orjson.loads(payload)
        revision = int(change["revision"])
        try:
            self.replica.apply_feed(revision, change["ops"], lambda: self.read_service_keys(revision))
        except ValueError:
            self._reload = True  # a revision missing from the stream: start again from a snapshot
            raise

    def read_service_keys(self, revision: int) -> Mapping[str, ServiceKeyRecord]:
        """The upstream's service-key hashes as of `revision` or later (the feed says only that they changed).

        The feed comes from the upstream's database, its snapshot from its replica, which
        may not have applied `revision` yet: hence `min_revision`. A later key set is fine
        (a key created or revoked since is then known a little early; the feed brings that
        change too).
        """
        assert self._http is not None
        response = self._http.get(self.upstream + "/v1/snapshot",
                                  params={"part": "service_keys", "min_revision": revision})
        _raise_for(response)
        found, keys = transfer.read_service_keys(transfer.lines_of([response.content]))
        if found < revision:
            raise UpstreamRefused(200, f"service keys at revision {found}, before {revision}")
        return keys


class UpstreamRefused(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"answered {status}: {detail}")


def _raise_for(response: httpx.Response) -> None:
    if response.status_code != 200:
        response.read()
        try:
            detail = str(response.json().get("detail", ""))[:200]
        except ValueError:
            detail = response.text[:200]
        raise UpstreamRefused(response.status_code, detail)


def _reason(exc: Exception) -> str:
    if isinstance(exc, UpstreamRefused):
        return f"upstream {exc}"
    if isinstance(exc, httpx.TransportError):
        return f"upstream unreachable ({type(exc).__name__})"
    if isinstance(exc, transfer.SnapshotInvalid):
        return f"bad snapshot: {exc}"
    return f"{type(exc).__name__}: {exc}"[:200]
