"""The decision fast path answers exactly as the FastAPI route does, or leaves the request to it.

A query string always takes the route (`?explain=false` changes nothing else), so each
request is sent both ways and the answers compared, errors included.
"""

from typing import Any

import pytest
from fastapi.testclient import TestClient

from authz.services.runtime import Runtime
from tests.conftest import add_member, auth, create_org, service_key


@pytest.fixture
def world(client: TestClient, runtime: Runtime) -> dict[str, Any]:
    org_id = create_org(client, "alice")
    add_member(runtime, org_id, "max", "maintainer")
    client.post("/v1/resources", json={"type": "algorithm", "id": "grover"}, headers=auth("alice", context=org_id))
    return {"org": org_id, "key": service_key(runtime, "check"), "admin": service_key(runtime, "admin")}


def both_ways(client: TestClient, path: str, body: Any, headers: dict[str, str]) -> tuple[Any, Any]:
    fast = client.post(path, json=body, headers=headers)
    routed = client.post(path + "?explain=false", json=body, headers=headers)
    return (fast.status_code, fast.json()), (routed.status_code, routed.json())


def test_checks_answer_the_same_both_ways(client: TestClient, world: dict[str, Any]) -> None:
    grover = {"type": "algorithm", "id": "grover"}
    cases = [
        (world["key"], {"subject": "max", "action": "update", "resource": grover}),
        (world["key"], {"subject": "max", "action": "delete", "resource": grover}),
        (world["key"], {"subject": "max", "action": "create", "resource": {"type": "job"}, "context": world["org"]}),
        (world["key"], {"subject": "*", "action": "read", "resource": grover}),  # 422 naming subject
        (world["key"], {"action": "read", "resource": grover}),  # a service key must name the subject
        (world["key"], {"subject": "max", "action": "read", "resource": grover, "extra": 1}),
        (world["admin"], {"subject": "max", "action": "read", "resource": grover}),  # 403: no check scope
        ({"Authorization": "Bearer azk_nope"}, {"subject": "max", "action": "read", "resource": grover}),  # 401
        (auth("max"), {"action": "read", "resource": grover}),
        (auth("max"), {"subject": "alice", "action": "read", "resource": grover}),  # 403: only about itself
        (auth("max", context=world["org"]), {"action": "create", "resource": {"type": "job"}}),
        (world["key"], {"subject": "max", "action": "read", "resource": grover, "min_revision": 0}),
    ]
    for headers, body in cases:
        fast, routed = both_ways(client, "/v1/check", body, headers)
        assert fast == routed, body


def test_batches_answer_the_same_both_ways(client: TestClient, world: dict[str, Any]) -> None:
    item = {"subject": "max", "action": "update", "resource": {"type": "algorithm", "id": "grover"}}
    for body in ({"checks": [item, {**item, "action": "delete"}]}, {"checks": [item, {**item, "subject": "a,b"}]}, {"checks": []}):
        fast, routed = both_ways(client, "/v1/check/batch", body, world["key"])
        assert fast == routed, body


def test_the_fast_path_is_counted_and_logged_like_the_route(client: TestClient, world: dict[str, Any]) -> None:
    client.post("/v1/check", json={"subject": "max", "action": "read", "resource": {"type": "job"}, "context": "personal"},
                headers=world["key"])
    metrics = client.get("/metrics").text
    assert 'authz_http_requests_total{method="POST",route="/v1/check",status="200"} 1.0' in metrics
    assert 'authz_decisions_total{outcome="allowed"} 1.0' in metrics
