"""Grants that expire (API.md, "Organization lifecycle"): at the instant, on every replica, before any sweep.

Time is the runtime's manual clock (tests/clock.py), never a sleep. The sweeper then
removes the grant as a revision with an audit entry.
"""

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from authz.bootstrap import open_runtime
from authz.services.expiry import sweep_expired
from authz.services.runtime import Runtime
from authz.settings import Settings
from authz.store.tables import AuditEntry
from tests.clock import Clock
from tests.conftest import add_member, auth, create_org, make_settings


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url, mail_sender=False)  # invitation tokens stay in the outbox for the test


def at(clock: Clock, **delta: float) -> str:
    return (clock.now + timedelta(**delta)).isoformat()


def can(client: TestClient, user: str, action: str, context: str) -> bool:
    answer = client.post("/v1/check", json={"action": action, "resource": {"type": "algorithm"}, "context": context},
                         headers=auth(user))
    assert answer.status_code == 200, answer.text
    return bool(answer.json()["allowed"])


def test_a_membership_ends_at_its_expiry_everywhere_and_the_sweeper_records_it(
    client: TestClient, runtime: Runtime
) -> None:
    clock = Clock(runtime)
    org = create_org(client, "alice")
    add_member(runtime, org, "bob", "maintainer")
    limited = client.patch(f"/v1/organizations/{org}/members/bob", json={"expires_at": at(clock, hours=2)},
                           headers=auth("alice"))
    assert limited.status_code == 200, limited.text
    assert limited.json()["role"] == "maintainer" and limited.json()["expires_at"] is not None

    clock.advance(hours=1, minutes=59)
    assert can(client, "bob", "create", org)
    assert [c["id"] for c in client.get("/v1/me", headers=auth("bob")).json()["contexts"]] == ["personal", org]

    clock.advance(minutes=1)  # the instant itself: the grant no longer counts, and nothing was swept yet
    assert not can(client, "bob", "create", org)
    assert [c["id"] for c in client.get("/v1/me", headers=auth("bob")).json()["contexts"]] == ["personal"]
    assert client.get(f"/v1/organizations/{org}", headers=auth("bob")).status_code == 404
    refused = client.post("/v1/resources", json={"type": "algorithm", "id": "late"}, headers=auth("bob", context=org))
    assert refused.status_code == 404  # a write decides on the grant in force too
    members = client.get(f"/v1/organizations/{org}/members", headers=auth("alice")).json()
    assert [m["user_id"] for m in members] == ["alice"]

    before = runtime.replica.revision
    swept = sweep_expired(runtime)
    assert swept.removed == 1 and swept.revisions == [before + 1]
    assert sweep_expired(runtime).removed == 0  # once
    with runtime.database.session() as session:
        entry = session.execute(select(AuditEntry.context, AuditEntry.target, AuditEntry.revision)
                                .where(AuditEntry.action == "member.expire")).one()
    assert tuple(entry) == (org, "bob", before + 1)
    assert not can(client, "bob", "read", org)


def test_an_invitation_can_grant_a_membership_that_ends(client: TestClient, runtime: Runtime) -> None:
    clock = Clock(runtime)
    org = create_org(client, "alice")
    invited = client.post(f"/v1/organizations/{org}/invitations",
                          json={"email": "bob@example.com", "role": "viewer", "expires_at": at(clock, days=7)},
                          headers=auth("alice"))
    assert invited.status_code == 201, invited.text
    assert invited.json()["grant_expires_at"] is not None
    token = _token_of(runtime, invited.json()["id"])
    assert client.post("/v1/invitations/accept", json={"token": token}, headers=auth("bob")).status_code == 200
    assert can(client, "bob", "read", org)
    members = client.get(f"/v1/organizations/{org}/members", headers=auth("alice")).json()
    assert next(m for m in members if m["user_id"] == "bob")["expires_at"] is not None
    clock.advance(days=7)
    assert not can(client, "bob", "read", org)


