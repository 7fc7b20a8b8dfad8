"""Resources over HTTP: registered in the current context, which never changes, and shared per resource."""

import httpx
from fastapi.testclient import TestClient

from authz.services.runtime import Runtime
from tests.conftest import add_member, auth, create_org


def register(
    client: TestClient, user: str, resource_id: str, context: str | None = None, type_: str = "algorithm"
) -> httpx.Response:
    return client.post("/v1/resources", json={"type": type_, "id": resource_id}, headers=auth(user, context=context))


def test_personal_context_works_with_no_setup(client: TestClient) -> None:
    created = register(client, "alice", "my-algo")
    assert created.status_code == 201, created.text
    assert created.json()["context"] == "user:alice"
    assert created.json()["created_by"] == "alice"
    assert client.get("/v1/resources/algorithm/my-algo", headers=auth("alice")).status_code == 200
    assert client.get("/v1/resources/algorithm/my-algo", headers=auth("bob")).status_code == 404
    assert client.delete("/v1/resources/algorithm/my-algo", headers=auth("bob")).status_code == 404
    assert client.delete("/v1/resources/algorithm/my-algo", headers=auth("alice")).status_code == 204


def test_roles_decide_create_and_delete_in_an_org(client: TestClient, runtime: Runtime) -> None:
    org_id = create_org(client, "alice")
    add_member(runtime, org_id, "max", "maintainer")
    add_member(runtime, org_id, "vera", "viewer")
    assert register(client, "vera", "v1", org_id).status_code == 403
    created = register(client, "max", "qaoa", org_id)
    assert created.status_code == 201
    assert created.json()["context"] == org_id
    assert client.get("/v1/resources/algorithm/qaoa", headers=auth("vera")).status_code == 200
    assert client.delete("/v1/resources/algorithm/qaoa", headers=auth("max")).status_code == 403
    assert client.delete("/v1/resources/algorithm/qaoa", headers=auth("alice")).status_code == 204


def test_context_of_a_resource_never_changes(client: TestClient, runtime: Runtime) -> None:
    org_a = create_org(client, "alice", "A")
    org_b = create_org(client, "alice", "B")
    assert register(client, "alice", "shor", org_a).status_code == 201
    for context in (org_a, org_b, None):
        again = register(client, "alice", "shor", context)
        assert again.status_code == 409, again.text
    assert client.get("/v1/resources/algorithm/shor", headers=auth("alice")).json()["context"] == org_a


def test_context_header_of_an_org_one_is_not_member_of_is_404(client: TestClient) -> None:
    org_id = create_org(client, "alice")
    response = register(client, "mallory", "x", org_id)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_per_resource_roles_add_and_never_take_away(client: TestClient, runtime: Runtime) -> None:
    org_id = create_org(client, "alice")
    add_member(runtime, org_id, "max", "maintainer")
    assert register(client, "alice", "vqe", org_id).status_code == 201
    # an outsider gets viewer on this one algorithm
    shared = client.put("/v1/resources/algorithm/vqe/members/guest", json={"role": "viewer"}, headers=auth("alice"))
    assert shared.status_code == 200, shared.text
    assert shared.json() == {"user_id": "guest", "role": "viewer", "expires_at": None}
    assert client.get("/v1/resources/algorithm/vqe", headers=auth("guest")).status_code == 200
    assert client.delete("/v1/resources/algorithm/vqe", headers=auth("guest")).status_code == 403
    # a viewer role on the resource does not reduce the maintainer's org role
    client.put("/v1/resources/algorithm/vqe/members/max", json={"role": "viewer"}, headers=auth("alice"))
    check = client.post("/v1/check", json={"action": "update", "resource": {"type": "algorithm", "id": "vqe"}},
                        headers=auth("max"))
    assert check.json()["allowed"] is True
    # maintainers may not share (owners only, by the shipped policy)
    refused = client.put("/v1/resources/algorithm/vqe/members/eve", json={"role": "owner"}, headers=auth("max"))
    assert refused.status_code == 403
    listing = client.get("/v1/resources/algorithm/vqe/members", headers=auth("alice")).json()
    assert listing == [{"user_id": "guest", "role": "viewer", "expires_at": None},
                       {"user_id": "max", "role": "viewer", "expires_at": None}]
    assert client.delete("/v1/resources/algorithm/vqe/members/guest", headers=auth("alice")).status_code == 204
    assert client.get("/v1/resources/algorithm/vqe", headers=auth("guest")).status_code == 404


def test_only_content_types_can_be_registered(client: TestClient) -> None:
    for bad_type in ("member", "billing", "spaceship", "ALGORITHM"):
        response = register(client, "alice", "x", type_=bad_type)
        assert response.status_code == 422, bad_type
        assert response.json()["errors"][0]["field"] == "type"
