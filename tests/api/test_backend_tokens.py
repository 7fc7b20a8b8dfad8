"""Quantum backend tokens over HTTP: owners set, members use (through a service), nobody sees them."""

import logging
import shutil
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.app import create_app
from authz.bootstrap import open_runtime
from authz.domain.principal import cli_principal
from authz.logging_setup import JsonFormatter
from authz.services import lifecycle
from authz.services.runtime import Runtime
from authz.store.tables import BackendToken
from tests.app_client import AppClient
from tests.conftest import POLICY_DIR, add_member, auth, create_org, make_settings, service_key

SECRET = "ibmq-Xk2PqLr8sVw3" + "Zt7Hn5Jd" * 6 + "Q9wE"
OTHER_SECRET = "ionq-Aa1Bb2Cc3Dd4Ee5Ff6Gg7Hh8" + "Mm9Nn0Pp"
RESOLVE = "/v1/backend-tokens/resolve"


def org_tokens(org_id: str, provider: str | None = None) -> str:
    return f"/v1/organizations/{org_id}/backend-tokens" + (f"/{provider}" if provider else "")


def put(client: TestClient, org_id: str, provider: str, token: Any, user: str) -> httpx.Response:
    return client.put(org_tokens(org_id, provider), json={"token": token}, headers=auth(user))


def resolve(
    client: TestClient, headers: dict[str, str], user: str, context: str, provider: str = "ibm-quantum"
) -> httpx.Response:
    return client.post(RESOLVE, json={"user_id": user, "context": context, "provider": provider}, headers=headers)


def lab(client: TestClient, runtime: Runtime) -> str:
    """An org with olivia (owner), max (maintainer) and vic (viewer)."""
    org_id = create_org(client, "olivia")
    add_member(runtime, org_id, "max", "maintainer")
    add_member(runtime, org_id, "vic", "viewer")
    return org_id


def audit_of(client: TestClient, org_id: str, action: str) -> list[dict[str, Any]]:
    page = client.get(f"/v1/organizations/{org_id}/audit?limit=200", headers=auth("olivia"))
    assert page.status_code == 200, page.text
    return [entry for entry in page.json()["entries"] if entry["action"] == action]


def test_owner_sets_maintainer_is_refused_viewer_lists_without_secret(client: TestClient, runtime: Runtime) -> None:
    org_id = lab(client, runtime)
    created = put(client, org_id, "ibm-quantum", SECRET, "olivia")
    assert created.status_code == 200, created.text
    body = created.json()
    assert body["provider"] == "ibm-quantum" and body["hint"] == SECRET[-4:] and body["updated_by"] == "olivia"
    assert set(body) == {"provider", "hint", "updated_at", "updated_by"}
    assert "X-Authz-Revision" in created.headers

    refused = put(client, org_id, "ibm-quantum", OTHER_SECRET, "max")
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    assert put(client, org_id, "ionq", OTHER_SECRET, "vic").status_code == 403

    for reader in ("vic", "max", "olivia"):
        listing = client.get(org_tokens(org_id), headers=auth(reader))
        assert listing.status_code == 200, listing.text
        assert [(t["provider"], t["hint"], t["updated_by"]) for t in listing.json()] == [
            ("ibm-quantum", SECRET[-4:], "olivia")]
        assert SECRET not in listing.text and SECRET[:-4] not in listing.text

    assert client.get(org_tokens(org_id), headers=auth("mallory")).status_code == 404
    assert put(client, org_id, "ibm-quantum", OTHER_SECRET, "mallory").status_code == 404

    # Replacing keeps one row per provider; the refused writes changed nothing.
    replaced = put(client, org_id, "ibm-quantum", OTHER_SECRET, "olivia")
    assert replaced.status_code == 200 and replaced.json()["hint"] == OTHER_SECRET[-4:]
    assert len(client.get(org_tokens(org_id), headers=auth("vic")).json()) == 1
    assert resolve(client, service_key(runtime, "tokens:resolve"), "max", org_id).json() == {"token": OTHER_SECRET}
    sets = audit_of(client, org_id, "backend_token.set")
    assert [(e["actor"], e["detail"]["replaced"]) for e in sets] == [("user:olivia", True), ("user:olivia", False)]
    assert all(e["revision"] is None for e in sets)


