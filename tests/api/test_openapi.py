"""The OpenAPI document describes every endpoint of the contract with models and errors."""

from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import ONE_DATABASE

pytestmark = ONE_DATABASE  # the schema does not depend on the database

CONTRACT = {
    ("get", "/v1/me"),
    ("post", "/v1/organizations"), ("get", "/v1/organizations"),
    ("get", "/v1/organizations/{org_id}"), ("patch", "/v1/organizations/{org_id}"),
    ("delete", "/v1/organizations/{org_id}"),
    ("get", "/v1/organizations/{org_id}/members"),
    ("patch", "/v1/organizations/{org_id}/members/{user_id}"),
    ("delete", "/v1/organizations/{org_id}/members/{user_id}"),
    ("post", "/v1/resources"), ("get", "/v1/resources/{resource_type}/{resource_id}"),
    ("delete", "/v1/resources/{resource_type}/{resource_id}"),
    ("get", "/v1/resources/{resource_type}/{resource_id}/members"),
    ("put", "/v1/resources/{resource_type}/{resource_id}/members/{user_id}"),
    ("post", "/v1/check"), ("post", "/v1/check/batch"), ("post", "/v1/list-resources"), ("post", "/v1/list-subjects"),
    ("get", "/v1/policy"), ("post", "/v1/policy/reload"), ("get", "/v1/organizations/{org_id}/audit"),
    ("get", "/healthz"), ("get", "/readyz"), ("get", "/metrics"),
}


def test_every_contract_endpoint_is_documented(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    documented = {(method, path) for path, item in spec["paths"].items() for method in item}
    assert documented >= CONTRACT
    for method, path in CONTRACT:
        if not path.startswith("/v1"):
            continue
        operation = spec["paths"][path][method]
        assert "401" in operation["responses"], (method, path)
        if method in ("post", "put", "patch") and path not in ("/v1/policy/reload",):
            assert "requestBody" in operation, (method, path)
    assert client.get("/docs").status_code == 200


def test_the_check_routes_are_described_from_their_parameters(client: TestClient) -> None:
    """/v1/check and /v1/check/batch: body model, X-Account-Context, `explain`, and the answer's model."""
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]

    def schema_of(node: dict[str, Any]) -> dict[str, Any]:
        return dict(schemas[node["$ref"].rsplit("/", 1)[1]]) if "$ref" in node else node

    check, batch = spec["paths"]["/v1/check"]["post"], spec["paths"]["/v1/check/batch"]["post"]
    for operation in (check, batch):
        assert operation["requestBody"]["required"] is True
    check_body = schema_of(check["requestBody"]["content"]["application/json"]["schema"])
    assert set(check_body["properties"]) == {"subject", "action", "resource", "context", "min_revision"}
    assert set(check_body["required"]) == {"action", "resource"}
    assert check_body["additionalProperties"] is False
    assert set(schema_of(check_body["properties"]["resource"])["required"]) == {"type"}
    batch_body = schema_of(batch["requestBody"]["content"]["application/json"]["schema"])
    assert batch_body["properties"]["checks"]["maxItems"] == 1000
    assert set(schema_of(batch_body["properties"]["checks"]["items"])["required"]) == {"action", "resource"}

    check_parameters = {(p["in"], p["name"].lower()): p for p in check["parameters"]}
    assert set(check_parameters) == {("query", "explain"), ("header", "x-account-context")}
    explain = check_parameters[("query", "explain")]
    assert (explain["required"], explain["schema"]["type"], explain["schema"]["default"]) == (False, "boolean", False)
    assert {(p["in"], p["name"].lower()) for p in batch["parameters"]} == {("header", "x-account-context")}

    answer = check["responses"]["200"]["content"]["application/json"]["schema"]
    assert set(schema_of(answer)["required"]) == {"allowed", "revision"}
    assert {"401", "403", "422", "503"} <= set(check["responses"]) & set(batch["responses"])
