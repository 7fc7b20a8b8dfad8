"""`authz.client` against a real `authz serve` process: typed answers, typed errors, retries, the cache."""

import asyncio
import json
import socket
from collections.abc import Iterator

import pytest

from authz.client import (
    AsyncAuthzClient,
    AuthzClient,
    Check,
    DecisionCache,
    Forbidden,
    InvalidRequest,
    Resource,
    Retry,
    Unauthenticated,
    Unavailable,
)
from tests.client.conftest import Org, bearer
from tests.processes import ServerProcess, add_member, create_service_key, wait_for_revision
from tests.replicas.cluster import wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def checker(server: ServerProcess) -> Iterator[AuthzClient]:
    """A service with a `check` key."""
    key, revision = create_service_key(server, "check")
    wait_for_revision(server, revision)
    with AuthzClient(server.url, key) as client:
        yield client


def test_a_user_asks_about_itself(server: ServerProcess, org: Org) -> None:
    with AuthzClient(server.url, bearer(org.viewer)) as client:
        read = client.check("read", f"algorithm:{org.algorithm}", min_revision=org.revision)
        delete = client.check("delete", Resource("algorithm", org.algorithm))
        create_here = client.check("create", "algorithm", context=org.id)
        create_personal = client.check("create", "algorithm")
    assert read.allowed and bool(read) and read.revision >= org.revision
    assert not delete.allowed and not delete
    assert not create_here.allowed
    assert create_personal.allowed  # in the viewer's own personal account
    assert read.cached is False


def test_a_service_asks_about_anyone_in_batches_and_lists(checker: AuthzClient, org: Org) -> None:
    target = ("algorithm", org.algorithm)
    batch = checker.check_batch([
        Check("delete", target, subject=org.owner),
        Check("delete", target, subject=org.viewer),
        Check("update", target, subject=org.maintainer),
        Check("create", "algorithm", subject=org.maintainer, context=org.id),
        Check("read", target, subject="nobody"),
    ], min_revision=org.revision)
    assert batch.results == (True, False, True, True, False)
    assert batch.revision >= org.revision

    resources = checker.list_resources("read", "algorithm", subject=org.viewer, context=org.id)
    assert resources.resources == (org.algorithm,)
    subjects = checker.list_subjects("update", target)
    assert set(subjects.subjects) == {org.owner, org.maintainer}

    explained = checker.check("delete", target, subject=org.owner, explain=True)
    assert explained.allowed and explained.explanation is not None
    assert explained.explanation["role"] == "owner"


def test_errors_are_typed_and_carry_the_problem(server: ServerProcess, org: Org) -> None:
    with AuthzClient(server.url, "not-a-token") as client, pytest.raises(Unauthenticated) as unauthenticated:
        client.check("read", "algorithm:x")
    assert unauthenticated.value.status == 401
    assert unauthenticated.value.type == "urn:authz:problem:unauthenticated"
    assert "invalid token" in unauthenticated.value.detail

    with AuthzClient(server.url, bearer(org.viewer)) as client:
        with pytest.raises(Forbidden) as forbidden:
            client.check("read", "algorithm:x", subject=org.owner)  # a user asks only about itself
        assert forbidden.value.status == 403 and "own subject" in forbidden.value.detail
        with pytest.raises(InvalidRequest) as invalid:
            client.check("Read!", "algorithm:x")
        assert invalid.value.fields == ["action"]
        assert invalid.value.title == "Invalid request"


def test_a_key_without_the_check_scope_is_forbidden(server: ServerProcess, org: Org) -> None:
    key, revision = create_service_key(server, "tokens:resolve")
    wait_for_revision(server, revision)
    with AuthzClient(server.url, key) as client, pytest.raises(Forbidden) as caught:
        client.check("read", f"algorithm:{org.algorithm}", subject=org.viewer)
    assert "check" in caught.value.detail


def test_min_revision_waits_for_a_write_the_server_has_not_seen_yet(server: ServerProcess, org: Org) -> None:
    newcomer = org.viewer + "-new"
    with AuthzClient(server.url, bearer(newcomer)) as client:
        before = client.check("read", f"algorithm:{org.algorithm}")
        assert not before.allowed
        revision = add_member(server, org.id, newcomer, "viewer")  # the server learns it by polling
        after = client.check("read", f"algorithm:{org.algorithm}", min_revision=revision)
    assert after.allowed
    assert after.revision >= revision


