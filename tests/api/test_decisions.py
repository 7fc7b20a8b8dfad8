"""Decision queries: check, explain, batch, reverse queries, revisions."""

from fastapi.testclient import TestClient

from authz.services.runtime import Runtime
from tests.conftest import add_member, auth, create_org, service_key


def org_with_team(client: TestClient, runtime: Runtime) -> str:
    org_id = create_org(client, "alice")
    add_member(runtime, org_id, "max", "maintainer")
    add_member(runtime, org_id, "vera", "viewer")
    created = client.post(
        "/v1/resources", json={"type": "algorithm", "id": "grover"}, headers=auth("max", context=org_id)
    )
    assert created.status_code == 201
    return org_id


def test_check_answers_from_roles_and_reports_the_revision(client: TestClient, runtime: Runtime) -> None:
    org_id = org_with_team(client, runtime)
    key = service_key(runtime, "check")
    cases = [
        ("max", "update", {"type": "algorithm", "id": "grover"}, None, True),
        ("max", "delete", {"type": "algorithm", "id": "grover"}, None, False),
        ("vera", "read", {"type": "algorithm", "id": "grover"}, None, True),
        ("mallory", "read", {"type": "algorithm", "id": "grover"}, None, False),
        ("max", "read", {"type": "algorithm", "id": "unknown"}, None, False),
        ("max", "create", {"type": "job"}, org_id, True),
        ("vera", "create", {"type": "job"}, org_id, False),
        ("mallory", "create", {"type": "job"}, "personal", True),
        ("max", "fly", {"type": "spaceship"}, org_id, False),
    ]
    for subject, action, resource, context, expected in cases:
        body = {"subject": subject, "action": action, "resource": resource, "context": context}
        response = client.post("/v1/check", json=body, headers=key)
        assert response.status_code == 200, response.text
        assert response.json() == {"allowed": expected, "revision": runtime.replica.revision}, body


def test_explain_names_the_role_and_rule(client: TestClient, runtime: Runtime) -> None:
    org_with_team(client, runtime)
    allowed = client.post(
        "/v1/check?explain=true",
        json={"action": "update", "resource": {"type": "algorithm", "id": "grover"}},
        headers=auth("max"),
    ).json()
    assert allowed["allowed"] is True
    assert allowed["explanation"]["role"] == "maintainer"
    assert allowed["explanation"]["rule"] == ["p", "maintainer", "*", "algorithm", "update"]
    denied = client.post(
        "/v1/check?explain=true",
        json={"action": "delete", "resource": {"type": "algorithm", "id": "grover"}},
        headers=auth("max"),
    ).json()
    assert denied["allowed"] is False
    assert "does not grant delete" in denied["explanation"]["reason"]


def test_a_user_may_ask_only_about_itself(client: TestClient, runtime: Runtime) -> None:
    org_with_team(client, runtime)
    about_other = client.post(
        "/v1/check",
        json={"subject": "alice", "action": "delete", "resource": {"type": "algorithm", "id": "grover"}},
        headers=auth("max"),
    )
    assert about_other.status_code == 403
    about_self = client.post(
        "/v1/check",
        json={"subject": "max", "action": "read", "resource": {"type": "algorithm", "id": "grover"}},
        headers=auth("max"),
    )
    assert about_self.json()["allowed"] is True


def test_type_level_check_uses_the_context_header(client: TestClient, runtime: Runtime) -> None:
    org_id = org_with_team(client, runtime)
    body = {"action": "create", "resource": {"type": "algorithm"}}
    assert client.post("/v1/check", json=body, headers=auth("max", context=org_id)).json()["allowed"] is True
    assert client.post("/v1/check", json=body, headers=auth("vera", context=org_id)).json()["allowed"] is False


def test_batch_answers_in_order_and_limits_size(client: TestClient, runtime: Runtime) -> None:
    org_with_team(client, runtime)
    key = service_key(runtime, "check")
    checks = [
        {"subject": s, "action": a, "resource": {"type": "algorithm", "id": "grover"}}
        for s, a in [("max", "update"), ("vera", "update"), ("alice", "delete"), ("nobody", "read")]
    ]
    response = client.post("/v1/check/batch", json={"checks": checks}, headers=key)
    assert response.status_code == 200
    assert [r["allowed"] for r in response.json()["results"]] == [True, False, True, False]
    too_many = client.post("/v1/check/batch", json={"checks": checks * 251}, headers=key)
    assert too_many.status_code == 422
    bad_item = client.post("/v1/check/batch", json={"checks": [checks[0], {**checks[1], "subject": "*"}]}, headers=key)
    assert bad_item.status_code == 422
    assert bad_item.json()["errors"][0]["field"] == "checks.1.subject"


def test_reverse_queries(client: TestClient, runtime: Runtime) -> None:
    org_id = org_with_team(client, runtime)
    client.post("/v1/resources", json={"type": "algorithm", "id": "shor"}, headers=auth("alice", context=org_id))
    client.post("/v1/resources", json={"type": "algorithm", "id": "mine"}, headers=auth("vera"))
    key = service_key(runtime, "check")
    resources = client.post(
        "/v1/list-resources", json={"subject": "vera", "action": "read", "type": "algorithm"}, headers=key
    )
    assert resources.json()["resources"] == ["grover", "mine", "shor"]
    deletable = client.post(
        "/v1/list-resources", json={"subject": "vera", "action": "delete", "type": "algorithm"}, headers=key
    )
    assert deletable.json()["resources"] == ["mine"]
    subjects = client.post(
        "/v1/list-subjects", json={"action": "update", "resource": {"type": "algorithm", "id": "grover"}}, headers=key
    )
    assert subjects.json()["subjects"] == ["alice", "max"]


def test_min_revision_ahead_of_the_replica_is_503(client: TestClient, runtime: Runtime) -> None:
    runtime.settings.min_revision_wait = 0.2
    current = runtime.replica.revision
    body = {"action": "read", "resource": {"type": "algorithm"}, "context": "personal"}
    assert client.post("/v1/check", json={**body, "min_revision": current}, headers=auth("a")).status_code == 200
    ahead = client.post("/v1/check", json={**body, "min_revision": current + 5}, headers=auth("a"))
    assert ahead.status_code == 503
    assert ahead.headers["content-type"] == "application/problem+json"
    assert ahead.headers["Retry-After"]


def test_writes_carry_the_revision_checks_answer_at(client: TestClient, runtime: Runtime) -> None:
    org_id = create_org(client, "alice")
    written = client.post("/v1/resources", json={"type": "job", "id": "j1"}, headers=auth("alice", context=org_id))
    revision = int(written.headers["X-Authz-Revision"])
    check = client.post(
        "/v1/check",
        json={"action": "read", "resource": {"type": "job", "id": "j1"}, "min_revision": revision},
        headers=auth("alice"),
    )
    assert check.json() == {"allowed": True, "revision": revision}
