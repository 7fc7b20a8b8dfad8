"""Paged reverse queries over HTTP: limit, cursor, next_cursor, and cursors that were tampered with."""

from typing import Any

import pytest
from fastapi.testclient import TestClient

from authz.services.runtime import Runtime
from tests.conftest import ONE_DATABASE, add_member, auth, create_org, service_key

pytestmark = ONE_DATABASE  # listings and cursors are answered from the replica, on either database


def _register(client: TestClient, owner: str, org_id: str, ids: list[str]) -> None:
    for resource_id in ids:
        created = client.post("/v1/resources", json={"type": "algorithm", "id": resource_id},
                              headers=auth(owner, context=org_id))
        assert created.status_code == 201, created.text


def _walk(client: TestClient, path: str, body: dict[str, Any], headers: dict[str, str], key: str) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor = None
    while True:
        response = client.post(path, json={**body, **({"cursor": cursor} if cursor else {})}, headers=headers)
        assert response.status_code == 200, response.text
        data = response.json()
        pages.append(data[key])
        cursor = data["next_cursor"]
        if cursor is None:
            return pages


def test_list_resources_pages_in_id_order_to_the_end(client: TestClient, runtime: Runtime) -> None:
    org_id = create_org(client, "alice")
    names = [f"algo-{n:02d}" for n in range(11)]
    _register(client, "alice", org_id, names)
    pages = _walk(client, "/v1/list-resources", {"action": "read", "type": "algorithm", "context": org_id, "limit": 4},
                  auth("alice"), "resources")
    assert pages == [names[0:4], names[4:8], names[8:11]]
    everything = client.post("/v1/list-resources", json={"action": "read", "type": "algorithm", "context": org_id},
                             headers=auth("alice")).json()
    assert everything["resources"] == names and everything["next_cursor"] is None


def test_an_exact_last_page_says_there_is_no_next_page(client: TestClient, runtime: Runtime) -> None:
    org_id = create_org(client, "alice")
    _register(client, "alice", org_id, ["a", "b", "c", "d"])
    pages = _walk(client, "/v1/list-resources", {"action": "read", "type": "algorithm", "context": org_id, "limit": 2},
                  auth("alice"), "resources")
    assert pages == [["a", "b"], ["c", "d"]]


def test_list_subjects_pages_and_a_walk_survives_changes_between_pages(client: TestClient, runtime: Runtime) -> None:
    org_id = create_org(client, "alice")
    _register(client, "alice", org_id, ["grover"])
    for user in ["bob", "carol", "dave", "erin", "frank"]:
        add_member(runtime, org_id, user, "viewer")
    key = service_key(runtime, "check")
    body = {"action": "read", "resource": {"type": "algorithm", "id": "grover"}, "limit": 2}
    first = client.post("/v1/list-subjects", json=body, headers=key).json()
    assert first["subjects"] == ["alice", "bob"]
    # Between pages: a new member sorts before the cursor, another after it; carol leaves.
    add_member(runtime, org_id, "aaron", "viewer")
    add_member(runtime, org_id, "zoe", "viewer")
    left = client.delete(f"/v1/organizations/{org_id}/members/carol", headers=auth("carol"))
    assert left.status_code == 204
    seen = list(first["subjects"])
    cursor = first["next_cursor"]
    while cursor:
        page = client.post("/v1/list-subjects", json={**body, "cursor": cursor}, headers=key).json()
        seen += page["subjects"]
        cursor = page["next_cursor"]
    assert seen == ["alice", "bob", "dave", "erin", "frank", "zoe"]  # each present-throughout id once


def _cursor(client: TestClient, org_id: str) -> tuple[dict[str, Any], str]:
    body = {"action": "read", "type": "algorithm", "context": org_id, "limit": 1}
    first = client.post("/v1/list-resources", json=body, headers=auth("alice")).json()
    return body, first["next_cursor"]


