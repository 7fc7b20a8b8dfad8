"""Following an authz service over HTTP: its snapshot, then its change feed (the sidecar and the embedded mode).

A `FeedFollower` loads `GET /v1/snapshot` once, then follows `GET /v1/changes` as
server-sent events from the snapshot's revision on, handing each change in order to its
`FeedSink`. A dropped stream is reopened from the revision reached (`Last-Event-ID`),
after a backoff that doubles up to `max_backoff` (with jitter); nothing is lost and
nothing is applied twice. Every line the upstream sends (a change or its keep-alive
comment) proves the follower in step, so the sink's staleness counts from the last one:
without the upstream, decisions fail closed once it passes the sink's bound, and the next
stream catches up.
"""

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Mapping
from typing import Any, Protocol

import httpx

from authz_client.decisions import stream
from authz_client.decisions.stream import StreamSnapshot, json_loads
from authz_client.jitter import JITTER

log = logging.getLogger("authz_client.feed")

FIRST_BACKOFF = 0.1
MAX_BACKOFF = 5.0
FEED_PAGE = 1000


class FeedSink(Protocol):
    """What a follower keeps up to date: the sidecar's replica, or `LocalDecisions`."""

    @property
    def revision(self) -> int:
        """The revision reached (-1 before the first snapshot)."""

    def install_snapshot(self, snapshot: StreamSnapshot) -> None:
        """Replace the whole state with a snapshot's."""

    def apply_change(self, revision: int, ops: list[dict[str, Any]]) -> bool:
        """Apply the next revision's ops (False: already had it); ValueError when `revision` skips one."""

    def mark_synced(self) -> None:
        """The upstream confirmed there is nothing newer: staleness restarts from now."""

    def sync_failed(self, reason: str) -> None:
        """The upstream cannot be followed right now (staleness keeps growing)."""


class UpstreamRefused(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"answered {status}: {detail}")


class FeedFollower:
    """A daemon thread: snapshot, then the change feed, reconnecting until stopped."""

    def __init__(self, sink: FeedSink, upstream: str, key: str, *, user_agent: str = "authz-client",
                 max_backoff: float = MAX_BACKOFF, connect_timeout: float = 5.0, read_timeout: float = 60.0,
                 freeze_gc: bool = True) -> None:
        self.sink = sink
        self.upstream = upstream.rstrip("/")
        self.max_backoff = max_backoff
        self.freeze_gc = freeze_gc  # see `stream.bulk_allocation`
        self._headers = {"Authorization": f"Bearer {key}", "User-Agent": user_agent}
        # A read timeout longer than the upstream's keep-alive interval: a silent link is dropped and reopened.
        self._timeout = httpx.Timeout(connect_timeout, read=read_timeout)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._http: httpx.Client | None = None
        self._response: httpx.Response | None = None  # the open change stream
        self.connected = threading.Event()  # a change stream is open right now
        self.loaded = threading.Event()  # the first snapshot is installed
        self.last_error: str | None = None
        self._reload = False  # the feed skipped a revision: start again from a snapshot

    # ---- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        self._http = httpx.Client(timeout=self._timeout, headers=self._headers)
        self._thread = threading.Thread(target=self._run, name="authz-feed-follower", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        """Stop following: the thread ends at once, even from a read blocked on a silent stream."""
        self._stop.set()
        response = self._response
        if response is not None:
            _interrupt(response)
            response.close()
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
                if self.last_error != reason:
                    log.warning("upstream %s: %s; retrying (at revision %d)", self.upstream, reason,
                                self.sink.revision)
                self.last_error = reason
                self.sink.sync_failed(reason)
                self._stop.wait(backoff * (0.5 + JITTER.random()))  # jitter: followers do not reconnect in step
                backoff = min(backoff * 2, self.max_backoff)
            finally:
                self.connected.clear()
                self._response = None

    def load_snapshot(self) -> None:
        assert self._http is not None
        started = time.monotonic()
        with self._http.stream("GET", self.upstream + "/v1/snapshot") as response:
            _raise_for(response)
            snapshot = stream.load(stream.lines_of(response.iter_bytes()), freeze=self.freeze_gc)
        self.sink.install_snapshot(snapshot)
        self._reload = False
        self.loaded.set()
        log.info("loaded the snapshot at revision %d from %s in %.2fs", snapshot.revision, self.upstream,
                 time.monotonic() - started, extra={"revision": snapshot.revision})

    def follow(self) -> None:
        """Apply the change stream until it ends; raises when it cannot be read."""
        assert self._http is not None
        after = self.sink.revision
        headers = {"Accept": "text/event-stream", "Last-Event-ID": str(after)}
        with self._http.stream("GET", self.upstream + "/v1/changes", params={"after": after, "limit": FEED_PAGE},
                               headers=headers) as response:
            _raise_for(response)
            self._response = response
            self.connected.set()
            if self.last_error is not None:
                log.info("following %s again from revision %d", self.upstream, after)
                self.last_error = None
            self.sink.mark_synced()
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
                    self.sink.mark_synced()
                elif line.startswith(":"):
                    self.sink.mark_synced()  # a keep-alive: the upstream is there and has nothing newer

    def _apply(self, payload: str) -> None:
        change = json_loads(payload)
        try:
            self.sink.apply_change(int(change["revision"]), change["ops"])
        except ValueError:
            self._reload = True  # a revision missing from the stream: start again from a snapshot
            raise

    def get(self, path: str, params: Mapping[str, str | int], *, timeout: float | None = None) -> bytes:
        """The body of another GET on the upstream (the sidecar re-reads service keys and catches up with it).

        Any thread may call it while the follower runs (an `httpx.Client` is shared between
        threads); `timeout` replaces the follower's connect and read timeouts for this call.
        """
        assert self._http is not None
        response = self._http.get(self.upstream + path, params=params,
                                  timeout=self._timeout if timeout is None else timeout)
        _raise_for(response)
        return response.content


def _interrupt(response: httpx.Response) -> None:
    """Wake the thread blocked reading `response`: closing its socket from another thread does not
    (the read went on until the upstream's next keep-alive), shutting it down does."""
    network_stream = response.extensions.get("network_stream")
    sock = network_stream.get_extra_info("socket") if network_stream is not None else None
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):  # already closed by the upstream
            sock.shutdown(socket.SHUT_RDWR)


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
    if isinstance(exc, stream.SnapshotInvalid):
        return f"bad snapshot: {exc}"
    return f"{type(exc).__name__}: {exc}"[:200]
