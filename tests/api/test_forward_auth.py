"""GET /v1/authorize: forward-auth for nginx, Traefik and Envoy, decided through policies/routes.yaml."""

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from authz.bootstrap import open_runtime
from authz.policy.yaml_nodes import PolicyInvalid
from authz.services.runtime import Runtime
from tests.app_client import AppClient
from tests.conftest import POLICY_DIR, add_member, auth, create_org, make_settings, service_key


def nginx(method: str, uri: str) -> dict[str, str]:
    return {"X-Original-Method": method, "X-Original-URI": uri}


def traefik(method: str, uri: str) -> dict[str, str]:
    return {"X-Forwarded-Method": method, "X-Forwarded-Uri": uri}


@pytest.fixture
def org(client: TestClient, runtime: Runtime) -> str:
    """alice owns it, max maintains, vic views; algorithm:grover lives in it."""
    org_id = create_org(client, "alice")
    add_member(runtime, org_id, "max", "maintainer")
    add_member(runtime, org_id, "vic", "viewer")
    created = client.post("/v1/resources", json={"type": "algorithm", "id": "grover"},
                          headers=auth("alice", context=org_id))
    assert created.status_code == 201, created.text
    return org_id


def test_allowed_request_answers_200_with_subject_context_and_revision(
    client: TestClient, org: str, runtime: Runtime
) -> None:
    response = client.get("/v1/authorize", headers={**auth("vic"), **nginx("GET", "/algorithms/grover")})
    assert response.status_code == 200, response.text
    assert response.headers["X-Authz-Subject"] == "vic"
    assert response.headers["X-Authz-Context"] == org
    assert response.headers["X-Authz-Revision"] == str(runtime.replica.revision)
    assert response.json()["resource"] == {"type": "algorithm", "id": "grover"}
    assert response.json()["action"] == "read"


def test_decisions_follow_the_roles(client: TestClient, org: str) -> None:
    expected = {
        ("alice", "DELETE"): 200, ("max", "DELETE"): 403, ("vic", "DELETE"): 403, ("mallory", "DELETE"): 403,
        ("alice", "PUT"): 200, ("max", "PUT"): 200, ("vic", "PUT"): 403, ("mallory", "GET"): 403,
        ("max", "POST"): 200, ("vic", "POST"): 403,
    }
    for (user, method), status in expected.items():
        uri = "/algorithms/grover/execute" if method == "POST" else "/algorithms/grover"
        response = client.get("/v1/authorize", headers={**auth(user), **nginx(method, uri)})
        assert response.status_code == status, (user, method, response.text)
        if status == 403:
            assert response.headers["content-type"] == "application/problem+json"
            assert "X-Authz-Subject" not in response.headers


def test_type_level_create_uses_the_account_context(client: TestClient, org: str) -> None:
    create = nginx("POST", "/algorithms")
    assert client.get("/v1/authorize", headers={**auth("max", context=org), **create}).status_code == 200
    assert client.get("/v1/authorize", headers={**auth("vic", context=org), **create}).status_code == 403
    personal = client.get("/v1/authorize", headers={**auth("vic"), **create})
    assert personal.status_code == 200
    assert personal.headers["X-Authz-Context"] == "user:vic"
    stranger = client.get("/v1/authorize", headers={**auth("mallory", context=org), **create})
    assert stranger.status_code == 403
    bad = client.get("/v1/authorize", headers={**auth("vic", context="org_*"), **create})
    assert bad.status_code == 403
    assert bad.json()["errors"][0]["field"] == "X-Account-Context"


def test_context_from_a_path_parameter(client: TestClient, org: str) -> None:
    uri = f"/organizations/{org}/jobs"
    assert client.get("/v1/authorize", headers={**auth("vic"), **nginx("GET", uri)}).status_code == 200
    assert client.get("/v1/authorize", headers={**auth("mallory"), **nginx("GET", uri)}).status_code == 403
    hostile = client.get("/v1/authorize", headers={**auth("vic"), **nginx("GET", "/organizations/*/jobs")})
    assert hostile.status_code == 403
    assert hostile.json()["errors"][0]["field"] == "path.org"


