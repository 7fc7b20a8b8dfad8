"""Every size limit holds (issue 12, class 7) and every number is bounded by what the store holds (class 6)."""

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from authz.domain.limits import MAX_STORED_INT
from authz.services.runtime import Runtime
from authz.settings import Settings
from tests.conftest import BILLING, ONE_DATABASE, auth, create_org, make_settings, service_key

LIMIT = 1024
ORG = "org_" + "a" * 24
# Every route that reads a body.
BODY_ROUTES = [
    ("POST", "/v1/organizations"),
    ("PATCH", f"/v1/organizations/{ORG}"),
    ("PATCH", f"/v1/organizations/{ORG}/members/bob"),
    ("POST", f"/v1/organizations/{ORG}/invitations"),
    ("POST", "/v1/invitations/accept"),
    ("POST", "/v1/invitations/decline"),
    ("PUT", f"/v1/organizations/{ORG}/backend-tokens/ibm"),
    ("PUT", "/v1/me/backend-tokens/ibm"),
    ("POST", "/v1/backend-tokens/resolve"),
    ("POST", "/v1/resources"),
    ("PUT", "/v1/resources/algorithm/a1/members/bob"),
    ("POST", "/v1/check"),
    ("POST", "/v1/check/batch"),
    ("POST", "/v1/list-resources"),
    ("POST", "/v1/list-subjects"),
    ("POST", "/v1/authorize"),
    ("POST", "/v1/policy/reload"),
]


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url, max_body_bytes=LIMIT, min_revision_wait=0)


def chunks(total: int, size: int = 100) -> Iterator[bytes]:
    """A JSON-looking body sent without Content-Length (Transfer-Encoding: chunked)."""
    body = b'{"name": "' + b"x" * max(0, total - 12) + b'"}'
    for start in range(0, len(body), size):
        yield body[start:start + size]


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES, ids=[f"{m} {p}" for m, p in BODY_ROUTES])
@ONE_DATABASE
def test_a_chunked_body_over_the_limit_is_413_on_every_route(client: TestClient, method: str, path: str) -> None:
    for headers in (auth("alice"), {}):
        response = client.request(method, path, content=chunks(LIMIT + 1),
                                  headers={**headers, "Content-Type": "application/json"})
        assert response.status_code == 413, (method, path, response.status_code, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert str(LIMIT) in response.json()["detail"]


@ONE_DATABASE
def test_a_declared_body_over_the_limit_is_413(client: TestClient) -> None:
    response = client.post("/v1/organizations", content=b"{" + b" " * LIMIT + b"}", headers=auth("alice"))
    assert response.status_code == 413, response.text


def test_a_chunked_body_within_the_limit_is_read_whole(client: TestClient) -> None:
    body = b'{"name": "Chunked Lab", "billing_address": {"line1": "1 Qubit Way", "postal_code": "10115",' \
           b' "city": "Berlin", "country": "DE"}}'
    response = client.post("/v1/organizations", content=iter([body[:7], body[7:50], body[50:]]),
                           headers={**auth("alice"), "Content-Type": "application/json"})
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "Chunked Lab"
    check = client.post("/v1/check", content=iter([b'{"action": "read", ', b'"resource": {"type": "job"}}']),
                        headers={**auth("alice"), "Content-Type": "application/json"})
    assert check.status_code == 200, check.text


# ---- numbers (class 6) ----------------------------------------------------------------------

TOO_BIG = [MAX_STORED_INT + 1, 2**64, 10**40]


def test_audit_cursor_is_bounded(client: TestClient) -> None:
    org_id = create_org(client, "alice")
    url = f"/v1/organizations/{org_id}/audit"
    assert client.get(url, params={"before": MAX_STORED_INT}, headers=auth("alice")).status_code == 200
    for value in [*TOO_BIG, 0, -1, -(2**70)]:
        response = client.get(url, params={"before": value}, headers=auth("alice"))
        assert response.status_code == 422, (value, response.text)
        assert response.json()["errors"][0]["field"] == "before"
    for value in [0, 201, 2**64]:
        assert client.get(url, params={"limit": value}, headers=auth("alice")).status_code == 422


@pytest.mark.parametrize("path,body", [
    ("/v1/check", {"action": "read", "resource": {"type": "job"}}),
    ("/v1/check/batch", {"checks": [{"subject": "alice", "action": "read", "resource": {"type": "job"}}]}),
    ("/v1/list-resources", {"action": "read", "type": "algorithm"}),
    ("/v1/list-subjects", {"action": "read", "resource": {"type": "algorithm", "id": "a1"}}),
])
@ONE_DATABASE
def test_min_revision_is_bounded(client: TestClient, runtime: Runtime, path: str, body: dict[str, object]) -> None:
    key = service_key(runtime, "check")
    if path in ("/v1/check", "/v1/list-resources"):
        body = {**body, "subject": "alice"}
    for value in TOO_BIG + [-1]:
        response = client.post(path, json={**body, "min_revision": value}, headers=key)
        assert response.status_code == 422, (value, response.text)
        assert response.json()["errors"][0]["field"] == "min_revision"
    # the largest stored revision is a valid question: not reached yet, so 503 (no wait configured)
    response = client.post(path, json={**body, "min_revision": MAX_STORED_INT}, headers=key)
    assert response.status_code == 503, response.text
    assert client.post(path, json={**body, "min_revision": 0}, headers=key).status_code == 200


@ONE_DATABASE
def test_huge_numbers_where_strings_belong_are_422(client: TestClient) -> None:
    response = client.post("/v1/organizations", json={"name": 10**40, "billing_address": BILLING},
                           headers=auth("alice"))
    assert response.status_code == 422, response.text
    response = client.post("/v1/check", json={"action": "read", "resource": {"type": "job", "id": 2**70}},
                           headers=auth("alice"))
    assert response.status_code == 422, response.text


@pytest.mark.parametrize("instant", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59Z",
                                     "0001-01-01T00:00:00Z", "+275760-09-13T00:00:00Z", "2099-01-01T00:00:00+99:00"])
