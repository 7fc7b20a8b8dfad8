"""Stopping `authz serve` while clients wait for later revisions: event streams, long polls and checks
with a `min_revision` end at once, and cleanly.

Before api.serving, each stop with a follower connected lasted uvicorn's whole
`timeout_graceful_shutdown`, and then the open responses were cancelled mid-stream.
"""

import functools
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from authz.cli import UVICORN_OPTIONS
from tests.metrics import sample
from tests.processes import ServerProcess, create_service_key, start_authz, wait_for_revision
from tests.replicas.cluster import wait_until

pytestmark = pytest.mark.e2e

GOODBYE = ": the server is shutting down; reconnect with Last-Event-ID"
CANCELLED = "timeout graceful shutdown exceeded"  # what uvicorn logs when it cancels what still runs


class InBackground(threading.Thread):
    """Runs `work` on a thread of its own; `outcome()` is what it returned (or raises what it raised)."""

    def __init__(self, work: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self._work = work
        self._result: Any = None
        self._error: BaseException | None = None

    def run(self) -> None:
        try:
            self._result = self._work()
        except BaseException as exc:  # noqa: BLE001 - handed to the test by outcome()
            self._error = exc

    def outcome(self, timeout: float = 15.0) -> Any:
        self.join(timeout)
        assert not self.is_alive(), "still waiting after the server stopped"
        if self._error is not None:
            raise self._error
        return self._result


def _stream_lines(url: str, key: str, after: int, opened: threading.Event) -> list[str]:
    """Every line of an event stream from revision `after` on, until the server ends it."""
    headers = {"Authorization": f"Bearer {key}", "Accept": "text/event-stream"}
    lines = []
    with httpx.stream("GET", f"{url}/v1/changes", params={"after": after}, headers=headers, timeout=30) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            lines.append(line)
            opened.set()
    return lines


def _waiting(server: ServerProcess) -> int:
    """How many requests wait for a later revision on the server (its authz_revision_waiters gauge)."""
    return int(sample(httpx.get(server.url + "/metrics", timeout=5).text, "authz_revision_waiters"))


def _stop(server: ServerProcess) -> float:
    """SIGTERM; the seconds until the process has exited."""
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    server.process.wait(timeout=15)
    return time.monotonic() - started


def test_a_stop_ends_an_open_stream_a_long_poll_and_a_check_waiting_for_a_revision_at_once(tmp_path: Path) -> None:
    server = start_authz(tmp_path / "authz", {"AUTHZ_MIN_REVISION_WAIT": "25"})
    try:
        key, revision = create_service_key(server, "changes:read", "check")
        wait_for_revision(server, revision)
        feed = {"Authorization": f"Bearer {key}"}
        opened = threading.Event()
        stream = InBackground(lambda: _stream_lines(server.url, key, revision, opened))
        poll = InBackground(lambda: httpx.get(f"{server.url}/v1/changes", params={"after": revision, "wait": 25},
                                              headers=feed, timeout=30))
        check = InBackground(lambda: httpx.post(f"{server.url}/v1/check", headers=feed, timeout=30, json={
            "subject": "user:ann", "action": "read", "resource": {"type": "algorithm"},
            "min_revision": revision + 1000}))
        for request in (stream, poll, check):
            request.start()
        assert opened.wait(10)
        wait_until(lambda: _waiting(server) == 3, timeout=10, what="the stream, the poll and the check waiting")

        took = _stop(server)

        # The stream ends with a line saying why (its client resumes elsewhere), not broken off.
        assert stream.outcome()[-2:] == [GOODBYE, ""]
        # The long poll answers with what there is: nothing newer, and where to go on from.
        answered = poll.outcome()
        assert answered.status_code == 200
        assert answered.json() == {"changes": [], "next_after": revision}
        # The check is refused as by any replica that cannot answer: its client retries on another.
        refused = check.outcome()
        assert refused.status_code == 503
        assert refused.headers["content-type"] == "application/problem+json"
        assert "shutting down" in refused.json()["detail"]
        assert CANCELLED not in server.log_text()
        assert took < UVICORN_OPTIONS["timeout_graceful_shutdown"]
    finally:
        server.stop()


def test_with_forked_workers_a_stop_ends_every_open_stream_at_once(tmp_path: Path) -> None:
    server = start_authz(tmp_path / "authz", serve_args=("--workers", "2"))
    try:
        key, revision = create_service_key(server, "changes:read")
        wait_for_revision(server, revision)
        streams = []
        for _ in range(4):  # on whichever worker takes each
            opened = threading.Event()
            stream = InBackground(functools.partial(_stream_lines, server.url, key, revision, opened))
            stream.start()
            assert opened.wait(10)
            streams.append(stream)

        took = _stop(server)

        assert [stream.outcome()[-2:] for stream in streams] == [[GOODBYE, ""]] * 4
        assert CANCELLED not in server.log_text()
        assert took < UVICORN_OPTIONS["timeout_graceful_shutdown"]
    finally:
        server.stop()