def test_traefik_and_envoy_styles(client: TestClient, org: str) -> None:
    ok = client.get("/v1/authorize", headers={**auth("alice"), **traefik("DELETE", "/algorithms/grover")})
    assert ok.status_code == 200, ok.text
    refused = client.get("/v1/authorize", headers={**auth("vic"), **traefik("DELETE", "/algorithms/grover")})
    assert refused.status_code == 403
    # Envoy: the original method, and the original path appended to the check path.
    assert client.delete("/v1/authorize/algorithms/grover", headers=auth("alice")).status_code == 200
    assert client.delete("/v1/authorize/algorithms/grover", headers=auth("vic")).status_code == 403
    assert client.get("/v1/authorize/algorithms/grover?x=1", headers=auth("vic")).status_code == 200
    assert client.head("/v1/authorize/algorithms/grover", headers=auth("vic")).status_code == 200
    assert client.get("/v1/authorize/algorithms/a%2F..%2Fb", headers=auth("vic")).status_code == 403


def test_unknown_route_is_403_and_logged(client: TestClient, org: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="authz.forward_auth"):
        response = client.get(
            "/v1/authorize", headers={**auth("alice"), **nginx("GET", "/billing/export?token=s3cret")}
        )
    assert response.status_code == 403
    assert "no route" in response.json()["detail"]
    logged = [r for r in caplog.records if r.name == "authz.forward_auth"]
    assert any("no route in the route file for GET /billing/export" in r.getMessage() for r in logged)
    assert "s3cret" not in caplog.text  # query strings may carry secrets: never logged


