"""The change feed over HTTP: scope, order, paging, long-poll, and no secret in it (SSE: tests/e2e)."""

import hashlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient

from authz.domain.principal import cli_principal
from authz.services.runtime import Runtime
from authz.services.service_keys import create_service_key
from tests.conftest import add_member, auth, create_org, service_key


def _all(client: TestClient, headers: dict[str, str], after: int = 0, limit: int = 100) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while True:
        page = client.get("/v1/changes", params={"after": after, "limit": limit}, headers=headers).json()
        found += page["changes"]
        if not page["changes"]:
            return found
        after = page["next_after"]


def test_only_a_service_key_with_changes_read_may_follow(client: TestClient, runtime: Runtime) -> None:
    assert client.get("/v1/changes").status_code == 401
    for headers in (auth("alice"), service_key(runtime, "check"), service_key(runtime, "admin")):
        refused = client.get("/v1/changes", headers=headers)
        assert refused.status_code == 403, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
    assert client.get("/v1/changes", headers=service_key(runtime, "changes:read")).status_code == 200


def test_changes_come_in_revision_order_one_per_revision_paged(client: TestClient, runtime: Runtime) -> None:
    key = service_key(runtime, "changes:read")
    org_id = create_org(client, "alice")
    add_member(runtime, org_id, "bob", "viewer")
    client.post("/v1/resources", json={"type": "algorithm", "id": "grover"}, headers=auth("alice", context=org_id))
    head = runtime.replica.revision
    changes = _all(client, key, limit=2)
    assert [c["revision"] for c in changes] == list(range(1, head + 1))
    last = changes[-3:]
    assert [c["kind"] for c in last] == ["relationships"] * 3
    assert {"op": "add_rule", "rule": ["g", "user:alice", "owner", org_id]} in last[0]["ops"]
    assert last[1]["ops"] == [{"op": "add_rule", "rule": ["g", "user:bob", "viewer", org_id]}]
    assert last[2]["ops"] == [{"op": "add_resource", "type": "algorithm", "id": "grover", "context": org_id}]
    assert all(c["at"] for c in changes)
    page = client.get("/v1/changes", params={"after": head - 1}, headers=key).json()
    assert [c["revision"] for c in page["changes"]] == [head] and page["next_after"] == head
    beyond = client.get("/v1/changes", params={"after": head + 50}, headers=key).json()
    assert beyond == {"changes": [], "next_after": head + 50}
    assert changes[0]["kind"] == "policy"


def test_no_secret_ever_appears_in_the_feed(client: TestClient, runtime: Runtime) -> None:
    reader = service_key(runtime, "changes:read")
    org_id = create_org(client, "alice")
    created = create_service_key(runtime, cli_principal(), "billing", ["check", "tokens:resolve"]).value
    secret = created.split("_", 2)[2]  # azk_<id>_<secret>: the secret itself may contain "_"
    token = "ibmq-" + "s3cr3t" * 6
    stored = client.put(f"/v1/organizations/{org_id}/backend-tokens/ibm", json={"token": token}, headers=auth("alice"))
    assert stored.status_code == 200, stored.text
    invited = client.post(
        f"/v1/organizations/{org_id}/invitations",
        json={"email": "bob@example.com", "role": "viewer"},
        headers=auth("alice"),
    )
    assert invited.status_code == 201
    text = client.get("/v1/changes", params={"limit": 1000}, headers=reader).text
    assert "service_keys" in text  # the key's creation is in the feed ...
    for leaked in (created, secret, hashlib.sha256(secret.encode()).hexdigest(), token, token[-12:]):
        assert leaked not in text  # ... but never the key, its hash, or a backend token


def test_long_poll_answers_as_soon_as_a_change_commits(client: TestClient, runtime: Runtime) -> None:
    key = service_key(runtime, "changes:read")
    org_id = create_org(client, "alice")
    head = runtime.replica.revision
    writer = threading.Timer(0.5, add_member, args=(runtime, org_id, "bob", "viewer"))
    writer.start()
    started = time.monotonic()
    page = client.get("/v1/changes", params={"after": head, "wait": 10}, headers=key).json()
    elapsed = time.monotonic() - started
    writer.join()
    assert [c["revision"] for c in page["changes"]] == [head + 1]
    assert 0.4 < elapsed < 5


def test_long_poll_with_nothing_new_answers_empty_after_wait(client: TestClient, runtime: Runtime) -> None:
    key = service_key(runtime, "changes:read")
    head = runtime.replica.revision
    started = time.monotonic()
    page = client.get("/v1/changes", params={"after": head, "wait": 0.6}, headers=key).json()
    assert page == {"changes": [], "next_after": head}
    assert 0.5 < time.monotonic() - started < 5


def test_waiting_long_polls_hold_no_worker_thread(client: TestClient, runtime: Runtime) -> None:
    """More waiting feed requests than the thread pool has threads (40); a sync endpoint still answers at once.

    Once every request is parked, a commit answers them all (each with the new change): the test
    need not sit out their wait.
    """
    key = service_key(runtime, "changes:read")
    head = runtime.replica.revision
    with ThreadPoolExecutor(60) as pool:
        waits = [
            pool.submit(client.get, "/v1/changes", params={"after": head, "wait": 20}, headers=key) for _ in range(60)
        ]
        deadline = time.monotonic() + 15
        while runtime.replica.waiting() < 60 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert runtime.replica.waiting() == 60, "the long-polls never all parked"
        started = time.monotonic()
        orgs = client.get("/v1/organizations", headers=auth("alice"))
        elapsed = time.monotonic() - started
        assert orgs.status_code == 200
        assert all(not w.done() for w in waits)  # they are all still waiting
        assert elapsed < 1.0, f"a sync endpoint waited {elapsed:.2f}s behind long-polls"
        create_org(client, "alice")
        responses = [w.result(timeout=10) for w in waits]
    assert all(r.status_code == 200 and r.json()["changes"] for r in responses)


@pytest.mark.parametrize(
    "params", [{"after": -1}, {"after": "x"}, {"limit": 0}, {"limit": 1001}, {"wait": 31}, {"wait": -1}]
)
def test_bad_parameters_are_422_naming_them(client: TestClient, runtime: Runtime, params: dict[str, object]) -> None:
    response = client.get("/v1/changes", params=params, headers=service_key(runtime, "changes:read"))
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == next(iter(params))


def test_a_bad_last_event_id_is_422(client: TestClient, runtime: Runtime) -> None:
    headers = {**service_key(runtime, "changes:read"), "Last-Event-ID": "abc"}
    response = client.get("/v1/changes", headers=headers)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "Last-Event-ID"
