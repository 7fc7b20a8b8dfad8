"""Invitations over HTTP: the contract of API.md, its status codes, and that no token ever leaks."""

import re
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from authz.services.runtime import Runtime
from authz.settings import Settings
from tests.conftest import add_member, auth, create_org, make_settings, service_key
from tests.smtp_server import SmtpServer

LINK = re.compile(r"^https?://\S+/invitations/accept\?token=([A-Za-z0-9_-]+)\r?$", re.MULTILINE)


@pytest.fixture
def settings(database_url: str, smtp: SmtpServer) -> Settings:
    # The sender is driven by hand here (deliver_due); the e2e tests run its thread.
    return make_settings(database_url, smtp_host="127.0.0.1", smtp_port=smtp.port, mail_sender=False,
                         public_url="https://platform.example")


def invite(
    client: TestClient, org_id: str, email: str, role: str = "maintainer", owner: str = "alice"
) -> dict[str, Any]:
    response = client.post(f"/v1/organizations/{org_id}/invitations", json={"email": email, "role": role},
                           headers=auth(owner))
    assert response.status_code == 201, response.text
    return dict(response.json())


def deliver(client: TestClient, smtp: SmtpServer) -> str:
    """Run the sender once; the token of the newest mail."""
    assert isinstance(client.app, FastAPI)
    client.app.state.mail_sender.deliver_due()
    match = LINK.search(smtp.inbox.received[-1].text)
    assert match is not None
    return match.group(1)


def accept(client: TestClient, token: str, sub: str = "bob", **kwargs: Any) -> httpx.Response:
    return client.post("/v1/invitations/accept", json={"token": token}, headers=auth(sub, **kwargs))


