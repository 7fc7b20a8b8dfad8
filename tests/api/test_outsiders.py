"""An outsider learns nothing about another tenant (issue 12, class 4) and writes nothing into it (class 5).

alice owns an org with an algorithm and a backend token; bob has a personal algorithm.
mallory belongs to neither: every answer she gets must be the one an unknown id gets, and
none of her attempts may leave a row in anybody's audit log.
"""

import logging
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from authz.services.runtime import Runtime
from authz.store.tables import AuditEntry
from tests.conftest import BILLING, auth, create_org, service_key

UNKNOWN_ORG = "org_" + "f" * 24


def tenants(client: TestClient) -> tuple[str, str]:
    """alice's org (algorithm `grover`, an IBM token) and bob's personal algorithm `shor`."""
    org_id = create_org(client, "alice")
    assert client.post("/v1/resources", json={"type": "algorithm", "id": "grover"},
                       headers=auth("alice", context=org_id)).status_code == 201
    assert client.put(f"/v1/organizations/{org_id}/backend-tokens/ibm", json={"token": "ibm-secret-token"},
                      headers=auth("alice")).status_code == 200
    registered = client.post("/v1/resources", json={"type": "algorithm", "id": "shor"}, headers=auth("bob"))
    assert registered.status_code == 201
    return org_id, "user:bob"


def audit_rows(runtime: Runtime) -> int:
    with runtime.database.session() as session:
        return int(session.scalar(select(func.count()).select_from(AuditEntry)) or 0)


