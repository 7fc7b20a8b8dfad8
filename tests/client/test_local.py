"""`authz_client.LocalDecisions` (the embedded mode) against a real `authz serve`, on SQLite and PostgreSQL.

The embedded follower is the sidecar's follower inside this test process: over a random
history of writes through the central service, its answers and listings must equal the
central service's at the same revision; `min_revision` gives read-your-writes (bounded,
then Unavailable); it survives the upstream going away and coming back, failing closed
only past its staleness bound.
"""

import asyncio
import threading
import time

import httpx
import pytest

from authz_client import LocalDecisions, Unavailable
from tests.conftest import BILLING, ONE_DATABASE, auth
from tests.processes import ServerProcess, add_member, create_service_key, start_authz
from tests.sidecar.process import UPSTREAM_ENV, feed_key, upstream
from tests.sidecar.test_sidecar import USERS, History, _written

# The tests with an upstream run once (ONE_DATABASE): LocalDecisions has no database, and the
# upstream's feed and snapshot are tested on both databases in tests/api.
pytestmark = pytest.mark.e2e
__all__ = ["feed_key", "upstream"]  # fixtures shared with the sidecar's tests


def _compare(central: httpx.Client, local: LocalDecisions, key: str, history: History, revision: int) -> list[bool]:
    questions = history.questions(40)
    expected = central.post("/v1/check/batch", json={"checks": questions, "min_revision": revision},
                            headers={"Authorization": f"Bearer {key}"})
    assert expected.status_code == 200, expected.text
    assert expected.json()["revision"] == revision  # the central service answered at this very revision
    got = [
        local.check_result(q["action"], (q["resource"]["type"], q["resource"].get("id")), subject=q["subject"],
                           context=q.get("context"), min_revision=revision)
        for q in questions
    ]
    assert {result.revision for result in got} == {revision}  # nothing newer was written meanwhile
    assert [result.allowed for result in got] == [result["allowed"] for result in expected.json()["results"]]
    for user in USERS:
        for kind in ("algorithm", "job"):
            listing = central.post("/v1/list-resources", json={"subject": user, "action": "read", "type": kind},
                                   headers={"Authorization": f"Bearer {key}"})
            assert local.list_resources("read", kind, subject=user) == listing.json()["resources"]
    return [result.allowed for result in got]


@ONE_DATABASE
def test_decisions_equal_the_central_services_over_a_random_history(upstream: ServerProcess, feed_key: str) -> None:
    with httpx.Client(base_url=upstream.url, timeout=10) as central, LocalDecisions(upstream.url, feed_key) as local:
        history = History(central, seed=23)
        answers: list[bool] = []
        for step in range(60):
            revision = history.step()
            if step % 3 == 0:
                answers += _compare(central, local, feed_key, history, revision)
        assert 0 < sum(answers) < len(answers)  # both answers were compared, not only denials
        # A membership written behind the service's back (straight into the database): the feed brings it.
        org = next(iter(history.orgs))
        revision = add_member(upstream, org, "eve", "maintainer")
        _compare(central, local, feed_key, history, revision)
        assert local.check("create", "algorithm", subject="eve", context=org, min_revision=revision)
        assert not local.check("delete", "algorithm", subject="eve", context=org)


@ONE_DATABASE
def test_min_revision_reads_your_writes(upstream: ServerProcess, feed_key: str) -> None:
    with httpx.Client(base_url=upstream.url, timeout=10) as central, \
            LocalDecisions(upstream.url, feed_key, min_revision_wait=2.0) as local:
        org = central.post("/v1/organizations", json={"name": "Lab", "billing_address": BILLING}, headers=auth("ann"))
        for n in range(15):
            _written(central.post("/v1/resources", json={"type": "algorithm", "id": f"a{n}"},
                                  headers=auth("ann", context=org.json()["id"])))
            shared = _written(central.put(f"/v1/resources/algorithm/a{n}/members/ben", json={"role": "viewer"},
                                          headers=auth("ann")))
            # Asked at once, with the revision of the write: never an answer from before it.
            answer = local.check_result("read", f"algorithm:a{n}", subject="ben", min_revision=shared)
            assert (answer.allowed, answer.revision >= shared) == (True, True)
        # The async form waits without holding the event loop.
        revision = _written(central.delete("/v1/resources/algorithm/a0/members/ben", headers=auth("ann")))
        answer = asyncio.run(local.check_async("read", "algorithm:a0", subject="ben", min_revision=revision))
        assert (answer.allowed, answer.revision >= revision) == (False, True)
        # A revision that never comes: a bounded wait, then Unavailable (the service's 503).
        started = time.monotonic()
        with pytest.raises(Unavailable, match="behind the requested"):
            local.check("read", "algorithm:a1", subject="ben", min_revision=shared + 1000)
        assert 1.8 < time.monotonic() - started < 5


@ONE_DATABASE
def test_the_upstream_killed_and_restarted(upstream: ServerProcess, feed_key: str) -> None:
    with httpx.Client(base_url=upstream.url, timeout=10) as central:
        created = central.post("/v1/organizations", json={"name": "Lab", "billing_address": BILLING},
                               headers=auth("ann"))
    org = created.json()["id"]
    local = LocalDecisions(upstream.url, feed_key, max_staleness=4.0, max_backoff=0.5)
    local.start()
    try:
        assert local.check("delete", "algorithm", subject="ann", context=org, min_revision=_written(created))
        upstream.process.kill()  # no goodbye
        upstream.process.wait()
        # Within the bound it goes on answering from what it has.
        time.sleep(1.0)
        assert local.check("delete", "algorithm", subject="ann", context=org)
        assert local.last_error is not None and "unreachable" in local.last_error
        # A write lands in the database while the upstream is away.
        revision = add_member(upstream, org, "ben", "owner")
        time.sleep(4.0)
        with pytest.raises(Unavailable, match="stale"):  # past max_staleness: fail closed
            local.check("delete", "algorithm", subject="ann", context=org)
        # The upstream back on its port: the follower catches up by itself, no restart.
        restarted = start_authz(upstream.workdir, {**UPSTREAM_ENV, "AUTHZ_DATABASE_URL": upstream.database_url},
                                port=upstream.port)
        try:
            assert local.wait_for(revision, timeout=15)
            assert local.check("delete", "algorithm", subject="ben", context=org)
            assert local.check("delete", "algorithm", subject="ann", context=org)
            assert local.last_error is None
        finally:
            restarted.stop()
    finally:
        local.stop()


def test_nothing_is_answered_before_the_first_snapshot() -> None:
    local = LocalDecisions("http://127.0.0.1:9", "azk_nothing", max_backoff=0.2)  # nothing listens on port 9
    with pytest.raises(Unavailable, match="no snapshot"):
        local.start(wait=0.5)
    with pytest.raises(Unavailable, match="no snapshot"):
        local.check("read", "algorithm:x", subject="ann")


def test_stop_ends_the_follower_at_once_on_a_silent_stream(server: ServerProcess) -> None:
    # The package's server keeps the change stream silent for 15 s between keep-alives: stop() must not
    # wait for the next one, nor leave the follower's thread reading it.
    key = create_service_key(server, "changes:read")[0]
    local = LocalDecisions(server.url, key)
    local.start()
    deadline = time.monotonic() + 10
    while local.last_error is not None or local.staleness() > 1.0:  # following: the stream is open
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.3)  # and its read is blocked on the silent stream
    started = time.monotonic()
    local.stop()
    assert time.monotonic() - started < 0.5
    assert not [thread for thread in threading.enumerate() if thread.name == "authz-feed-follower"]
