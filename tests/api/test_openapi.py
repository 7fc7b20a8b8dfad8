"""The OpenAPI document describes every endpoint of the contract with models and errors."""

from fastapi.testclient import TestClient

CONTRACT = {
    ("get", "/v1/me"),
    ("post", "/v1/organizations"), ("get", "/v1/organizations"),
    ("get", "/v1/organizations/{org_id}"), ("patch", "/v1/organizations/{org_id}"), ("delete", "/v1/organizations/{org_id}"),
    ("get", "/v1/organizations/{org_id}/members"),
    ("patch", "/v1/organizations/{org_id}/members/{user_id}"), ("delete", "/v1/organizations/{org_id}/members/{user_id}"),
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
    assert CONTRACT <= documented
    for method, path in CONTRACT:
        if not path.startswith("/v1"):
            continue
        operation = spec["paths"][path][method]
        assert "401" in operation["responses"], (method, path)
        if method in ("post", "put", "patch") and path not in ("/v1/policy/reload",):
            assert "requestBody" in operation, (method, path)
    assert client.get("/docs").status_code == 200