def test_an_instant_beyond_what_the_store_holds_is_422(client: TestClient, instant: str) -> None:
    """expires_at on memberships, per-resource roles and invitations: time is a number too."""
    org_id = create_org(client, "alice")
    assert client.post("/v1/resources", json={"type": "algorithm", "id": "a1"},
                       headers=auth("alice", context=org_id)).status_code == 201
    for method, path, body in (
        ("PATCH", f"/v1/organizations/{org_id}/members/alice", {"expires_at": instant}),
        ("PUT", "/v1/resources/algorithm/a1/members/bob", {"role": "viewer", "expires_at": instant}),
        ("POST", f"/v1/organizations/{org_id}/invitations", {"email": "bob@example.com", "role": "viewer",
                                                               "expires_at": instant}),
    ):
        response = client.request(method, path, json=body, headers=auth("alice"))
        assert response.status_code == 422, (method, path, response.text)
        assert response.json()["errors"][0]["field"].endswith("expires_at")


def test_change_feed_positions_are_bounded(client: TestClient, runtime: Runtime) -> None:
    key = service_key(runtime, "changes:read")
    assert client.get("/v1/changes", params={"after": MAX_STORED_INT}, headers=key).json()["changes"] == []
    for value in [*TOO_BIG, -1]:
        response = client.get("/v1/changes", params={"after": value}, headers=key)
        assert response.status_code == 422, (value, response.text)
        assert response.json()["errors"][0]["field"] == "after"
    for event_id in (str(MAX_STORED_INT + 1), "9999999999999999999", "99999999999999999999", "-1", "1e3"):
        response = client.get("/v1/changes", headers={**key, "Last-Event-ID": event_id})
        assert response.status_code == 422, (event_id, response.text)
    assert client.get("/v1/changes", headers={**key, "Last-Event-ID": str(MAX_STORED_INT)}).status_code == 200