def test_only_owner_deletes(client: TestClient, runtime: Runtime) -> None:
    org_id = lab(client, runtime)
    put(client, org_id, "ibm-quantum", SECRET, "olivia")
    assert client.delete(org_tokens(org_id, "ibm-quantum"), headers=auth("max")).status_code == 403
    assert client.delete(org_tokens(org_id, "ibm-quantum"), headers=auth("vic")).status_code == 403
    deleted = client.delete(org_tokens(org_id, "ibm-quantum"), headers=auth("olivia"))
    assert deleted.status_code == 204 and deleted.content == b""
    assert client.get(org_tokens(org_id), headers=auth("vic")).json() == []
    again = client.delete(org_tokens(org_id, "ibm-quantum"), headers=auth("olivia"))
    assert again.status_code == 404
    assert resolve(client, service_key(runtime, "tokens:resolve"), "max", org_id).status_code == 404
    assert [e["target"] for e in audit_of(client, org_id, "backend_token.delete")] == ["ibm-quantum"]


def test_resolve_only_for_members_who_may_use_and_only_with_the_resolve_scope(
    client: TestClient, runtime: Runtime
) -> None:
    org_id = lab(client, runtime)
    put(client, org_id, "ibm-quantum", SECRET, "olivia")
    resolver = service_key(runtime, "tokens:resolve")

    allowed = resolve(client, resolver, "max", org_id)
    assert allowed.status_code == 200, allowed.text
    assert allowed.json() == {"token": SECRET}
    assert allowed.headers["Cache-Control"] == "no-store"
    assert resolve(client, resolver, "olivia", org_id).json() == {"token": SECRET}

    for denied in (
        resolve(client, resolver, "vic", org_id),  # viewer: may read, not use
        resolve(client, resolver, "mallory", org_id),  # stranger
        resolve(client, service_key(runtime, "check"), "max", org_id),  # a check-only key
        resolve(client, service_key(runtime, "check", "admin"), "max", org_id),
        resolve(client, auth("max"), "max", org_id),  # a user token, even the user's own
        resolve(client, auth("olivia"), "max", org_id),
    ):
        assert denied.status_code == 403, denied.text
        assert denied.headers["content-type"] == "application/problem+json"
        assert SECRET not in denied.text

    # Keys that may resolve are audited; callers without the scope are outsiders: they write nothing
    # into the org's audit log (issue 12, class 5), only the service log and a metric.
    entries = audit_of(client, org_id, "backend_token.resolve")
    outcomes = [(e["actor"].split(":")[0], e["detail"]["user_id"], e["detail"]["outcome"]) for e in reversed(entries)]
    assert outcomes == [
        ("service_key", "max", "allowed"), ("service_key", "olivia", "allowed"),
        ("service_key", "vic", "denied"), ("service_key", "mallory", "denied"),
    ]
    assert all(e["target"] == "ibm-quantum" and e["detail"]["provider"] == "ibm-quantum" for e in entries)
    assert {e["detail"].get("reason") for e in entries if e["detail"]["outcome"] == "denied"} == {
        "role 'viewer' may not use backend tokens", "the user is not a member of the context"}
    assert 'authz_outsider_refusals_total{route="/v1/backend-tokens/resolve"} 4.0' in client.get("/metrics").text
    page = client.get(f"/v1/organizations/{org_id}/audit?limit=200", headers=auth("olivia"))
    assert SECRET not in page.text


def test_resolve_of_an_unset_provider_is_404_for_an_allowed_user_and_audited(
    client: TestClient, runtime: Runtime
) -> None:
    org_id = lab(client, runtime)
    resolver = service_key(runtime, "tokens:resolve")
    assert resolve(client, resolver, "max", org_id, provider="dwave").status_code == 404
    assert resolve(client, resolver, "vic", org_id, provider="dwave").status_code == 403  # existence not revealed
    outcomes = [e["detail"]["outcome"] for e in audit_of(client, org_id, "backend_token.resolve")]
    assert outcomes == ["denied", "not_found"]


def test_personal_context_tokens(client: TestClient, runtime: Runtime) -> None:
    created = client.put("/v1/me/backend-tokens/aws-braket", json={"token": SECRET}, headers=auth("alice"))
    assert created.status_code == 200, created.text
    assert created.json()["updated_by"] == "alice"
    assert [t["provider"] for t in client.get("/v1/me/backend-tokens", headers=auth("alice")).json()] == ["aws-braket"]
    assert client.get("/v1/me/backend-tokens", headers=auth("bob")).json() == []

    resolver = service_key(runtime, "tokens:resolve")
    assert resolve(client, resolver, "alice", "user:alice", "aws-braket").json() == {"token": SECRET}
    assert resolve(client, resolver, "bob", "user:alice", "aws-braket").status_code == 403
    personal = resolve(client, resolver, "alice", "personal", "aws-braket")
    assert personal.status_code == 422 and personal.json()["errors"][0]["field"] == "context"

    assert client.delete("/v1/me/backend-tokens/aws-braket", headers=auth("bob")).status_code == 404
    assert client.delete("/v1/me/backend-tokens/aws-braket", headers=auth("alice")).status_code == 204
    assert client.get("/v1/me/backend-tokens", headers=auth("alice")).json() == []


