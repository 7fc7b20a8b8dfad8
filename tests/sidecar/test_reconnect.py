"""`authz sidecar` without its upstream: how soon it tries again (AUTHZ_UPSTREAM_MAX_BACKOFF)."""

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.sidecar.process import start_sidecar

pytestmark = pytest.mark.e2e


class _RefusingUpstream(ThreadingHTTPServer):
    """An upstream on a free port that answers every request 503, noting when each came."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Refuse)
        self.attempts: list[float] = []


class _Refuse(BaseHTTPRequestHandler):
    server: _RefusingUpstream

    def do_GET(self) -> None:
        self.server.attempts.append(time.monotonic())
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.parametrize(("max_backoff", "fewest", "most"), [("0.2", 10, 40), (None, 1, 7)])
def test_a_lost_upstream_is_tried_again_at_most_upstream_max_backoff_apart(
    tmp_path: Path, max_backoff: str | None, fewest: int, most: int
) -> None:
    """Attempts start 0.1 s apart and double, jittered by 0.5-1.5, up to AUTHZ_UPSTREAM_MAX_BACKOFF: within
    4 s of the first, at 0.2 s that is 13 or more; doubling towards the default 5 s, 7 at most."""
    server = _RefusingUpstream()
    attempts = server.attempts
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {} if max_backoff is None else {"AUTHZ_UPSTREAM_MAX_BACKOFF": max_backoff}
    sidecar = start_sidecar(tmp_path / "sidecar", f"http://127.0.0.1:{server.server_port}", "azk_test", env,
                            wait=False)  # it never becomes ready: nothing to load
    try:
        deadline = time.monotonic() + 10
        while not attempts and time.monotonic() < deadline:
            time.sleep(0.05)
        assert attempts, "the sidecar never asked its upstream"
        time.sleep(max(0.0, attempts[0] + 4.0 - time.monotonic()))
        within = sum(1 for at in list(attempts) if at - attempts[0] <= 4.0)
        assert fewest <= within <= most
        assert sidecar.process.poll() is None
    finally:
        sidecar.stop()
        server.shutdown()
        server.server_close()
