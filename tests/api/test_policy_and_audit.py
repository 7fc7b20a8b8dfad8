"""Admin policy endpoints, the audit log, and the operations endpoints."""

import json
import logging
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from authz.bootstrap import open_runtime
from authz.services.runtime import Runtime
from tests.app_client import AppClient
from tests.conftest import POLICY_DIR, add_member, auth, create_org, make_settings, service_key


def test_policy_shows_rules_in_force(client: TestClient, runtime: Runtime) -> None:
    policy = client.get("/v1/policy", headers=service_key(runtime, "admin")).json()
    assert policy["revision"] == runtime.replica.revision
    assert ["owner", "*", "backend_token", "set"] in policy["permissions"]
    assert ["owner", "maintainer", "*"] in policy["hierarchy"]
    assert policy["roles"]["owner"] == {"inherits": ["maintainer"]}


def test_reload_applies_a_policy_edit_atomically(database_url: str, tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, policies)
    settings = make_settings(database_url, policy_dir=policies)
    runtime = open_runtime(settings, migrate=False)
    with AppClient(create_app(settings, runtime)) as client:
        admin = service_key(runtime, "admin")
        org_id = create_org(client, "alice")
        add_member(runtime, org_id, "max", "maintainer")
        body = {"action": "delete", "resource": {"type": "job"}, "context": org_id}
        assert client.post("/v1/check", json=body, headers=auth("max")).json()["allowed"] is False

        permissions = policies / "permissions.yaml"
        original = permissions.read_text()
        permissions.write_text(
            original.replace("      delete: [owner]\n      share", "      delete: [maintainer]\n      share")
        )
        reloaded = client.post("/v1/policy/reload", headers=admin)
        assert reloaded.status_code == 200, reloaded.text
        assert ["p", "maintainer", "*", "job", "delete"] in reloaded.json()["added"]
        assert int(reloaded.headers["X-Authz-Revision"]) == reloaded.json()["revision"]
        assert client.post("/v1/check", json=body, headers=auth("max")).json()["allowed"] is True

        # an invalid file changes nothing and says where the mistake is
        revision = runtime.replica.revision
        permissions.write_text(
            original.replace("      delete: [owner]\n      share", "      delete: [ownr]\n      share")
        )
        invalid = client.post("/v1/policy/reload", headers=admin)
        assert invalid.status_code == 422
        problem = invalid.json()
        assert problem["errors"][0]["file"] == str(permissions)
        assert isinstance(problem["errors"][0]["line"], int) and "ownr" in problem["errors"][0]["message"]
        assert runtime.replica.revision == revision
        assert client.post("/v1/check", json=body, headers=auth("max")).json()["allowed"] is True
    runtime.database.dispose()


def test_audit_log_is_for_owners_newest_first_and_paged(client: TestClient, runtime: Runtime) -> None:
    org_id = create_org(client, "alice")
    add_member(runtime, org_id, "max", "viewer")
    client.patch(f"/v1/organizations/{org_id}/members/max", json={"role": "maintainer"}, headers=auth("alice"))
    client.post("/v1/resources", json={"type": "job", "id": "j1"}, headers=auth("max", context=org_id))
    assert client.get(f"/v1/organizations/{org_id}/audit", headers=auth("max")).status_code == 403

    page = client.get(f"/v1/organizations/{org_id}/audit?limit=2", headers=auth("alice", context=org_id)).json()
    assert [e["action"] for e in page["entries"]] == ["resource.create", "member.role_change"]
    assert page["entries"][0]["actor"] == "user:max"
    assert page["entries"][1]["detail"] == {"from": "viewer", "to": "maintainer"}
    assert page["entries"][0]["request_id"]
    older = client.get(
        f"/v1/organizations/{org_id}/audit?limit=2&before={page['next_before']}", headers=auth("alice")
    ).json()
    assert [e["action"] for e in older["entries"]] == ["member.add", "organization.create"]
    assert client.get(f"/v1/organizations/{org_id}/audit?limit=0", headers=auth("alice")).status_code == 422


def test_health_ready_and_metrics(client: TestClient, runtime: Runtime) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["revision"] == runtime.replica.revision
    key = service_key(runtime, "check")
    for allowed_subject in ("u1", "u2"):
        client.post(
            "/v1/check",
            json={"subject": allowed_subject, "action": "read", "resource": {"type": "job"}, "context": "personal"},
            headers=key,
        )
    client.post(
        "/v1/check", json={"subject": "u1", "action": "read", "resource": {"type": "job", "id": "nope"}}, headers=key
    )
    text = client.get("/metrics").text
    assert 'authz_decisions_total{outcome="allowed"} 2.0' in text
    assert 'authz_decisions_total{outcome="denied"} 1.0' in text
    assert 'authz_http_requests_total{method="POST",route="/v1/check",status="200"} 3.0' in text
    assert 'authz_http_request_duration_seconds_bucket{le="0.005",method="POST",route="/v1/check"}' in text
    assert f"authz_revision {float(runtime.replica.revision)}" in text
    assert "azk_" not in text


def test_one_structured_log_line_per_request_without_credentials(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    headers = auth("alice")
    with caplog.at_level(logging.INFO, logger="authz.access"):
        client.get("/v1/me", headers={**headers, "X-Request-ID": "req-123"})
    lines = [r for r in caplog.records if r.name == "authz.access"]
    assert len(lines) == 1
    record = lines[0]
    assert (record.method, record.route, record.status, record.request_id) == ("GET", "/v1/me", 200, "req-123")  # type: ignore[attr-defined]
    assert record.duration_ms >= 0  # type: ignore[attr-defined]
    token = headers["Authorization"].split()[1]
    assert token not in json.dumps(record.__dict__, default=str)