def _refused(response: Any) -> None:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["errors"][0]["field"] == "cursor"
    assert "cursor" in problem["detail"]


def test_every_altered_character_of_a_cursor_is_refused(client: TestClient, runtime: Runtime) -> None:
    org_id = create_org(client, "alice")
    _register(client, "alice", org_id, ["a", "b", "c"])
    body, cursor = _cursor(client, org_id)
    last = client.post("/v1/list-resources", json={**body, "cursor": cursor}, headers=auth("alice")).json()
    assert last["resources"] == ["b"]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
    for position, char in enumerate(cursor):
        altered = cursor[:position] + alphabet[(alphabet.index(char) + 1) % len(alphabet)] + cursor[position + 1:]
        _refused(client.post("/v1/list-resources", json={**body, "cursor": altered}, headers=auth("alice")))


@pytest.mark.parametrize("forged", [
    "", ".", "x", "not-a-cursor", "a.b.c", "AQ.AAAAAAAAAAAAAAAAAAAAAA", "AWEi.AAAAAAAAAAAAAAAAAAAAAA",
    "é.é", "\x00.\x00", "A" * 999, "=" * 10,
])
def test_forged_cursors_are_400_never_500(client: TestClient, runtime: Runtime, forged: str) -> None:
    org_id = create_org(client, "alice")
    body = {"action": "read", "type": "algorithm", "context": org_id, "cursor": forged}
    _refused(client.post("/v1/list-resources", json=body, headers=auth("alice")))
    key = service_key(runtime, "check")
    subjects = {"action": "read", "resource": {"type": "algorithm", "id": "x"}, "cursor": forged}
    _refused(client.post("/v1/list-subjects", json=subjects, headers=key))


def test_a_cursor_of_another_query_is_refused(client: TestClient, runtime: Runtime) -> None:
    org_id = create_org(client, "alice")
    add_member(runtime, org_id, "bob", "owner")
    _register(client, "alice", org_id, ["a", "b", "c"])
    body, cursor = _cursor(client, org_id)
    key = service_key(runtime, "check")
    others = [
        ({**body, "action": "update"}, auth("alice")),                      # another action
        ({**body, "type": "job"}, auth("alice")),                            # another type
        ({**body, "context": "personal"}, auth("alice")),                    # another context
        (body, auth("bob")),                                                 # another subject (bob sees the same ids)
        ({**body, "subject": "bob"}, key),                                   # the same, asked by a service
    ]
    for other, headers in others:
        _refused(client.post("/v1/list-resources", json={**other, "cursor": cursor}, headers=headers))
    # ... and on the other endpoint
    subjects = {"action": "read", "resource": {"type": "algorithm", "id": "a"}, "cursor": cursor}
    _refused(client.post("/v1/list-subjects", json=subjects, headers=key))
    # the same query by the same subject through a service key is the same query
    same = client.post("/v1/list-resources", json={**body, "subject": "alice", "cursor": cursor}, headers=key)
    assert same.json()["resources"] == ["b"]


def test_a_cursor_from_another_server_key_is_refused(client: TestClient, runtime: Runtime) -> None:
    from authz.domain.cursors import CursorCodec

    org_id = create_org(client, "alice")
    _register(client, "alice", org_id, ["a", "b"])
    foreign = CursorCodec(b"k" * 32).encode(("list-resources", "alice", "read", "algorithm", org_id), "a")
    body = {"action": "read", "type": "algorithm", "context": org_id, "cursor": foreign}
    _refused(client.post("/v1/list-resources", json=body, headers=auth("alice")))


@pytest.mark.parametrize("limit", [0, -1, 10001, "ten", 1.5, True])
def test_limit_out_of_range_is_422_naming_it(client: TestClient, runtime: Runtime, limit: object) -> None:
    response = client.post("/v1/list-resources", json={"action": "read", "type": "algorithm", "limit": limit},
                           headers=auth("alice"))
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "limit"