def test_unauthenticated_is_401_with_a_challenge(client: TestClient, org: str) -> None:
    for headers in [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic YTpi"}, auth("vic", ttl=-120)]:
        response = client.get("/v1/authorize", headers={**headers, **nginx("GET", "/algorithms/grover")})
        assert response.status_code == 401, response.text
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert response.headers["content-type"] == "application/problem+json"


def test_service_keys_are_not_users(client: TestClient, org: str, runtime: Runtime) -> None:
    response = client.get(
        "/v1/authorize", headers={**service_key(runtime, "check"), **nginx("GET", "/algorithms/grover")}
    )
    assert response.status_code == 403


@pytest.mark.parametrize(
    "uri",
    [
        "/algorithms/../organizations",
        "/algorithms/grover/../../billing/export",
        "/algorithms/x%2F..%2Fgrover",
        "/algorithms/%2e%2e",
        "/algorithms//grover",
        "/algorithms/*",
        "/algorithms/a:b",
        "/algorithms/" + "g" * 200,
        "/algorithms/grover%00",
        "algorithms/grover",
    ],
)
def test_hostile_paths_and_ids_never_widen_access(client: TestClient, org: str, uri: str) -> None:
    response = client.get("/v1/authorize", headers={**auth("alice"), **nginx("GET", uri)})
    assert response.status_code == 403, response.text
    assert response.json()["errors"][0]["field"].startswith("path")


def test_two_descriptions_of_the_request_must_agree(client: TestClient, org: str) -> None:
    both = {**auth("vic"), **nginx("DELETE", "/algorithms/grover"), **traefik("GET", "/algorithms/grover")}
    response = client.get("/v1/authorize", headers=both)
    assert response.status_code == 403
    assert response.json()["errors"][0]["field"] == "X-Forwarded-Method"
    envoy_and_header = client.delete(
        "/v1/authorize/algorithms/grover", headers={**auth("vic"), **nginx("GET", "/algorithms/grover")}
    )
    assert envoy_and_header.status_code == 403
    odd_method = client.get("/v1/authorize", headers={**auth("vic"), **nginx("G E T", "/algorithms/grover")})
    assert odd_method.status_code == 403


def test_no_description_of_the_request_is_422_naming_the_header(client: TestClient) -> None:
    response = client.get("/v1/authorize", headers=auth("alice"))
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "X-Original-URI"


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    """A copy of the shipped policy the test edits and reloads."""
    shutil.copytree(POLICY_DIR, tmp_path / "policies")
    return tmp_path / "policies"


@pytest.fixture
def served(database_url: str, policies: Path) -> Iterator[tuple[TestClient, Runtime]]:
    """An app serving the policy of `policies`, which the test edits and reloads."""
    settings = make_settings(database_url, policy_dir=policies)
    runtime = open_runtime(settings, migrate=False)
    try:
        with AppClient(create_app(settings, runtime)) as client:
            yield client, runtime
    finally:
        runtime.database.dispose()


def test_a_reload_changes_the_routes_at_the_revision_it_writes(served: tuple[TestClient, Runtime],
                                                               policies: Path) -> None:
    client, runtime = served
    admin = service_key(runtime, "admin")
    reports = {**auth("vic"), **nginx("GET", "/reports")}
    before = client.get("/v1/authorize", headers=reports)
    assert before.status_code == 403 and "no route" in before.json()["detail"]

    routes = policies / "routes.yaml"
    routes.write_text(routes.read_text() + "  GET /reports: {type: algorithm, action: read}\n")
    reloaded = client.post("/v1/policy/reload", headers=admin)
    assert reloaded.status_code == 200, reloaded.text
    revision = reloaded.json()["revision"]
    assert revision > int(before.headers["X-Authz-Revision"])

    after = client.get("/v1/authorize", headers=reports)
    assert after.status_code == 200, after.text
    assert after.json()["route"] == "GET /reports" and after.json()["revision"] == revision
    shown = client.get("/v1/policy", headers=admin).json()["routes"]
    assert shown["GET /reports"] == {"type": "algorithm", "action": "read"}


def test_a_policy_without_route_file_denies_everything(served: tuple[TestClient, Runtime], policies: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    client, runtime = served
    create = {**auth("alice"), **nginx("POST", "/algorithms")}
    assert client.get("/v1/authorize", headers=create).status_code == 200
    (policies / "routes.yaml").unlink()
    admin = service_key(runtime, "admin")
    with caplog.at_level(logging.WARNING, logger="authz.policy"):
        assert client.post("/v1/policy/reload", headers=admin).status_code == 200
    assert "no routes.yaml" in caplog.text and "denies every request" in caplog.text
    response = client.get("/v1/authorize", headers=create)
    assert response.status_code == 403
    assert "has no routes.yaml" in response.json()["detail"]
    assert client.get("/v1/policy", headers=admin).json()["routes"] is None


def test_an_invalid_route_file_changes_nothing_on_reload(served: tuple[TestClient, Runtime], policies: Path) -> None:
    client, runtime = served
    admin = service_key(runtime, "admin")
    revision = runtime.replica.revision
    (policies / "routes.yaml").write_text("routes:\n  GET /x: {type: qubit, action: read}\n")
    refused = client.post("/v1/policy/reload", headers=admin)
    assert refused.status_code == 422
    error = refused.json()["errors"][0]
    assert error["file"].endswith("routes.yaml") and error["line"] == 2 and "qubit" in error["message"]
    assert runtime.replica.revision == revision
    create = {**auth("alice"), **nginx("POST", "/algorithms")}
    assert client.get("/v1/authorize", headers=create).status_code == 200


def test_an_invalid_route_file_stops_the_first_start(sqlite_template: Path, tmp_path: Path, policies: Path) -> None:
    database = tmp_path / "authz.db"
    shutil.copy(sqlite_template, database)  # migrated, no policy yet
    (policies / "routes.yaml").write_text("routes:\n  GET /x: {type: qubit, action: read}\n")
    with pytest.raises(PolicyInvalid) as caught:
        open_runtime(make_settings(f"sqlite:///{database}", policy_dir=policies), migrate=False)
    assert caught.value.errors[0].line == 2
    assert "qubit" in caught.value.errors[0].reason
