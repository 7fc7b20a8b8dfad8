"""Fail closed (DESIGN.md invariant 4): past AUTHZ_MAX_STALENESS every decision endpoint answers 503.

The replica's last read of the changelog is moved into the past; the app's follower is
stopped first, so nothing refreshes it during the test.
"""

import json
import time
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from authz.bootstrap import open_runtime
from authz.services.runtime import Runtime
from tests.app_client import AppClient
from tests.conftest import add_member, auth, create_org, make_settings

DECISIONS: list[tuple[str, dict[str, object]]] = [
    ("/v1/check", {"action": "read", "resource": {"type": "organization"}, "context": "{org}"}),
    ("/v1/check/batch", {"checks": [{"action": "read", "resource": {"type": "organization"}, "context": "{org}"}]}),
    ("/v1/list-resources", {"action": "read", "type": "algorithm", "context": "{org}"}),
    ("/v1/list-subjects", {"action": "read", "resource": {"type": "algorithm", "id": "grover"}}),
]


@pytest.fixture
def no_follower(database_url: str) -> Iterator[tuple[TestClient, Runtime]]:
    settings = make_settings(database_url, max_staleness=5)
    runtime = open_runtime(settings, migrate=False)
    with AppClient(create_app(settings, runtime), raise_server_exceptions=False) as client:
        assert isinstance(client.app, FastAPI)
        client.app.state.follower.stop()
        yield client, runtime
    runtime.database.dispose()


def _with_org(body: dict[str, object], org: str) -> dict[str, object]:
    return dict(json.loads(json.dumps(body).replace("{org}", org)))


def test_every_decision_endpoint_fails_closed_past_the_bound(no_follower: tuple[TestClient, Runtime]) -> None:
    client, runtime = no_follower
    org = create_org(client, "alice")
    add_member(runtime, org, "bob", "viewer")
    assert client.post("/v1/resources", json={"type": "algorithm", "id": "grover"},
                       headers=auth("alice", context=org)).status_code == 201
    for path, body in DECISIONS:
        assert client.post(path, json=_with_org(body, org), headers=auth("alice")).status_code == 200, path
    assert client.get("/readyz").json()["status"] == "ready"

    runtime.replica.last_sync = time.monotonic() - 6  # 6 s without reading the changelog; the bound is 5
    for path, body in DECISIONS:
        response = client.post(path, json=_with_org(body, org), headers=auth("alice"))
        assert response.status_code == 503, path
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.headers["Retry-After"] == "1"
    for path in ("/v1/me", "/v1/organizations"):  # memberships listed from memory fail closed too
        assert client.get(path, headers=auth("bob")).status_code == 503, path
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["status"] == "not ready" and "changelog not read" in ready.json()["reason"]
    metrics = client.get("/metrics").text
    assert any(line.startswith("authz_staleness_seconds ") and float(line.split()[1]) > 5
               for line in metrics.splitlines())


def test_a_replica_that_cannot_reach_the_database_but_is_fresh_is_degraded_not_down(
    no_follower: tuple[TestClient, Runtime],
) -> None:
    client, runtime = no_follower
    runtime.replica.last_sync_error = "database unreachable"
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "degraded" and ready.json()["reason"] == "database unreachable"
    assert "authz_database_up 0.0" in client.get("/metrics").text