def test_a_role_on_one_resource_ends_at_its_expiry(client: TestClient, runtime: Runtime) -> None:
    clock = Clock(runtime)
    org = create_org(client, "alice")
    assert client.post("/v1/resources", json={"type": "algorithm", "id": "vqe"},
                       headers=auth("alice", context=org)).status_code == 201
    shared = client.put("/v1/resources/algorithm/vqe/members/guest",
                        json={"role": "viewer", "expires_at": at(clock, hours=1)}, headers=auth("alice"))
    assert shared.status_code == 200, shared.text
    read = {"action": "read", "resource": {"type": "algorithm", "id": "vqe"}}
    assert client.post("/v1/check", json=read, headers=auth("guest")).json()["allowed"] is True
    listed = client.post("/v1/list-resources", json={"action": "read", "type": "algorithm"}, headers=auth("guest"))
    assert listed.json()["resources"] == ["vqe"]
    clock.advance(hours=1)
    assert client.post("/v1/check", json=read, headers=auth("guest")).json()["allowed"] is False
    listed = client.post("/v1/list-resources", json={"action": "read", "type": "algorithm"}, headers=auth("guest"))
    assert listed.json()["resources"] == []
    assert client.get("/v1/resources/algorithm/vqe/members", headers=auth("alice")).json() == []
    assert sweep_expired(runtime).removed == 1


def test_expiries_in_the_past_or_malformed_are_422_naming_the_field(client: TestClient, runtime: Runtime) -> None:
    clock = Clock(runtime)
    org = create_org(client, "alice")
    add_member(runtime, org, "bob", "viewer")
    for value in (at(clock, seconds=-1), "tomorrow", "2030-01-01T00:00:00", 12, "9999-12-31T00:00:00Z"):
        answer = client.patch(f"/v1/organizations/{org}/members/bob", json={"expires_at": value}, headers=auth("alice"))
        assert answer.status_code == 422, (value, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert any("expires_at" in str(error.get("field", error.get("loc", ""))) for error in answer.json()["errors"])
    invited = client.post(f"/v1/organizations/{org}/invitations",
                          json={"email": "c@example.com", "role": "viewer", "expires_at": at(clock, days=-1)},
                          headers=auth("alice"))
    assert invited.status_code == 422
    assert can(client, "bob", "read", org)  # nothing changed


def test_the_last_permanent_owner_cannot_be_given_an_end(client: TestClient, runtime: Runtime) -> None:
    clock = Clock(runtime)
    org = create_org(client, "alice")
    ending = client.patch(f"/v1/organizations/{org}/members/alice", json={"expires_at": at(clock, days=1)},
                          headers=auth("alice"))
    assert ending.status_code == 409
    add_member(runtime, org, "carol", "owner")
    assert client.patch(f"/v1/organizations/{org}/members/alice", json={"expires_at": at(clock, days=1)},
                        headers=auth("alice")).status_code == 200
    # carol is now the only permanent owner: she can neither leave nor be limited
    assert client.delete(f"/v1/organizations/{org}/members/carol", headers=auth("carol")).status_code == 409
    cleared = client.patch(f"/v1/organizations/{org}/members/alice", json={"expires_at": None}, headers=auth("carol"))
    assert cleared.status_code == 200 and cleared.json()["expires_at"] is None
    clock.advance(days=2)
    assert can(client, "alice", "delete", org)  # permanent again


def test_a_second_replica_stops_counting_the_grant_at_the_same_instant(
    client: TestClient, runtime: Runtime, settings: Settings
) -> None:
    clock = Clock(runtime)
    org = create_org(client, "alice")
    add_member(runtime, org, "bob", "maintainer")
    assert client.patch(f"/v1/organizations/{org}/members/bob", json={"expires_at": at(clock, minutes=5)},
                        headers=auth("alice")).status_code == 200
    other = open_runtime(settings, migrate=False)  # another replica: its own snapshot, loaded from the database
    try:
        other.clock = runtime.clock
        snapshot = other.replica.snapshot
        assert snapshot.index.check("bob", "create", "algorithm", None, org, snapshot.clock)
        clock.advance(minutes=5)
        assert not other.replica.snapshot.index.check("bob", "create", "algorithm", None, org, snapshot.clock)
        assert not can(client, "bob", "create", org)
    finally:
        other.database.dispose()


def _token_of(runtime: Runtime, invitation_id: str) -> str:
    """The acceptance token, from the outbox message (the API never shows it)."""
    from authz.store.tables import OutboxMessage as Outbox

    with runtime.database.session() as session:
        tokens = [row.token for row in session.scalars(select(Outbox).where(Outbox.invitation_id == invitation_id))]
    assert tokens and tokens[-1], "no invitation email in the outbox"
    return str(tokens[-1])