def _access_lines(server: ServerProcess, status: int) -> int:
    """How many /v1/check requests the server answered with `status` (from its JSON access log)."""
    lines = [json.loads(line) for line in server.log_text().splitlines() if line.startswith("{")]
    return sum(1 for line in lines if line.get("route") == "/v1/check" and line.get("status") == status)


def test_503_is_retried_a_bounded_number_of_times_then_raised(server: ServerProcess, org: Org) -> None:
    before = _access_lines(server, 503)
    retry = Retry(attempts=3, backoff=0.01, max_backoff=0.05)
    with AuthzClient(server.url, bearer(org.viewer), retry=retry) as client, pytest.raises(Unavailable) as caught:
        client.check("read", f"algorithm:{org.algorithm}", min_revision=10**9)  # a revision that never comes
    assert caught.value.status == 503
    assert "behind the requested" in caught.value.detail

    def answered_503s() -> int:
        """The 503s since `before`, once there are at least 3 (0 until then)."""
        count = _access_lines(server, 503) - before
        return count if count >= 3 else 0

    # The server writes an access line after it has sent the answer: the last one may lag a moment.
    assert wait_until(answered_503s, timeout=5, what="three 503 access lines") == 3


def test_an_unreachable_or_silent_server_is_unavailable_after_the_timeout() -> None:
    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with AuthzClient(url, "x", timeout=0.2, retry=Retry(attempts=2, backoff=0.0)) as client, \
                pytest.raises(Unavailable) as caught:
            client.check("read", "algorithm:x")
    assert caught.value.status is None
    assert "Timeout" in caught.value.detail
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with AuthzClient(f"http://127.0.0.1:{port}", "x", retry=Retry(attempts=2, backoff=0.0)) as client, \
            pytest.raises(Unavailable, match="ConnectError"):
        client.check("read", "algorithm:x")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_cache_never_answers_older_than_min_revision(server: ServerProcess, org: Org) -> None:
    clock = FakeClock()
    cache = DecisionCache(ttl=5.0, clock=clock)
    newcomer = org.viewer + "-cached"
    target = f"algorithm:{org.algorithm}"
    with AuthzClient(server.url, bearer(newcomer), cache=cache) as client:
        first = client.check("read", target)
        again = client.check("read", target)
        assert (first.allowed, first.cached, again.allowed, again.cached) == (False, False, False, True)

        revision = add_member(server, org.id, newcomer, "viewer")
        stale = client.check("read", target)  # no revision asked for: the cached answer, within its TTL
        assert stale.cached and not stale.allowed
        fresh = client.check("read", target, min_revision=revision)  # never older than the caller's write
        assert not fresh.cached and fresh.allowed and fresh.revision >= revision
        assert client.check("read", target, min_revision=revision).cached

        other = client.with_credential(bearer(org.owner))  # another caller never sees this caller's answers
        assert not other.check("read", target).cached

        clock.now += 6.0  # past the TTL: asked again
        assert not client.check("read", target).cached


def test_the_async_client_answers_the_same(server: ServerProcess, org: Org) -> None:
    async def scenario() -> None:
        async with AsyncAuthzClient(server.url, bearer(org.maintainer), cache_ttl=30) as client:
            update = await client.check("update", ("algorithm", org.algorithm), min_revision=org.revision)
            assert update.allowed
            assert (await client.check("update", ("algorithm", org.algorithm))).cached
            assert not (await client.check("delete", ("algorithm", org.algorithm))).allowed
            algorithm = ("algorithm", org.algorithm)
            batch = await client.check_batch([Check("read", algorithm), Check("share", algorithm)])
            assert batch.results == (True, False)
            listed = await client.list_resources("update", "algorithm", context=org.id)
            assert listed.resources == (org.algorithm,)
            subjects = await client.list_subjects("delete", ("algorithm", org.algorithm))
            assert subjects.subjects == (org.owner,)
            with pytest.raises(InvalidRequest):
                await client.check("read", "algorithm:bad:id")
        async with AsyncAuthzClient(server.url, "bad") as client:
            with pytest.raises(Unauthenticated):
                await client.check("read", "algorithm:x")

    asyncio.run(scenario())
