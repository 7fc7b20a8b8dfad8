"""The races and torn reads of issue 11, tried for real over HTTP on SQLite and PostgreSQL.

Each race is released by a barrier from two threads, many rounds over; what is asserted
is what the attacker or the user would notice afterwards, not how the server got there.
The history checker (tests/history) searches the same space at random across replicas.
"""

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from authz.bootstrap import open_runtime
from authz.domain.principal import cli_principal
from authz.services.lifecycle import purge_organization
from authz.services.runtime import Runtime
from authz.settings import Settings
from tests.app_client import AppClient
from tests.conftest import add_member, auth, create_org
from tests.hypothesis_budget import examples

ROUNDS = examples(12)  # each round is one example of the interleaving (tests/hypothesis_budget.py)


def race(first: Callable[[], httpx.Response], second: Callable[[], httpx.Response]) -> tuple[int, int]:
    """Run both at once (released by one barrier); their status codes."""
    barrier = threading.Barrier(2)

    def fire(request: Callable[[], httpx.Response]) -> int:
        barrier.wait(timeout=10)
        return request().status_code

    with ThreadPoolExecutor(max_workers=2) as pool:
        a, b = pool.submit(fire, first), pool.submit(fire, second)
        return a.result(timeout=60), b.result(timeout=60)


def test_sharing_that_races_a_deletion_never_plants_a_role_for_a_later_resource(
    client: TestClient, runtime: Runtime
) -> None:
    """The cross-tenant takeover: a share racing the deletion must not survive it."""
    org = create_org(client, "alice")
    victim_org = create_org(client, "victor", "Victim Lab")
    for round_ in range(ROUNDS):
        resource = f"planted{round_}"
        assert client.post("/v1/resources", json={"type": "algorithm", "id": resource},
                           headers=auth("alice", context=org)).status_code == 201
        shared, deleted = race(
            partial(client.put, f"/v1/resources/algorithm/{resource}/members/mallory", json={"role": "owner"},
                    headers=auth("alice")),
            partial(client.delete, f"/v1/resources/algorithm/{resource}", headers=auth("alice")),
        )
        assert deleted == 204 and shared in (200, 404), (shared, deleted)
        # Another organization registers the same id later: the accomplice must get nothing.
        assert client.post("/v1/resources", json={"type": "algorithm", "id": resource},
                           headers=auth("victor", context=victim_org)).status_code == 201
        for action in ("read", "update", "delete", "share"):
            question = {"action": action, "resource": {"type": "algorithm", "id": resource}}
            answer = client.post("/v1/check", json=question, headers=auth("mallory")).json()
            assert answer["allowed"] is False, (round_, action)
        assert client.get(f"/v1/resources/algorithm/{resource}", headers=auth("mallory")).status_code == 404
    listed = client.post("/v1/list-resources", json={"action": "read", "type": "algorithm"}, headers=auth("mallory"))
    assert listed.json()["resources"] == []


def test_sharing_that_races_the_organizations_deletion_leaves_no_role(client: TestClient, runtime: Runtime) -> None:
    """The org's DELETE archives it; its purge frees the id: no role planted by the racing share survives."""
    for round_ in range(ROUNDS):
        org = create_org(client, "alice", f"Lab {round_}")
        resource = f"shared{round_}"
        assert client.post("/v1/resources", json={"type": "algorithm", "id": resource},
                           headers=auth("alice", context=org)).status_code == 201
        shared, deleted = race(
            partial(client.put, f"/v1/resources/algorithm/{resource}/members/mallory", json={"role": "owner"},
                    headers=auth("alice")),
            partial(client.delete, f"/v1/organizations/{org}", headers=auth("alice")),
        )
        assert deleted == 204 and shared in (200, 404), (shared, deleted)
        purge_organization(runtime, cli_principal(), org, now=True)
        mine = create_org(client, "victor", f"Other {round_}")
        assert client.post("/v1/resources", json={"type": "algorithm", "id": resource},
                           headers=auth("victor", context=mine)).status_code == 201
        answer = client.post("/v1/check", json={"action": "read", "resource": {"type": "algorithm", "id": resource}},
                             headers=auth("mallory")).json()
        assert answer["allowed"] is False, round_