def listing(client: TestClient, org_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/v1/organizations/{org_id}/invitations", headers=auth("alice"))
    assert response.status_code == 200, response.text
    return list(response.json())


def test_create_returns_the_invitation_without_its_token(client: TestClient, smtp: SmtpServer) -> None:
    org_id = create_org(client, "alice")
    response = client.post(f"/v1/organizations/{org_id}/invitations",
                           json={"email": " Bob@Example.com ", "role": "maintainer"}, headers=auth("alice"))
    assert response.status_code == 201, response.text
    body = response.json()
    assert {k: body[k] for k in ("email", "role", "status", "delivery", "invited_by")} == {
        "email": "bob@example.com", "role": "maintainer", "status": "pending", "delivery": "pending",
        "invited_by": "alice"}
    assert re.fullmatch(r"inv_[0-9a-f]{24}", body["id"])
    assert response.headers["Location"] == f"/v1/organizations/{org_id}/invitations/{body['id']}"
    assert "X-Authz-Revision" in response.headers
    token = deliver(client, smtp)
    secret = token.split("_", 2)[2]
    for text in (response.text, str(response.headers), client.get(f"/v1/organizations/{org_id}/invitations",
                                                                   headers=auth("alice")).text,
                 client.get("/v1/me/invitations", headers=auth("bob")).text,
                 client.get(f"/v1/organizations/{org_id}/audit", headers=auth("alice")).text):
        assert secret not in text
    assert listing(client, org_id)[0]["delivery"] == "sent"


def test_accept_makes_the_caller_a_member(client: TestClient, smtp: SmtpServer) -> None:
    org_id = create_org(client, "alice")
    invite(client, org_id, "bob@example.com", "maintainer")
    token = deliver(client, smtp)
    accepted = accept(client, token, "bob", email="BOB@example.com")
    assert accepted.status_code == 200, accepted.text
    assert accepted.json() == {"organization_id": org_id, "role": "maintainer"}
    assert int(accepted.headers["X-Authz-Revision"]) >= 1
    members = client.get(f"/v1/organizations/{org_id}/members", headers=auth("alice")).json()
    assert {(m["user_id"], m["role"]) for m in members} == {("alice", "owner"), ("bob", "maintainer")}
    again = accept(client, token, "bob")
    assert again.status_code == 409 and "already accepted" in again.json()["detail"]
    assert listing(client, org_id)[0]["status"] == "accepted"


def test_accept_refusals_have_the_documented_statuses(client: TestClient, runtime: Runtime, smtp: SmtpServer) -> None:
    org_id = create_org(client, "alice")
    first = invite(client, org_id, "bob@example.com")
    token = deliver(client, smtp)

    cases = [
        (accept(client, first["id"] + "_" + "A" * 43), 404, "no invitation matches"),
        (accept(client, "garbage"), 404, "no invitation matches"),
        (accept(client, token, "mallory"), 403, "different email"),
        (accept(client, token, "bob", email_verified=False), 403, "not verified"),
        (client.post("/v1/invitations/accept", json={"token": token}, headers=service_key(runtime, "admin")), 403, ""),
        (client.post("/v1/invitations/accept", json={"token": token}), 401, ""),
    ]
    for response, status, detail in cases:
        assert response.status_code == status, (status, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert detail in response.json()["detail"]
    for body, field in [({"token": ""}, "token"), ({"token": 5}, "token"), ({}, "token"),
                        ({"token": token, "role": "owner"}, "role"), ({"token": "x" * 1001}, "token")]:
        response = client.post("/v1/invitations/accept", json=body, headers=auth("bob"))
        assert response.status_code == 422, (body, response.text)
        assert field in [e["field"] for e in response.json()["errors"]]
        assert token not in response.text

    # revoked: 410; declined: 409; expired: 410 (clock injected, no sleeping)
    assert (
        client.delete(f"/v1/organizations/{org_id}/invitations/{first['id']}", headers=auth("alice")).status_code == 204
    )
    revoked = accept(client, token)
    assert revoked.status_code == 410 and "revoked" in revoked.json()["detail"]

    invite(client, org_id, "carol@example.com")
    carol = deliver(client, smtp)
    assert client.post("/v1/invitations/decline", json={"token": carol}, headers=auth("carol")).status_code == 204
    declined = accept(client, carol, "carol")
    assert declined.status_code == 409 and "declined" in declined.json()["detail"]

    invite(client, org_id, "dave@example.com")
    dave = deliver(client, smtp)
    now = runtime.clock()
    runtime.clock = lambda: now + timedelta(seconds=runtime.settings.invitation_ttl + 1)
    expired = accept(client, dave, "dave")
    assert expired.status_code == 410 and "expired" in expired.json()["detail"]
    assert client.post("/v1/invitations/decline", json={"token": dave}, headers=auth("dave")).status_code == 410

    statuses = {i["email"]: i["status"] for i in listing(client, org_id)}
    assert statuses == {"bob@example.com": "revoked", "carol@example.com": "declined", "dave@example.com": "expired"}
    assert client.get("/v1/me", headers=auth("dave")).json()["contexts"] == [
        {"type": "personal", "id": "personal", "name": None, "role": None}
    ]


def test_only_owners_manage_invitations_by_the_shipped_policy(client: TestClient, runtime: Runtime) -> None:
    org_id = create_org(client, "alice")
    add_member(runtime, org_id, "max", "maintainer")
    created = invite(client, org_id, "bob@example.com")
    base = f"/v1/organizations/{org_id}/invitations"
    attempts = [
        ("POST", base, {"email": "eve@example.com", "role": "owner"}),
        ("GET", base, None),
        ("POST", f"{base}/{created['id']}/resend", None),
        ("DELETE", f"{base}/{created['id']}", None),
    ]
    for method, path, body in attempts:
        assert client.request(method, path, json=body, headers=auth("max")).status_code == 403, (method, path)
        assert client.request(method, path, json=body, headers=auth("mallory")).status_code == 404, (method, path)
    assert [i["status"] for i in listing(client, org_id)] == ["pending"]


def test_create_conflicts_and_invalid_fields(client: TestClient, runtime: Runtime) -> None:
    org_id = create_org(client, "alice")
    add_member(runtime, org_id, "bob", "viewer")
    base = f"/v1/organizations/{org_id}/invitations"
    member = client.post(base, json={"email": "BOB@example.com", "role": "viewer"}, headers=auth("alice"))
    assert member.status_code == 409 and "already a member" in member.json()["detail"]
    invite(client, org_id, "carol@example.com")
    twice = client.post(base, json={"email": "carol@EXAMPLE.com", "role": "owner"}, headers=auth("alice"))
    assert twice.status_code == 409 and "pending invitation" in twice.json()["detail"]
    for body, field in [
        ({"email": "carol@example.com\r\nBcc: eve@evil.example", "role": "viewer"}, "email"),
        ({"email": "not-an-email", "role": "viewer"}, "email"),
        ({"email": "x@example.com", "role": "superuser"}, "role"),
        ({"email": "x@example.com"}, "role"),
        ({"email": "x@example.com", "role": "viewer", "token": "mine"}, "token"),
        ({"email": ["x@example.com"], "role": "viewer"}, "email"),
    ]:
        response = client.post(base, json=body, headers=auth("alice"))
        assert response.status_code == 422, (body, response.text)
        assert field in [e["field"] for e in response.json()["errors"]], (field, response.text)
    bad_org = client.post(
        "/v1/organizations/org_x/invitations", json={"email": "x@example.com", "role": "viewer"}, headers=auth("alice")
    )
    assert bad_org.status_code == 422
    malformed = client.post(base, content=b"{not json", headers={**auth("alice"), "Content-Type": "application/json"})
    assert malformed.status_code == 400
    assert [i["email"] for i in listing(client, org_id)] == ["carol@example.com"]


def test_resend_and_revoke(client: TestClient, smtp: SmtpServer) -> None:
    org_id = create_org(client, "alice")
    created = invite(client, org_id, "bob@example.com")
    old = deliver(client, smtp)
    base = f"/v1/organizations/{org_id}/invitations/{created['id']}"
    resent = client.post(f"{base}/resend", headers=auth("alice"))
    assert resent.status_code == 200, resent.text
    assert resent.json()["expires_at"] >= created["expires_at"]
    assert resent.json()["delivery"] == "pending"
    new = deliver(client, smtp)
    assert len(smtp.inbox.received) == 2 and new != old
    assert accept(client, old).status_code == 404
    assert client.delete(base, headers=auth("alice")).status_code == 204
    assert client.delete(base, headers=auth("alice")).status_code == 204
    assert accept(client, new).status_code == 410
    assert client.post(f"{base}/resend", headers=auth("alice")).status_code == 409
    unknown = f"/v1/organizations/{org_id}/invitations/inv_{'0' * 24}"
    assert client.delete(unknown, headers=auth("alice")).status_code == 404
    assert client.post(f"{unknown}/resend", headers=auth("alice")).status_code == 404
    bad = client.delete(f"/v1/organizations/{org_id}/invitations/nope", headers=auth("alice"))
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "invitation_id"

    invite(client, org_id, "carol@example.com")
    assert accept(client, deliver(client, smtp), "carol").status_code == 200
    carol_id = next(i["id"] for i in listing(client, org_id) if i["email"] == "carol@example.com")
    refused = client.delete(f"/v1/organizations/{org_id}/invitations/{carol_id}", headers=auth("alice"))
    assert refused.status_code == 409 and "remove the member" in refused.json()["detail"]


def test_another_orgs_invitation_is_not_found(client: TestClient) -> None:
    mine = create_org(client, "alice")
    theirs = create_org(client, "olga", "Other Lab")
    created = invite(client, theirs, "bob@example.com", owner="olga")
    path = f"/v1/organizations/{mine}/invitations/{created['id']}"
    assert client.delete(path, headers=auth("alice")).status_code == 404
    assert client.post(f"{path}/resend", headers=auth("alice")).status_code == 404
    assert client.get(f"/v1/organizations/{theirs}/invitations", headers=auth("olga")).json()[0]["status"] == "pending"


def test_me_invitations_lists_pending_ones_for_the_verified_email(client: TestClient) -> None:
    lab = create_org(client, "alice")
    other = create_org(client, "olga", "Other Lab")
    first = invite(client, lab, "bob@example.com", "viewer")
    second = invite(client, other, "bob@example.com", "owner", owner="olga")
    revoked = invite(client, lab, "BOB2@example.com")
    client.delete(f"/v1/organizations/{lab}/invitations/{revoked['id']}", headers=auth("alice"))
    mine = client.get("/v1/me/invitations", headers=auth("bob")).json()
    assert sorted((i["id"], i["organization_name"], i["role"]) for i in mine) == sorted(
        [(first["id"], "Quantum Lab", "viewer"), (second["id"], "Other Lab", "owner")]
    )
    assert set(mine[0]) == {"id", "organization_id", "organization_name", "email", "role", "invited_by", "expires_at"}
    assert client.get("/v1/me/invitations", headers=auth("bob", email_verified=False)).json() == []
    assert client.get("/v1/me/invitations", headers=auth("bob2", email="bob2@example.com")).json() == []
    assert client.get("/v1/me/invitations").status_code == 401
