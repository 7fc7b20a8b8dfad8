"""Stopping `authz serve` while clients wait for later revisions: event streams, long polls and checks
with a `min_revision` end at once, and cleanly.

Before api.serving, each stop with a follower connected lasted uvicorn's whole
`timeout_graceful_shutdown`, and then the open responses were cancelled mid-stream.
"""

import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from authz.cli import UVICORN_OPTIONS
from tests.metrics import sample
from tests.processes import ServerProcess, create_service_key, start_authz, wait_for_revision
from tests.replicas.cluster import wait_until

pytestmark = pytest.mark.e2e

GOODBYE = ": the server is shutting down; reconnect with Last-Event-ID"
CANCELLED = "timeout graceful shutdown exceeded"  # what uvicorn logs when it cancels what still runs
ENDED = 15.0  # seconds a request may take to end after the stop: far more than it needs


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
        with ThreadPoolExecutor(max_workers=3) as background:
            stream = background.submit(_stream_lines, server.url, key, revision, opened)
            poll = background.submit(httpx.get, f"{server.url}/v1/changes", params={"after": revision, "wait": 25},
                                     headers=feed, timeout=30)
            check = background.submit(httpx.post, f"{server.url}/v1/check", headers=feed, timeout=30, json={
                "subject": "user:ann", "action": "read", "resource": {"type": "algorithm"},
                "min_revision": revision + 1000})
            assert opened.wait(10)
            wait_until(lambda: _waiting(server) == 3, timeout=10, what="the stream, the poll and the check waiting")

            took = _stop(server)

            # The stream ends with a line saying why (its client resumes elsewhere), not broken off.
            assert stream.result(ENDED)[-2:] == [GOODBYE, ""]
            # The long poll answers with what there is: nothing newer, and where to go on from.
            answered = poll.result(ENDED)
            # The check is refused as by any replica that cannot answer: its client retries on another.
            refused = check.result(ENDED)
        assert answered.status_code == 200
        assert answered.json() == {"changes": [], "next_after": revision}
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
        with ThreadPoolExecutor(max_workers=4) as background:
            streams = []
            for _ in range(4):  # on whichever worker takes each
                opened = threading.Event()
                streams.append(background.submit(_stream_lines, server.url, key, revision, opened))
                assert opened.wait(10)

            took = _stop(server)

            assert [stream.result(ENDED)[-2:] for stream in streams] == [[GOODBYE, ""]] * 4
        assert CANCELLED not in server.log_text()
        assert took < UVICORN_OPTIONS["timeout_graceful_shutdown"]
    finally:
        server.stop()