def test_service_keys_cannot_manage_tokens(client: TestClient, runtime: Runtime) -> None:
    org_id = lab(client, runtime)
    key = service_key(runtime, "tokens:resolve", "admin", "check")
    assert client.put(org_tokens(org_id, "ionq"), json={"token": SECRET}, headers=key).status_code == 403
    assert client.get(org_tokens(org_id), headers=key).status_code == 403
    assert client.put("/v1/me/backend-tokens/ionq", json={"token": SECRET}, headers=key).status_code == 403
    assert client.post(RESOLVE, json={"user_id": "max", "context": org_id, "provider": "ionq"}).status_code == 401


def test_invalid_provider_and_token_are_422_naming_the_field_without_echoing_the_token(
    client: TestClient, runtime: Runtime
) -> None:
    org_id = lab(client, runtime)
    for provider in ("IBM", "-ibm", "ibm_quantum", "a" * 65, "ibm.q"):
        response = put(client, org_id, provider, SECRET, "olivia")
        assert response.status_code == 422, (provider, response.text)
        assert [e["field"] for e in response.json()["errors"]] == ["provider"]
        assert SECRET not in response.text
    bad_tokens: list[Any] = ["", SECRET + "\n", SECRET + "\x00", "\t" + SECRET, SECRET * 70, 12345, None, [SECRET]]
    for token in bad_tokens:
        response = put(client, org_id, "ibm-quantum", token, "olivia")
        assert response.status_code == 422, (token, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert "token" in [e["field"] for e in response.json()["errors"]]
        assert SECRET not in response.text and "12345" not in response.text
    missing = client.put(org_tokens(org_id, "ibm-quantum"), json={}, headers=auth("olivia"))
    assert missing.status_code == 422 and [e["field"] for e in missing.json()["errors"]] == ["token"]
    broken = client.put(org_tokens(org_id, "ibm-quantum"), content='{"token": "' + SECRET,
                        headers={**auth("olivia"), "Content-Type": "application/json"})
    assert broken.status_code == 400 and SECRET not in broken.text
    bad_org = put(client, "not-an-org", "ibm-quantum", SECRET, "olivia")
    assert bad_org.status_code == 422 and bad_org.json()["errors"][0]["field"] == "org_id"
    # 4096 printable characters, spaces and non-ASCII included, are a valid token.
    longest = ("é " + SECRET)[:20] * 204 + "tail1234"[:16]
    assert len(longest) <= 4096
    assert put(client, org_id, "ibm-quantum", longest, "olivia").status_code == 200
    assert resolve(client, service_key(runtime, "tokens:resolve"), "max", org_id).json() == {"token": longest}
    assert [t["provider"] for t in client.get(org_tokens(org_id), headers=auth("vic")).json()] == ["ibm-quantum"]

    bad_resolve = [({"user_id": "max", "context": "org_x", "provider": "ibm-quantum"}, "context"),
                   ({"user_id": "max", "context": org_id, "provider": "IBM"}, "provider"),
                   ({"user_id": "a b", "context": org_id, "provider": "ibm-quantum"}, "user_id"),
                   ({"context": org_id, "provider": "ibm-quantum"}, "user_id")]
    resolver = service_key(runtime, "tokens:resolve")
    for body, field in bad_resolve:
        response = client.post(RESOLVE, json=body, headers=resolver)
        assert response.status_code == 422, (body, response.text)
        assert field in [e["field"] for e in response.json()["errors"]]


def test_deleting_the_org_stops_its_tokens_and_the_purge_destroys_them(client: TestClient, runtime: Runtime) -> None:
    org_id = lab(client, runtime)
    put(client, org_id, "ibm-quantum", SECRET, "olivia")
    put(client, org_id, "ionq", OTHER_SECRET, "olivia")
    client.put("/v1/me/backend-tokens/ionq", json={"token": OTHER_SECRET}, headers=auth("olivia"))
    resolver = service_key(runtime, "tokens:resolve")
    assert resolve(client, resolver, "olivia", org_id).status_code == 200
    assert client.delete(f"/v1/organizations/{org_id}", headers=auth("olivia")).status_code == 204
    assert resolve(client, resolver, "olivia", org_id).status_code == 403  # archived: nothing resolves
    lifecycle.purge_organization(runtime, cli_principal(), org_id, now=True)
    with runtime.database.session() as session:
        left = session.scalar(select(func.count()).select_from(BackendToken).where(BackendToken.context == org_id))
        contexts = session.scalars(select(BackendToken.context)).all()
    assert left == 0
    assert contexts == ["user:olivia"]  # the owner's personal token is not the org's
    assert resolve(client, service_key(runtime, "tokens:resolve"), "olivia", org_id).status_code == 403
    assert client.get(org_tokens(org_id), headers=auth("olivia")).status_code == 404


def test_no_secret_in_logs_metrics_or_openapi(client: TestClient, runtime: Runtime, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)  # everything, SQL statements and their parameters included
    caplog.set_level(logging.INFO, logger="sqlalchemy.engine")
    org_id = lab(client, runtime)
    resolver = service_key(runtime, "tokens:resolve")
    put(client, org_id, "ibm-quantum", SECRET, "olivia")
    put(client, org_id, "ibm-quantum", SECRET, "max")
    put(client, org_id, "ibm-quantum", SECRET + "\n", "olivia")
    put(client, org_id, "ibm-quantum", SECRET * 80, "olivia")
    client.put(org_tokens(org_id, "ibm-quantum"), content='{"token": "' + SECRET,
               headers={**auth("olivia"), "Content-Type": "application/json"})
    client.put("/v1/me/backend-tokens/ionq", json={"token": SECRET}, headers=auth("max"))
    assert resolve(client, resolver, "max", org_id).json() == {"token": SECRET}
    assert resolve(client, resolver, "max", "user:max", "ionq").json() == {"token": SECRET}
    resolve(client, resolver, "vic", org_id)
    resolve(client, auth("max"), "max", org_id)
    client.get(org_tokens(org_id), headers=auth("vic"))
    client.delete(org_tokens(org_id, "ibm-quantum"), headers=auth("olivia"))

    formatter = JsonFormatter()
    lines = [formatter.format(record) for record in caplog.records]
    assert any("backend token resolve" in line and '"outcome": "allowed"' in line for line in lines)
    assert any("backend token set" in line for line in lines)
    assert any("backend_tokens" in line for line in lines if "sqlalchemy" in line)  # SQL was logged too
    for line in lines:
        assert SECRET not in line
    assert SECRET not in caplog.text

    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and SECRET not in metrics.text
    openapi = client.get("/openapi.json")
    assert SECRET not in openapi.text
    schemas = openapi.json()["components"]["schemas"]
    token_field = schemas["BackendTokenBody"]["properties"]["token"]
    assert token_field["writeOnly"] is True
    assert schemas["BackendTokenBody"]["examples"] == [{"token": "<the provider's API token>"}]
    assert "token" not in schemas["BackendTokenOut"]["properties"]


def test_a_one_line_policy_edit_lets_maintainers_set_tokens(database_url: str, tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, policies)
    settings = make_settings(database_url, policy_dir=policies)
    runtime = open_runtime(settings, migrate=False)
    try:
        with AppClient(create_app(settings, runtime), raise_server_exceptions=False) as client:
            org_id = lab(client, runtime)
            assert put(client, org_id, "ibm-quantum", SECRET, "max").status_code == 403

            permissions = policies / "permissions.yaml"
            before = permissions.read_text().splitlines(keepends=True)
            after = [line.replace("set: [owner]", "set: [maintainer]") if line.strip() == "set: [owner]" else line
                     for line in before]
            assert sum(a != b for a, b in zip(before, after, strict=True)) == 1
            permissions.write_text("".join(after))
            reload = client.post("/v1/policy/reload", headers=service_key(runtime, "admin"))
            assert reload.status_code == 200, reload.text

            allowed = put(client, org_id, "ibm-quantum", SECRET, "max")
            assert allowed.status_code == 200, allowed.text
            assert allowed.json()["updated_by"] == "max"
            assert put(client, org_id, "ibm-quantum", SECRET, "olivia").status_code == 200  # owners inherit it
            assert put(client, org_id, "ibm-quantum", SECRET, "vic").status_code == 403
            assert client.delete(org_tokens(org_id, "ibm-quantum"), headers=auth("max")).status_code == 403
    finally:
        runtime.database.dispose()