def test_content_registered_while_its_organization_is_deleted_goes_with_it(
    client: TestClient, runtime: Runtime
) -> None:
    """No orphaned content: after the purge the id is either gone with the org or was never registered."""
    for round_ in range(ROUNDS):
        org = create_org(client, "alice", f"Doomed {round_}")
        resource = f"late{round_}"
        registered, deleted = race(
            partial(client.post, "/v1/resources", json={"type": "algorithm", "id": resource},
                    headers=auth("alice", context=org)),
            partial(client.delete, f"/v1/organizations/{org}", headers=auth("alice")),
        )
        assert deleted == 204 and registered in (201, 404), (registered, deleted)
        purge_organization(runtime, cli_principal(), org, now=True)
        # The id is free again: a new owner can register it (never a 409 for a context that is gone).
        mine = create_org(client, "bob", f"Next {round_}")
        again = client.post(
            "/v1/resources", json={"type": "algorithm", "id": resource}, headers=auth("bob", context=mine)
        )
        assert again.status_code == 201, again.text


def test_listings_under_concurrent_writes_always_answer_at_one_revision(client: TestClient, runtime: Runtime) -> None:
    """Torn reads: listings while the index changes never fail, and report a revision that was committed."""
    org = create_org(client, "alice")
    add_member(runtime, org, "bob", "viewer")
    stop = threading.Event()
    failures: list[str] = []

    def write() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            client.post("/v1/resources", json={"type": "algorithm", "id": f"a{n}"}, headers=auth("alice", context=org))
            client.patch(
                f"/v1/organizations/{org}/members/bob",
                json={"role": "maintainer" if n % 2 else "viewer"},
                headers=auth("alice"),
            )

    def read() -> None:
        for _ in range(examples(150)):
            listed = client.post(
                "/v1/list-resources", json={"action": "read", "type": "algorithm"}, headers=auth("bob")
            )
            subjects = client.post(
                "/v1/list-subjects",
                json={"action": "read", "resource": {"type": "algorithm", "id": "a1"}},
                headers=auth("alice"),
            )
            for response in (listed, subjects):
                if response.status_code not in (200, 403):
                    failures.append(f"{response.status_code} {response.text}")

    writer = threading.Thread(target=write)
    readers = [threading.Thread(target=read) for _ in range(2)]
    writer.start()
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join(timeout=120)
    stop.set()
    writer.join(timeout=60)
    assert failures == []


@pytest.fixture
def waiting_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"min_revision_wait": 3.0})


@pytest.fixture
def waiting_runtime(waiting_settings: Settings) -> Iterator[Runtime]:
    """A runtime with the longer wait: the route reads it from the runtime's settings, not the app's."""
    runtime = open_runtime(waiting_settings, migrate=False)
    yield runtime
    runtime.database.dispose()


def test_requests_waiting_for_a_revision_hold_no_thread(waiting_settings: Settings, waiting_runtime: Runtime) -> None:
    """300 checks waiting for a far-future revision (more than the worker threads) while /v1/me answers.

    With a thread per wait, /v1/me would queue behind them until their waits end; it must
    answer while every one of them is still waiting. The waits are then ended by the server's
    shutdown, as a stop ends them (a wait that runs out is test_min_revision_ahead_of_the_replica_is_503):
    the long bound gives 300 requests time to park on a loaded machine, without being sat out.
    """
    app = create_app(waiting_settings, waiting_runtime)

    async def scenario() -> tuple[list[int], bool]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://authz") as http:
            body = {"action": "read", "resource": {"type": "algorithm"}, "context": "personal", "min_revision": 10**9}
            waits = [asyncio.create_task(http.post("/v1/check", json=body, headers=auth("alice"))) for _ in range(300)]
            deadline = time.monotonic() + 1.5
            while waiting_runtime.replica.waiting() < 300 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            assert waiting_runtime.replica.waiting() == 300, "the checks never all parked"
            me = await http.get("/v1/me", headers=auth("alice"))
            pending_while_answered = not any(task.done() for task in waits)
            app.state.shutdown.begin()
            responses = await asyncio.wait_for(asyncio.gather(*waits), timeout=2)
            statuses = [response.status_code for response in responses]
            assert {response.json()["detail"] for response in responses} == {
                "this replica is shutting down; retry on another"}
            assert me.status_code == 200
            return statuses, pending_while_answered

    with AppClient(app):  # runs the lifespan (runtime, follower)
        statuses, pending_while_answered = asyncio.run(scenario())
    assert pending_while_answered
    assert set(statuses) == {503}
