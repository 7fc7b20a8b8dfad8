"""Authentication attacks, tried for real: forged, expired, alg none, wrong audience, scopes."""

import base64
import json
import time

import httpx
import jwt
import pytest
from fastapi.testclient import TestClient

from authz.domain.principal import cli_principal
from authz.services.runtime import Runtime
from authz.services.service_keys import create_service_key, revoke_service_key
from tests.app_client import AppClient
from tests.conftest import JWT_SECRET, ONE_DATABASE, auth, create_org, make_settings, service_key, user_token

ME = "/v1/me"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def unsigned(claims: dict[str, object]) -> str:
    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def assert_401(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Bearer")


@ONE_DATABASE
def test_valid_token_is_accepted(client: TestClient) -> None:
    assert client.get(ME, headers=auth("alice")).json()["user_id"] == "alice"


@pytest.mark.parametrize(
    "token",
    [
        user_token("alice", secret="not-the-secret-" + "y" * 32),  # forged signature
        user_token("alice", ttl=-120),  # expired (beyond the leeway)
        unsigned({"sub": "alice", "exp": int(time.time()) + 600}),  # alg: none
        jwt.encode({"sub": "alice"}, JWT_SECRET, algorithm="HS256"),  # no exp
        jwt.encode({"exp": int(time.time()) + 600}, JWT_SECRET, algorithm="HS256"),  # no sub
        jwt.encode({"sub": "*", "exp": int(time.time()) + 600}, JWT_SECRET, algorithm="HS256"),  # hostile sub
        jwt.encode({"sub": "alice", "exp": int(time.time()) + 600}, JWT_SECRET, algorithm="HS512"),  # other alg
        "not.a.jwt",
        "",
    ],
    ids=["forged", "expired", "alg-none", "no-exp", "no-sub", "hostile-sub", "hs512", "garbage", "empty"],
)
@ONE_DATABASE
def test_bad_user_tokens_are_401(client: TestClient, token: str) -> None:
    assert_401(client.get(ME, headers=bearer(token)))


@ONE_DATABASE
def test_missing_or_odd_authorization_header_is_401(client: TestClient) -> None:
    assert_401(client.get(ME))
    assert_401(client.get(ME, headers={"Authorization": "Basic YWxpY2U6cHc="}))
    assert_401(client.get(ME, headers={"Authorization": "Bearer"}))


@ONE_DATABASE
def test_audience_and_issuer_are_enforced_when_configured(database_url: str, runtime: Runtime) -> None:
    from api.app import create_app

    settings = make_settings(database_url, jwt_audience="authz", jwt_issuer="https://id.example")
    with AppClient(create_app(settings, runtime)) as configured:
        good = user_token("alice", aud="authz", iss="https://id.example")
        assert configured.get(ME, headers=bearer(good)).status_code == 200
        for token in (
            user_token("alice", aud="other", iss="https://id.example"),
            user_token("alice", aud="authz", iss="https://evil.example"),
            user_token("alice"),
        ):
            assert_401(configured.get(ME, headers=bearer(token)))


def test_service_key_scopes_are_enforced(client: TestClient, runtime: Runtime) -> None:
    check_key = service_key(runtime, "check")
    admin_key = service_key(runtime, "admin")
    body = {"subject": "alice", "action": "read", "resource": {"type": "algorithm"}, "context": "personal"}
    assert client.post("/v1/check", json=body, headers=check_key).status_code == 200
    assert client.post("/v1/check", json=body, headers=admin_key).status_code == 403
    assert client.get("/v1/policy", headers=check_key).status_code == 403
    assert client.post("/v1/policy/reload", headers=check_key).status_code == 403
    assert client.get("/v1/policy", headers=admin_key).status_code == 200
    # service keys are not users
    assert client.get(ME, headers=check_key).status_code == 403
    assert client.post("/v1/organizations", json={}, headers=check_key).status_code in (403, 422)


def test_forged_and_revoked_service_keys_are_401(client: TestClient, runtime: Runtime) -> None:
    key = create_service_key(runtime, cli_principal(), "sidecar", ["check"]).value
    key_id = key.split("_")[1]
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    body = {"subject": "alice", "action": "read", "resource": {"type": "algorithm"}, "context": "personal"}
    assert client.post("/v1/check", json=body, headers=bearer(key)).status_code == 200
    assert_401(client.post("/v1/check", json=body, headers=bearer(forged)))
    assert_401(client.post("/v1/check", json=body, headers=bearer("azk_0000000000000000_" + "A" * 43)))
    revoke_service_key(runtime, cli_principal(), key_id)
    assert_401(client.post("/v1/check", json=body, headers=bearer(key)))


def test_a_member_of_org_a_cannot_reach_org_b(client: TestClient) -> None:
    org_b = create_org(client, "bob", "B")
    create_org(client, "alice", "A")
    resource = client.post(
        "/v1/resources", json={"type": "algorithm", "id": "b-secret"}, headers=auth("bob", context=org_b)
    )
    assert resource.status_code == 201
    attempts = [
        client.get(f"/v1/organizations/{org_b}", headers=auth("alice")),
        client.get(f"/v1/organizations/{org_b}/members", headers=auth("alice")),
        client.patch(f"/v1/organizations/{org_b}/members/bob", json={"role": "viewer"}, headers=auth("alice")),
        client.delete(f"/v1/organizations/{org_b}/members/bob", headers=auth("alice")),
        client.get("/v1/resources/algorithm/b-secret", headers=auth("alice")),
        client.delete("/v1/resources/algorithm/b-secret", headers=auth("alice")),
        client.put("/v1/resources/algorithm/b-secret/members/alice", json={"role": "owner"}, headers=auth("alice")),
        client.post("/v1/resources", json={"type": "algorithm", "id": "planted"}, headers=auth("alice", context=org_b)),
        client.get(f"/v1/organizations/{org_b}/audit", headers=auth("alice")),
    ]
    assert [r.status_code for r in attempts] == [404] * len(attempts)
    check = client.post(
        "/v1/check", json={"action": "read", "resource": {"type": "algorithm", "id": "b-secret"}}, headers=auth("alice")
    )
    assert check.json()["allowed"] is False
    type_level = client.post(
        "/v1/check",
        json={"action": "create", "resource": {"type": "algorithm"}, "context": org_b},
        headers=auth("alice"),
    )
    assert type_level.json()["allowed"] is False


@pytest.mark.parametrize("hostile", ["*", "%", "' OR 1=1 --", "0" * 17, ""])
def test_revoking_a_malformed_key_id_is_invalid_and_revokes_nothing(runtime: Runtime, hostile: str) -> None:
    from authz.domain.errors import Invalid

    key = create_service_key(runtime, cli_principal(), "sidecar", ["check"]).value
    with pytest.raises(Invalid):
        revoke_service_key(runtime, cli_principal(), hostile)
    assert key.split("_")[1] in runtime.replica.snapshot.service_keys