def explain(client: TestClient, headers: dict[str, str], resource_id: str, **body: Any) -> dict[str, Any]:
    question = {"action": "read", "resource": {"type": "algorithm", "id": resource_id}, **body}
    response = client.post("/v1/check?explain=true", json=question, headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_explain_to_an_outsider_is_the_answer_for_an_unknown_id(client: TestClient, runtime: Runtime) -> None:
    org_id, _ = tenants(client)
    unknown = explain(client, auth("mallory"), "no-such-algorithm")
    for resource_id in ("grover", "shor"):
        answer = explain(client, auth("mallory"), resource_id)
        reason = unknown["explanation"]["reason"].replace("no-such-algorithm", resource_id)
        assert answer["explanation"] == {**unknown["explanation"], "reason": reason}
        assert org_id not in str(answer) and "bob" not in str(answer)
        assert answer["explanation"]["context"] is None
    # asked by a service key about an outsider: the same
    key = service_key(runtime, "check")
    about_mallory = explain(client, key, "grover", subject="mallory")
    assert org_id not in str(about_mallory) and about_mallory["explanation"]["via"] == "unknown_resource"
    # a member still gets the whole explanation
    member = explain(client, auth("alice"), "grover")
    assert member["allowed"] is True and member["explanation"]["context"] == org_id


def test_cli_explain_about_an_outsider_names_no_context(client: TestClient, runtime: Runtime) -> None:
    from authz.domain.principal import Principal
    from authz.services import decisions

    org_id, _ = tenants(client)
    asker = Principal(kind="service", id="cli", scopes=frozenset({"check"}))
    question = decisions.check_request(asker, subject="mallory", action="delete", resource_type="algorithm",
                                       resource_id="grover", context=None, default_context=None)
    assert org_id not in str(decisions.explain(runtime, runtime.replica.snapshot, question))


# Every request an outsider could make about alice's org, bob's personal content, or an unknown org.
def outsider_requests(org_id: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    org = f"/v1/organizations/{org_id}"
    return [
        ("GET", org, None),
        ("PATCH", org, {"name": "Taken"}),
        ("DELETE", org, None),
        ("GET", f"{org}/members", None),
        ("PATCH", f"{org}/members/alice", {"role": "viewer"}),
        ("DELETE", f"{org}/members/alice", None),
        ("GET", f"{org}/audit", None),
        ("GET", f"{org}/invitations", None),
        ("POST", f"{org}/invitations", {"email": "mallory@example.com", "role": "owner"}),
        ("POST", f"{org}/invitations:bulk", {"invitations": [{"email": "mallory@example.com", "role": "owner"}]}),
        ("POST", f"{org}/members/alice/reinstate", None),
        ("POST", f"{org}/transfer", {"to_user_id": "mallory"}),
        ("POST", f"{org}/restore", None),
        ("GET", f"{org}/backend-tokens", None),
        ("PUT", f"{org}/backend-tokens/ibm", {"token": "mallory-token"}),
        ("DELETE", f"{org}/backend-tokens/ibm", None),
        ("GET", "/v1/resources/algorithm/grover", None),
        ("DELETE", "/v1/resources/algorithm/grover", None),
        ("GET", "/v1/resources/algorithm/grover/members", None),
        ("PUT", "/v1/resources/algorithm/grover/members/mallory", {"role": "owner"}),
        ("DELETE", "/v1/resources/algorithm/grover/members/alice", None),
        ("GET", "/v1/resources/algorithm/shor", None),
        ("PUT", "/v1/resources/algorithm/shor/members/mallory", {"role": "owner"}),
    ]


def test_every_outsider_request_is_answered_as_for_an_unknown_org_and_writes_nothing(
        client: TestClient, runtime: Runtime) -> None:
    org_id, _ = tenants(client)
    before = audit_rows(runtime)
    real = outsider_requests(org_id)
    unknown = outsider_requests(UNKNOWN_ORG)
    for (method, path, body), (_, unknown_path, _) in zip(real, unknown, strict=True):
        response = client.request(method, path, json=body, headers=auth("mallory"))
        assert response.status_code == 404, (method, path, response.text)
        if unknown_path != path:  # the org itself: the same answer as for an org that does not exist
            twin = client.request(method, unknown_path, json=body, headers=auth("mallory"))
            assert (twin.status_code, twin.json()["detail"]) == (404, response.json()["detail"]), (method, path)
        assert org_id not in response.text and "alice" not in response.text
    assert audit_rows(runtime) == before
    metrics = client.get("/metrics").text
    assert "authz_outsider_refusals_total" in metrics


@pytest.mark.parametrize("context", ["org", "user:bob", "user:alice", "user:nobody", UNKNOWN_ORG])
def test_resolve_by_an_outsider_writes_no_audit_entry_anywhere(client: TestClient, runtime: Runtime,
                                                               caplog: pytest.LogCaptureFixture, context: str) -> None:
    org_id, _ = tenants(client)
    target = org_id if context == "org" else context
    before = audit_rows(runtime)
    callers = [auth("mallory"), auth("alice"), service_key(runtime, "check"), service_key(runtime, "check", "admin")]
    before = audit_rows(runtime)  # creating the keys above is audited (platform-wide, no context)
    with caplog.at_level(logging.INFO):
        for headers in callers:
            body = {"user_id": "alice", "context": target, "provider": "ibm", "x": "caller-chosen"}
            response = client.post("/v1/backend-tokens/resolve", json={k: v for k, v in body.items() if k != "x"},
                                   headers=headers)
            assert response.status_code == 403, response.text
            assert "ibm-secret-token" not in response.text
    assert audit_rows(runtime) == before
    assert sum("resolve refused" in record.getMessage() for record in caplog.records) == len(callers)
    assert f'authz_outsider_refusals_total{{route="/v1/backend-tokens/resolve"}} {float(len(callers))}' \
           in client.get("/metrics").text


def test_a_key_that_may_resolve_is_still_audited(client: TestClient, runtime: Runtime) -> None:
    org_id, _ = tenants(client)
    before = audit_rows(runtime)
    resolver = service_key(runtime, "tokens:resolve")
    before += 1  # the key's creation
    assert client.post("/v1/backend-tokens/resolve", json={"user_id": "alice", "context": org_id, "provider": "ibm"},
                       headers=resolver).json() == {"token": "ibm-secret-token"}
    assert audit_rows(runtime) == before + 1


def test_creating_an_org_with_a_hostile_email_claim_is_refused_before_any_write(client: TestClient,
                                                                                 runtime: Runtime) -> None:
    before = audit_rows(runtime)
    response = client.post("/v1/organizations", json={"name": "Lab", "billing_address": BILLING},
                           headers=auth("mallory", email="mallory\x00@example.com"))
    assert response.status_code == 401
    assert audit_rows(runtime) == before
