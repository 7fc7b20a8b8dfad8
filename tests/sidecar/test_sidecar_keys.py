"""A service key created upstream works at the sidecar at once, even while its change stream is held up.

Between the sidecar and a real `authz serve` sits a tap (tests/sidecar/feed_tap.py) that
holds the change stream open and silent, as a proxy buffering it would, cuts the upstream
off, and counts the requests that reach it. A key the sidecar does not know makes it catch
up with the upstream's changelog there and then; a flood of unknown keys costs the upstream
a few requests a second; a revoked key stays revoked; without the upstream, unknown keys
are refused and known ones still work. On SQLite and PostgreSQL.
"""

import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from api.sidecar import FeedKeyCache
from tests.conftest import BILLING, ONE_DATABASE, auth
from tests.metrics import by_label
from tests.processes import ServerProcess, create_service_key, revoke_service_key
from tests.sidecar.feed_tap import FeedTap
from tests.sidecar.process import SidecarProcess, feed_key, start_sidecar, upstream

# the sidecar has no database; the upstream's feed is tested on both in tests/api
pytestmark = [pytest.mark.e2e, ONE_DATABASE]
__all__ = ["feed_key", "upstream"]  # fixtures (tests/sidecar/process.py)
CHECK = {"subject": "ann", "action": "read", "resource": {"type": "algorithm", "id": "x"}}
EVALUATION = {"subject": {"type": "user", "id": "ann"}, "action": {"name": "read"},
              "resource": {"type": "algorithm", "id": "x"}}


@pytest.fixture
def tap(upstream: ServerProcess) -> Iterator[FeedTap]:
    with FeedTap("127.0.0.1", upstream.port) as proxy:
        yield proxy


@pytest.fixture
def sidecar(tmp_path: Path, tap: FeedTap, feed_key: str) -> Iterator[SidecarProcess]:
    process = start_sidecar(tmp_path / "sidecar", tap.url, feed_key)
    try:
        yield process
    finally:
        process.stop()


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _garbage_key() -> str:
    """Well-formed (so worth a catch-up), created by nobody."""
    return f"azk_{secrets.token_hex(8)}_{secrets.token_urlsafe(32)}"


def _catch_ups(sidecar: SidecarProcess) -> dict[str, float]:
    return by_label(httpx.get(sidecar.url + "/metrics", timeout=5).text, "authz_sidecar_key_catch_ups_total", "outcome")


def test_a_key_created_while_the_stream_is_held_works_at_once(
        upstream: ServerProcess, tap: FeedTap, sidecar: SidecarProcess) -> None:
    with httpx.Client(base_url=sidecar.url, timeout=10) as local:
        tap.hold_streams()
        key, created = create_service_key(upstream, "check")
        assert sidecar.readyz()["revision"] == created - 1  # the stream has not brought it, and will not
        answer = local.post("/v1/check", json=CHECK, headers=_bearer(key))
        assert answer.status_code == 200, answer.text
        assert answer.json()["revision"] >= created
        other, _ = create_service_key(upstream, "check")  # AuthZEN authenticates the same way
        assert local.post("/access/v1/evaluation", json=EVALUATION, headers=_bearer(other)).status_code == 200
        # Revoked, then a new key: the new key's catch-up applies the changelog in order, the
        # revocation with it; a revoked key never comes back.
        revoke_service_key(upstream, key)
        later, _ = create_service_key(upstream, "check")
        assert local.post("/v1/check", json=CHECK, headers=_bearer(later)).status_code == 200
        assert local.post("/v1/check", json=CHECK, headers=_bearer(key)).status_code == 401
        assert _catch_ups(sidecar)["applied"] == 3
        assert tap.count("/v1/changes", stream=True) == 1  # the same stream all along, still held

        # Let the stream go: it brings every revision the catch-ups applied, each skipped (none
        # applied twice, none goes back), and then what is written after.
        tap.release_streams()
        with httpx.Client(base_url=upstream.url, timeout=10) as central:
            org = central.post("/v1/organizations", json={"name": "Lab", "billing_address": BILLING},
                               headers=auth("ann"))
        written = int(org.headers["X-Authz-Revision"])
        check = {"action": "delete", "resource": {"type": "algorithm"}, "context": org.json()["id"],
                 "min_revision": written}
        assert local.post("/v1/check", json=check, headers=auth("ann")).json() == {"allowed": True,
                                                                                   "revision": written}
        assert local.post("/v1/check", json=CHECK, headers=_bearer(key)).status_code == 401
        assert local.post("/v1/check", json=CHECK, headers=_bearer(later)).status_code == 200
        assert local.post("/v1/check", json=CHECK, headers=_bearer(other)).status_code == 200
    assert tap.count("/v1/changes", stream=True) == 1
    assert [target for target, _ in tap.requests if target == "/v1/snapshot"] == ["/v1/snapshot"]  # no reload
    assert "skipped" not in sidecar.log_text()


def test_a_flood_of_unknown_keys_is_a_trickle_upstream(
        upstream: ServerProcess, tap: FeedTap, sidecar: SidecarProcess) -> None:
    tap.hold_streams()  # every new key is unknown to the sidecar until it catches up
    garbage = [_garbage_key() for _ in range(600)]
    before = len(tap.requests)
    started = time.monotonic()
    with ThreadPoolExecutor(32) as pool, \
            httpx.Client(base_url=sidecar.url, timeout=30, limits=httpx.Limits(max_connections=40)) as local:
        flood = pool.map(lambda credential: local.post("/v1/check", json=CHECK,
                                                       headers=_bearer(credential)).status_code, garbage)
        key, _ = create_service_key(upstream, "check")  # amid the flood, a real key created now
        fresh = local.post("/v1/check", json=CHECK, headers=_bearer(key))
        statuses = list(flood)
    elapsed = time.monotonic() - started
    # What reached the upstream besides the change stream (which may open after `before`).
    upstream_requests = [target for target, streamed in tap.requests[before:] if not streamed]
    pages = [target for target in upstream_requests if target.startswith("/v1/changes?")]
    assert fresh.status_code == 200, fresh.text
    assert statuses == [401] * len(garbage)
    bound = elapsed * FeedKeyCache.CATCH_UPS_PER_SECOND + 1  # runs start at least 1/CATCH_UPS_PER_SECOND apart
    assert 1 <= len(pages) <= bound, (len(pages), elapsed)
    # Besides the pages, only the key set read for the one service-key change.
    assert len(upstream_requests) - len(pages) <= 1, upstream_requests
    assert sum(_catch_ups(sidecar).values()) == len(pages)


def test_without_the_upstream_unknown_keys_are_refused_and_known_keys_work(
        upstream: ServerProcess, tap: FeedTap, sidecar: SidecarProcess) -> None:
    known, revision = create_service_key(upstream, "check")
    sidecar.wait_ready(revision)
    with httpx.Client(base_url=sidecar.url, timeout=10) as local:
        tap.cut()  # the stream drops, and every new connection to the upstream is closed at once
        unknown, _ = create_service_key(upstream, "check")
        assert local.post("/v1/check", json=CHECK, headers=_bearer(unknown)).status_code == 401
        assert local.post("/v1/check", json=CHECK, headers=_bearer(known)).status_code == 200
        assert _catch_ups(sidecar) == {"applied": 0.0, "current": 0.0, "failed": 1.0}
        tap.restore()
        assert local.post("/v1/check", json=CHECK, headers=_bearer(unknown)).status_code == 200
