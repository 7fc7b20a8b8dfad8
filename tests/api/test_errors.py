"""Every error is problem+json; bad input never gives a 500 and never widens access."""

from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from authz.services.runtime import Runtime
from tests.conftest import BILLING, ONE_DATABASE, auth, create_org, service_key

HOSTILE = ["*", "%", "..", "a,b", "x' OR '1'='1", "a" * 1000, "org_*", "user:*", "bad\tid", "é"]


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert {"type", "title", "status", "detail"} <= set(body)
    assert body["status"] == status
    assert "Traceback" not in response.text
    return body


@ONE_DATABASE
def test_unknown_route_405_and_malformed_json(client: TestClient) -> None:
    assert_problem(client.get("/v2/nothing"), 404)
    assert_problem(client.put("/healthz"), 405)
    malformed = client.post(
        "/v1/organizations", content=b"{not json", headers={**auth("a"), "Content-Type": "application/json"}
    )
    assert_problem(malformed, 400)


@ONE_DATABASE
def test_a_body_that_is_not_declared_json_is_415(client: TestClient) -> None:
    form = client.post(
        "/v1/check", content=b"action=read", headers={**auth("a"), "Content-Type": "application/x-www-form-urlencoded"}
    )
    assert "Content-Type: application/json" in assert_problem(form, 415)["detail"]


@ONE_DATABASE
def test_body_over_the_limit_is_413_and_changes_nothing(client: TestClient) -> None:
    huge = {"name": "x" * (1024 * 1024 + 10), "billing_address": BILLING}
    assert_problem(client.post("/v1/organizations", json=huge, headers=auth("alice")), 413)
    assert client.get("/v1/organizations", headers=auth("alice")).json() == []


@ONE_DATABASE
def test_validation_errors_name_each_field(client: TestClient) -> None:
    body = assert_problem(client.post("/v1/organizations", json={"name": 5, "extra": 1}, headers=auth("a")), 422)
    fields = {e["field"] for e in body["errors"]}
    assert {"name", "billing_address", "extra"} <= fields


@pytest.mark.parametrize("hostile", HOSTILE)
@ONE_DATABASE
def test_hostile_context_header_is_rejected(client: TestClient, hostile: str) -> None:
    create_org(client, "victim")
    response = client.post(
        "/v1/resources",
        json={"type": "algorithm", "id": "x"},
        headers={**auth("mallory"), "X-Account-Context": hostile.encode("utf-8")},
    )
    body = assert_problem(response, 422)
    assert body["errors"][0]["field"] == "X-Account-Context"


@pytest.mark.parametrize("hostile", HOSTILE)
@ONE_DATABASE
def test_hostile_ids_in_checks_never_allow(client: TestClient, runtime: Runtime, hostile: str) -> None:
    org_id = create_org(client, "victim")
    client.post(
        "/v1/resources", json={"type": "algorithm", "id": "crown-jewel"}, headers=auth("victim", context=org_id)
    )
    key = service_key(runtime, "check")
    bodies = [
        {"subject": hostile, "action": "delete", "resource": {"type": "algorithm", "id": "crown-jewel"}},
        {"subject": "mallory", "action": "delete", "resource": {"type": "algorithm", "id": hostile}},
        {"subject": "mallory", "action": "create", "resource": {"type": "algorithm"}, "context": hostile},
        {"subject": "mallory", "action": hostile, "resource": {"type": "algorithm", "id": "crown-jewel"}},
        {"subject": "mallory", "action": "delete", "resource": {"type": hostile, "id": "crown-jewel"}},
    ]
    for body in bodies:
        response = client.post("/v1/check", json=body, headers=key)
        assert response.status_code == 422, (body, response.text)
        assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("hostile", ["*", "..", "a,b", "x' OR '1'='1", "a" * 300, "org_" + "0" * 24])
def test_hostile_path_ids_are_404_or_422(client: TestClient, hostile: str) -> None:
    create_org(client, "victim")
    for path in (
        f"/v1/organizations/{hostile}",
        f"/v1/organizations/{hostile}/members",
        f"/v1/resources/algorithm/{hostile}",
    ):
        response = client.get(path, headers=auth("mallory"))
        # ".." is resolved by the client first: "/v1/resources/algorithm/.." is "/v1/resources" (GET: 405)
        assert response.status_code in (404, 405, 422), (path, response.text)
        assert response.headers["content-type"] == "application/problem+json"
