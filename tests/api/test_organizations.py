"""Organizations over HTTP: create, list, read, update, delete, and who may do each."""

from fastapi.testclient import TestClient

from authz.services.runtime import Runtime
from tests.conftest import BILLING, add_member, auth, create_org


def test_creator_becomes_owner_and_sees_the_org(client: TestClient) -> None:
    response = client.post(
        "/v1/organizations", json={"name": "  Quantum Lab  ", "billing_address": BILLING}, headers=auth("alice")
    )
    assert response.status_code == 201
    org = response.json()
    assert org["name"] == "Quantum Lab"
    assert org["id"].startswith("org_")
    assert org["billing_address"]["country"] == "DE"
    assert int(response.headers["X-Authz-Revision"]) >= 2

    listing = client.get("/v1/organizations", headers=auth("alice")).json()
    assert [(o["id"], o["role"]) for o in listing] == [(org["id"], "owner")]
    me = client.get("/v1/me", headers=auth("alice")).json()
    assert me["contexts"] == [
        {"type": "personal", "id": "personal", "name": None, "role": None},
        {"type": "organization", "id": org["id"], "name": "Quantum Lab", "role": "owner"},
    ]


def test_user_in_no_org_has_only_the_personal_context(client: TestClient) -> None:
    create_org(client, "alice")
    me = client.get("/v1/me", headers=auth("bob")).json()
    assert me == {"user_id": "bob", "email": "bob@example.com", "contexts": [
        {"type": "personal", "id": "personal", "name": None, "role": None}]}
    assert client.get("/v1/organizations", headers=auth("bob")).json() == []


def test_billing_address_is_shown_only_to_those_who_may_read_billing(client: TestClient, runtime: Runtime) -> None:
    org_id = create_org(client, "alice")
    add_member(runtime, org_id, "vera", "viewer")
    as_owner = client.get(f"/v1/organizations/{org_id}", headers=auth("alice")).json()
    as_viewer = client.get(f"/v1/organizations/{org_id}", headers=auth("vera")).json()
    assert as_owner["billing_address"]["city"] == "Berlin"
    assert as_viewer["billing_address"] is None
    assert as_viewer["role"] == "viewer"


def test_non_member_gets_404_not_403(client: TestClient) -> None:
    org_id = create_org(client, "alice")
    for method, path in [("GET", ""), ("PATCH", ""), ("DELETE", ""), ("GET", "/members"), ("GET", "/audit")]:
        response = client.request(method, f"/v1/organizations/{org_id}{path}", headers=auth("mallory"),
                                  json={"name": "pwned"} if method == "PATCH" else None)
        assert response.status_code == 404, (method, path, response.text)
        assert response.headers["content-type"] == "application/problem+json"


def test_only_owner_updates_profile_and_billing(client: TestClient, runtime: Runtime) -> None:
    org_id = create_org(client, "alice")
    add_member(runtime, org_id, "max", "maintainer")
    refused = client.patch(f"/v1/organizations/{org_id}", json={"name": "Max Lab"}, headers=auth("max"))
    assert refused.status_code == 403
    changed = client.patch(
        f"/v1/organizations/{org_id}",
        json={"name": "New Name", "billing_address": {**BILLING, "city": "Munich"}},
        headers=auth("alice"),
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["name"] == "New Name"
    assert changed.json()["billing_address"]["city"] == "Munich"
    assert "X-Authz-Revision" in changed.headers
    assert client.get(f"/v1/organizations/{org_id}", headers=auth("max")).json()["name"] == "New Name"


def test_invalid_organization_fields_are_422_naming_the_field(client: TestClient) -> None:
    cases = [
        ({"name": "   ", "billing_address": BILLING}, "name"),
        ({"name": "x" * 101, "billing_address": BILLING}, "name"),
        ({"name": "Lab", "billing_address": {**BILLING, "country": "XX"}}, "billing_address.country"),
        ({"name": "Lab", "billing_address": {**BILLING, "country": "Germany"}}, "billing_address.country"),
        ({"name": "Lab", "billing_address": {k: v for k, v in BILLING.items() if k != "city"}}, "billing_address.city"),
        ({"name": "Lab\x00", "billing_address": BILLING}, "name"),
        ({"name": "Lab"}, "billing_address"),
    ]
    for body, field in cases:
        response = client.post("/v1/organizations", json=body, headers=auth("alice"))
        assert response.status_code == 422, (body, response.text)
        problem = response.json()
        assert problem["status"] == 422
        assert field in [e["field"] for e in problem["errors"]], (field, problem)
    assert client.get("/v1/organizations", headers=auth("alice")).json() == []


def test_owner_deletes_org_and_nothing_in_it_decides_any_more(client: TestClient, runtime: Runtime) -> None:
    """DELETE archives (tests/api/test_lifecycle.py has the rest): the content stays registered but denies."""
    org_id = create_org(client, "alice")
    add_member(runtime, org_id, "max", "maintainer")
    created = client.post("/v1/resources", json={"type": "algorithm", "id": "grover"},
                          headers=auth("max", context=org_id))
    assert created.status_code == 201, created.text
    assert client.delete(f"/v1/organizations/{org_id}", headers=auth("max")).status_code == 403
    deleted = client.delete(f"/v1/organizations/{org_id}", headers=auth("alice"))
    assert deleted.status_code == 204
    assert client.get(f"/v1/organizations/{org_id}", headers=auth("alice")).status_code == 404
    assert client.get("/v1/organizations", headers=auth("max")).json() == []
    check = client.post("/v1/check", json={"action": "read", "resource": {"type": "algorithm", "id": "grover"}},
                        headers=auth("max"))
    assert check.json()["allowed"] is False
    assert client.post("/v1/list-resources", json={"action": "read", "type": "algorithm"},
                       headers=auth("max")).json()["resources"] == []
