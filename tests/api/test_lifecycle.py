"""The life of an organization over HTTP (API.md "Organization lifecycle"), on SQLite and PostgreSQL.

Transfer, archive (DELETE), restore, purge, bulk invitations, their rate limits, leaving
and reinstating; the races of each are in the second half. What is asserted is what a
member, an outsider or an attacker would notice, on this replica and on a second one.
"""

import re
from collections.abc import Iterator
from functools import partial
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from authz.bootstrap import open_runtime
from authz.domain.principal import cli_principal
from authz.services import lifecycle
from authz.services.runtime import Runtime
from authz.settings import Settings
from authz.store.tables import AuditEntry, BackendToken, CasbinRule, ChangelogEntry, Invitation, Resource
from tests.api.test_consistency import ROUNDS, race
from tests.clock import Clock
from tests.conftest import add_member, auth, create_org, make_settings, service_key
from tests.smtp_server import SmtpServer

LINK = re.compile(r"token=([A-Za-z0-9_-]+)")
PROBLEM = "application/problem+json"
LIMIT = 5  # AUTHZ_INVITATIONS_PER_DAY in these tests


@pytest.fixture
def settings(database_url: str, smtp: SmtpServer) -> Settings:
    return make_settings(database_url, smtp_host="127.0.0.1", smtp_port=smtp.port, mail_sender=False,
                         org_purger=False, invitations_per_day=LIMIT)


@pytest.fixture
def clock(runtime: Runtime) -> Clock:
    return Clock(runtime)


@pytest.fixture
def other(settings: Settings, runtime: Runtime) -> Iterator[Runtime]:
    """A second replica on the same database (it follows the changelog: `catch_up`)."""
    second = open_runtime(settings, migrate=False)
    second.clock = lambda: runtime.clock()
    yield second
    second.database.dispose()


def check(client: TestClient, user: str, action: str, resource_id: str | None = None,
          context: str | None = None) -> bool:
    body: dict[str, Any] = {"action": action, "resource": {"type": "algorithm"}}
    if resource_id is not None:
        body["resource"]["id"] = resource_id
    if context is not None:
        body["context"] = context
    response = client.post("/v1/check", json=body, headers=auth(user))
    assert response.status_code == 200, response.text
    return bool(response.json()["allowed"])


def other_allows(rt: Runtime, user: str, action: str, resource_id: str | None = None,
                 context: str | None = None) -> bool:
    rt.replica.catch_up(rt.database)
    return rt.replica.snapshot.index.check(user, action, "algorithm", resource_id, context)


def register(client: TestClient, user: str, context: str, resource_id: str) -> httpx.Response:
    return client.post("/v1/resources", json={"type": "algorithm", "id": resource_id},
                       headers=auth(user, context=context))


def invite(client: TestClient, org: str, email: str, role: str = "viewer", owner: str = "alice") -> httpx.Response:
    return client.post(f"/v1/organizations/{org}/invitations", json={"email": email, "role": role},
                       headers=auth(owner))


def token_for(client: TestClient, smtp: SmtpServer, email: str) -> str:
    assert isinstance(client.app, FastAPI)
    client.app.state.mail_sender.deliver_due()
    for message in reversed(smtp.inbox.received):
        if email in message.rcpt_tos:
            match = LINK.search(message.text)
            assert match is not None
            return match.group(1)
    raise AssertionError(f"no mail to {email}")


def accept(client: TestClient, token: str, user: str) -> httpx.Response:
    return client.post("/v1/invitations/accept", json={"token": token}, headers=auth(user))


def members(client: TestClient, org: str, user: str = "alice") -> dict[str, str]:
    response = client.get(f"/v1/organizations/{org}/members", headers=auth(user))
    assert response.status_code == 200, response.text
    return {m["user_id"]: m["role"] for m in response.json()}


def owners_in_database(runtime: Runtime, org: str) -> int:
    with runtime.database.session() as session:
        return int(session.scalar(select(func.count()).select_from(CasbinRule).where(
            CasbinRule.ptype == "g", CasbinRule.v2 == org, CasbinRule.v1 == "owner")) or 0)


def head(runtime: Runtime) -> int:
    with runtime.database.session() as session:
        return int(session.scalar(select(func.max(ChangelogEntry.revision))) or 0)


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    return dict(response.json())


def lab(client: TestClient, runtime: Runtime) -> str:
    """alice (owner), max (maintainer), vic (viewer); grover registered; mallory's own role on it."""
    org = create_org(client, "alice")
    add_member(runtime, org, "max", "maintainer")
    add_member(runtime, org, "vic", "viewer")
    assert register(client, "max", org, "grover").status_code == 201
    shared = client.put("/v1/resources/algorithm/grover/members/mallory", json={"role": "viewer"},
                        headers=auth("alice"))
    assert shared.status_code == 200, shared.text
    return org


# ---- transfer ------------------------------------------------------------------------------

def test_transfer_makes_the_member_owner_and_the_caller_maintainer_in_one_revision(
    client: TestClient, runtime: Runtime
) -> None:
    org = create_org(client, "alice")
    add_member(runtime, org, "bob", "viewer")
    before = head(runtime)
    response = client.post(f"/v1/organizations/{org}/transfer", json={"to_user_id": "bob"}, headers=auth("alice"))
    assert response.status_code == 200, response.text
    assert response.json() == {"organization_id": org, "owner": "bob", "revision": before + 1}
    assert response.headers["X-Authz-Revision"] == str(before + 1)
    assert head(runtime) == before + 1
    assert members(client, org, "bob") == {"alice": "maintainer", "bob": "owner"}
    # alice is no longer an owner: she cannot transfer back, nor delete the org.
    again = client.post(f"/v1/organizations/{org}/transfer", json={"to_user_id": "alice"}, headers=auth("alice"))
    assert_problem(again, 403)
    assert client.delete(f"/v1/organizations/{org}", headers=auth("alice")).status_code == 403
    with runtime.database.session() as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "organization.transfer")).one()
        assert (entry.actor, entry.target, entry.revision) == ("user:alice", "bob", before + 1)


def test_transfer_refuses_non_members_owners_non_owners_and_outsiders(client: TestClient, runtime: Runtime) -> None:
    org = create_org(client, "alice")
    add_member(runtime, org, "carol", "owner")
    add_member(runtime, org, "max", "maintainer")
    path = f"/v1/organizations/{org}/transfer"
    stranger = assert_problem(client.post(path, json={"to_user_id": "zed"}, headers=auth("alice")), 422)
    assert [e["field"] for e in stranger["errors"]] == ["to_user_id"]
    bad = assert_problem(client.post(path, json={"to_user_id": "a b"}, headers=auth("alice")), 422)
    assert [e["field"] for e in bad["errors"]] == ["to_user_id"]
    assert_problem(client.post(path, json={"to_user_id": "carol"}, headers=auth("alice")), 409)
    assert_problem(client.post(path, json={"to_user_id": "alice"}, headers=auth("alice")), 409)
    assert_problem(client.post(path, json={"to_user_id": "max"}, headers=auth("max")), 403)
    assert_problem(client.post(path, json={"to_user_id": "max"}, headers=auth("mallory")), 404)
    assert_problem(client.post(path, json={}, headers=auth("alice")), 422)
    assert members(client, org) == {"alice": "owner", "carol": "owner", "max": "maintainer"}


def test_transfer_racing_demotions_always_leaves_an_owner(client: TestClient, runtime: Runtime) -> None:
    """alice hands the org to bob while carol demotes alice and bob demotes carol, many rounds over."""
    for round_ in range(ROUNDS):
        org = create_org(client, "alice", f"Race {round_}")
        add_member(runtime, org, "bob", "maintainer")
        add_member(runtime, org, "carol", "owner")
        transferred, demoted = race(
            partial(client.post, f"/v1/organizations/{org}/transfer", json={"to_user_id": "bob"},
                    headers=auth("alice")),
            partial(client.patch, f"/v1/organizations/{org}/members/alice", json={"role": "viewer"},
                    headers=auth("carol")),
        )
        assert transferred in (200, 403) and demoted == 200, (transferred, demoted)
        # Now the two owners left demote each other at once: one of them must stay.
        roles = members(client, org, "carol")
        owners = [user for user, role in roles.items() if role == "owner"]
        if len(owners) == 2:
            first, second = owners
            race(
                partial(client.patch, f"/v1/organizations/{org}/members/{second}", json={"role": "viewer"},
                        headers=auth(first)),
                partial(client.patch, f"/v1/organizations/{org}/members/{first}", json={"role": "viewer"},
                        headers=auth(second)),
            )
        assert owners_in_database(runtime, org) >= 1, round_
        final = members(client, org, "carol")
        assert list(final.values()).count("owner") == owners_in_database(runtime, org)
        for user, role in final.items():  # the replica decides as the database says
            may_delete = runtime.replica.snapshot.index.role_allows(role, "organization", "delete")
            assert may_delete == (role == "owner"), (user, role)


# ---- archive ---------------------------------------------------------------------------------

def test_archive_takes_the_org_away_from_everyone_on_every_replica(
    client: TestClient, runtime: Runtime, other: Runtime, smtp: SmtpServer
) -> None:
    org = lab(client, runtime)
    assert invite(client, org, "bob@example.com").status_code == 201
    token = token_for(client, smtp, "bob@example.com")
    assert client.put(f"/v1/organizations/{org}/backend-tokens/ibm", json={"token": "secret-ibm-token"},
                      headers=auth("alice")).status_code == 200
    resolver = service_key(runtime, "tokens:resolve")
    resolve = {"user_id": "alice", "context": org, "provider": "ibm"}
    assert client.post("/v1/backend-tokens/resolve", json=resolve, headers=resolver).status_code == 200
    assert check(client, "max", "update", "grover") and check(client, "mallory", "read", "grover")
    assert other_allows(other, "vic", "read", "grover")

    assert client.delete(f"/v1/organizations/{org}", headers=auth("vic")).status_code == 403
    archived = client.delete(f"/v1/organizations/{org}", headers=auth("alice"))
    assert archived.status_code == 204
    revision = int(archived.headers["X-Authz-Revision"])

    for user in ("alice", "max", "vic", "mallory"):
        assert not check(client, user, "read", "grover"), user
        assert not check(client, user, "create", context=org), user
        assert not other_allows(other, user, "read", "grover"), user
        assert not other_allows(other, user, "create", context=org), user
        me = client.get("/v1/me", headers=auth(user)).json()
        assert [c["id"] for c in me["contexts"]] == ["personal"], user
        assert client.get("/v1/organizations", headers=auth(user)).json() == []
        assert client.post("/v1/list-resources", json={"action": "read", "type": "algorithm"},
                           headers=auth(user)).json()["resources"] == []
    assert other.replica.revision == revision
    assert client.post("/v1/list-subjects", json={"action": "read", "resource": {"type": "algorithm", "id": "grover"}},
                       headers=service_key(runtime, "check")).json()["subjects"] == []
    for path in ("", "/members", "/invitations", "/audit", "/backend-tokens"):
        assert_problem(client.get(f"/v1/organizations/{org}{path}", headers=auth("alice")), 404)
    assert_problem(client.patch(f"/v1/organizations/{org}", json={"name": "x"}, headers=auth("alice")), 404)
    assert_problem(invite(client, org, "carol@example.com"), 404)
    assert_problem(register(client, "alice", org, "shor"), 404)  # the context is gone
    assert_problem(client.delete(f"/v1/organizations/{org}", headers=auth("alice")), 404)
    assert_problem(client.put("/v1/resources/algorithm/grover/members/eve", json={"role": "owner"},
                              headers=auth("alice")), 404)
    # Its backend token cannot be resolved; its pending invitation is dead; its ids stay taken.
    assert client.post("/v1/backend-tokens/resolve", json=resolve, headers=resolver).status_code == 403
    gone = assert_problem(accept(client, token, "bob"), 410)
    assert "deleted" in gone["detail"]
    mine = create_org(client, "eve", "Squatter")
    assert_problem(register(client, "eve", mine, "grover"), 409)
    # Nothing was destroyed.
    with runtime.database.session() as session:
        assert session.get(Resource, ("algorithm", "grover")) is not None
        assert session.scalar(select(func.count()).select_from(BackendToken).where(BackendToken.context == org)) == 1
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "organization.archive")).one()
        assert entry.revision == revision and entry.detail["members"] == 3 and entry.detail["resource_roles"] == 1


def test_archiving_racing_an_invitation_acceptance_never_leaves_a_member(
    client: TestClient, runtime: Runtime, smtp: SmtpServer
) -> None:
    for round_ in range(ROUNDS):
        owner = f"alice{round_}"  # one inviter per round: the per-inviter limit is low here
        org = create_org(client, owner, f"Race {round_}")
        email = f"bob{round_}@example.com"
        assert invite(client, org, email, owner=owner).status_code == 201
        token = token_for(client, smtp, email)
        accepted, archived = race(
            partial(client.post, "/v1/invitations/accept", json={"token": token},
                    headers=auth(f"bob{round_}", email=email)),
            partial(client.delete, f"/v1/organizations/{org}", headers=auth(owner)),
        )
        assert archived == 204 and accepted in (200, 410), (accepted, archived)
        assert not check(client, f"bob{round_}", "read", context=org)
        with runtime.database.session() as session:
            assert session.scalar(select(func.count()).select_from(CasbinRule).where(CasbinRule.v2 == org)) == 0
        restored = client.post(f"/v1/organizations/{org}/restore", headers=auth(owner))
        assert restored.status_code == 200
        # Restored exactly as it was: bob is a member if and only if his acceptance won.
        assert (f"bob{round_}" in members(client, org, owner)) == (accepted == 200), round_
        assert check(client, f"bob{round_}", "read", context=org) == (accepted == 200)


def test_content_registered_while_its_org_is_archived_is_archived_with_it(client: TestClient, runtime: Runtime) -> None:
    for round_ in range(ROUNDS):
        org = create_org(client, "alice", f"Race {round_}")
        resource = f"late{round_}"
        registered, archived = race(
            partial(register, client, "alice", org, resource),
            partial(client.delete, f"/v1/organizations/{org}", headers=auth("alice")),
        )
        assert archived == 204 and registered in (201, 404), (registered, archived)
        assert not check(client, "alice", "read", resource)
        mine = create_org(client, "bob", f"Next {round_}")
        again = register(client, "bob", mine, resource)
        assert again.status_code == (409 if registered == 201 else 201), again.text
        with runtime.database.session() as session:  # no rule decides in the archived org or on its content
            rules = session.scalar(select(func.count()).select_from(CasbinRule).where(
                CasbinRule.v2.in_([org, f"algorithm:{resource}"])))
            assert rules == 0
        if registered == 201:
            assert client.post(f"/v1/organizations/{org}/restore", headers=auth("alice")).status_code == 200
            assert check(client, "alice", "delete", resource)


# ---- restore ---------------------------------------------------------------------------------

def test_restore_by_a_former_owner_brings_back_everything_but_the_invitations(
    client: TestClient, runtime: Runtime, other: Runtime, clock: Clock, smtp: SmtpServer
) -> None:
    org = lab(client, runtime)
    before = members(client, org)
    assert invite(client, org, "bob@example.com").status_code == 201
    token = token_for(client, smtp, "bob@example.com")
    assert client.delete(f"/v1/organizations/{org}", headers=auth("alice")).status_code == 204
    clock.advance(days=29)
    for outsider in ("max", "vic", "mallory", "eve"):  # not owners when it was archived
        assert_problem(client.post(f"/v1/organizations/{org}/restore", headers=auth(outsider)), 404)
    restored = client.post(f"/v1/organizations/{org}/restore", headers=auth("alice"))
    assert restored.status_code == 200, restored.text
    body = restored.json()
    assert (body["id"], body["name"], body["role"]) == (org, "Quantum Lab", "owner")
    assert body["billing_address"]["city"] == "Berlin"
    assert members(client, org) == before
    assert check(client, "max", "update", "grover") and check(client, "mallory", "read", "grover")
    assert other_allows(other, "mallory", "read", "grover") and other_allows(other, "vic", "read", "grover")
    assert [c["id"] for c in client.get("/v1/me", headers=auth("vic")).json()["contexts"]] == ["personal", org]
    # The pending invitation stays revoked.
    statuses = [i["status"] for i in client.get(f"/v1/organizations/{org}/invitations", headers=auth("alice")).json()]
    assert statuses == ["revoked"]
    assert_problem(accept(client, token, "bob"), 410)
    assert_problem(client.post(f"/v1/organizations/{org}/restore", headers=auth("alice")), 409)  # not archived
    assert_problem(client.post(f"/v1/organizations/{org}/restore", headers=auth("eve")), 404)


def test_restore_after_the_retention_is_refused_and_the_purge_frees_everything(
    client: TestClient, runtime: Runtime, other: Runtime, clock: Clock
) -> None:
    org = lab(client, runtime)
    assert client.put(f"/v1/organizations/{org}/backend-tokens/ibm", json={"token": "secret-ibm-token"},
                      headers=auth("alice")).status_code == 200
    assert client.delete(f"/v1/organizations/{org}", headers=auth("alice")).status_code == 204
    assert lifecycle.purge_due(runtime) == []  # within the retention: nothing to purge
    clock.advance(days=30, seconds=1)
    assert_problem(client.post(f"/v1/organizations/{org}/restore", headers=auth("alice")), 410)
    assert_problem(client.post(f"/v1/organizations/{org}/restore", headers=auth("vic")), 404)
    before = head(runtime)
    assert lifecycle.purge_due(other) == [org]  # any replica purges
    assert lifecycle.purge_due(runtime) == []
    assert head(runtime) == before + 1
    runtime.replica.catch_up(runtime.database)
    assert_problem(client.post(f"/v1/organizations/{org}/restore", headers=auth("alice")), 404)
    with runtime.database.session() as session:
        assert session.get(Resource, ("algorithm", "grover")) is None
        assert session.scalar(select(func.count()).select_from(BackendToken).where(BackendToken.context == org)) == 0
        assert session.scalar(select(func.count()).select_from(Invitation).where(Invitation.org_id == org)) == 0
        actions = session.scalars(select(AuditEntry.action).where(AuditEntry.context == org)
                                  .order_by(AuditEntry.id)).all()
        assert actions[0] == "organization.create" and actions[-2:] == ["organization.archive", "organization.purge"]
        purge = session.scalars(select(AuditEntry).where(AuditEntry.action == "organization.purge")).one()
        assert purge.revision == before + 1 and purge.actor == "cli:org-purger"
    # The id is free again, and nobody from the purged org has anything on the new one.
    mine = create_org(client, "eve", "Next")
    assert register(client, "eve", mine, "grover").status_code == 201
    for user in ("alice", "max", "mallory"):
        assert not check(client, user, "read", "grover")
        assert not other_allows(other, user, "read", "grover")


def purge_or_conflict(rt: Runtime, org: str, outcome: dict[str, Any]) -> httpx.Response:
    """The operator's `purge --now` as one side of a race: 200, or 409 with the error in `outcome`."""
    try:
        outcome["purged"] = lifecycle.purge_organization(rt, cli_principal(), org, now=True)
    except Exception as exc:  # noqa: BLE001 - restored first: not archived any more
        outcome["error"] = exc
        return httpx.Response(409)
    return httpx.Response(200)


def test_restore_racing_the_purge_ends_in_one_of_them(
    client: TestClient, runtime: Runtime, other: Runtime, clock: Clock
) -> None:
    """An operator's `purge --now` (on another replica) and the owner's restore at once: one wins whole."""
    for round_ in range(ROUNDS):
        org = create_org(client, "alice", f"Race {round_}")
        add_member(runtime, org, "max", "viewer")
        assert client.delete(f"/v1/organizations/{org}", headers=auth("alice")).status_code == 204
        clock.advance(days=29)
        outcome: dict[str, Any] = {}
        restored, purged = race(partial(client.post, f"/v1/organizations/{org}/restore", headers=auth("alice")),
                                partial(purge_or_conflict, other, org, outcome))
        assert sorted([restored, purged]) in ([200, 409], [200, 404]), (restored, purged, outcome)
        runtime.replica.catch_up(runtime.database)
        if restored == 200:
            assert members(client, org) == {"alice": "owner", "max": "viewer"}
            assert check(client, "max", "read", context=org)
        else:
            assert_problem(client.get(f"/v1/organizations/{org}", headers=auth("alice")), 404)
            assert not check(client, "max", "read", context=org)
            with runtime.database.session() as session:
                assert session.scalar(select(func.count()).select_from(CasbinRule).where(CasbinRule.v2 == org)) == 0
        clock.advance(days=-29)


# ---- bulk invitations, rate limits ---------------------------------------------------------------

def test_bulk_invitations_answer_each_row_in_order(client: TestClient, runtime: Runtime) -> None:
    org = create_org(client, "alice")
    add_member(runtime, org, "max", "maintainer")
    assert invite(client, org, "dup@example.com").status_code == 201
    rows = [
        {"email": "a@example.com", "role": "viewer"},
        {"email": "not an email", "role": "viewer"},
        {"email": "dup@example.com", "role": "viewer"},
        {"email": "b@example.com", "role": "emperor"},
        {"email": "max@example.com", "role": "viewer"},
        {"email": "A@example.com", "role": "owner"},  # the same person as row 0
        {"email": "c@example.com", "role": "maintainer", "colour": "red"},
    ]
    before = head(runtime)
    response = client.post(f"/v1/organizations/{org}/invitations:bulk", json={"invitations": rows},
                           headers=auth("alice"))
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == [201, 422, 409, 422, 409, 409, 422]
    assert results[0]["invitation"]["email"] == "a@example.com" and results[0]["invitation"]["status"] == "pending"
    assert [e["field"] for e in results[1]["problem"]["errors"]] == ["invitations[1].email"]
    assert [e["field"] for e in results[3]["problem"]["errors"]] == ["invitations[3].role"]
    assert [e["field"] for e in results[6]["problem"]["errors"]] == ["invitations[6].colour"]
    assert results[1]["invitation"] is None and results[1]["problem"]["status"] == 422
    assert results[0]["problem"] is None
    assert head(runtime) == before  # invitations are not policy data
    listed = client.get(f"/v1/organizations/{org}/invitations", headers=auth("alice")).json()
    assert sorted(i["email"] for i in listed) == ["a@example.com", "dup@example.com"]


def test_bulk_refuses_too_many_or_no_rows_and_non_owners(client: TestClient, runtime: Runtime) -> None:
    org = create_org(client, "alice")
    add_member(runtime, org, "max", "maintainer")
    path = f"/v1/organizations/{org}/invitations:bulk"
    many = [{"email": f"u{n}@example.com", "role": "viewer"} for n in range(101)]
    bodies: list[dict[str, Any]] = [{"invitations": many}, {"invitations": []}, {}, {"invitations": "x"}]
    for body in bodies:
        problem = assert_problem(client.post(path, json=body, headers=auth("alice")), 422)
        assert problem["errors"][0]["field"].startswith("invitations")
    assert_problem(client.post(path, json={"invitations": many[:2]}, headers=auth("max")), 403)
    assert_problem(client.post(path, json={"invitations": many[:2]}, headers=auth("mallory")), 404)
    assert client.get(f"/v1/organizations/{org}/invitations", headers=auth("alice")).json() == []


def test_invitations_are_limited_per_org_and_per_inviter_with_retry_after(
    client: TestClient, runtime: Runtime, clock: Clock
) -> None:
    org = create_org(client, "alice")
    add_member(runtime, org, "carol", "owner")
    for n in range(LIMIT - 1):
        assert invite(client, org, f"u{n}@example.com").status_code == 201
        clock.advance(hours=1)
    # A refused row does not count.
    assert invite(client, org, "u0@example.com").status_code == 409
    assert invite(client, org, "last@example.com", owner="carol").status_code == 201  # the org's 5th
    limited = invite(client, org, "more@example.com", owner="carol")
    problem = assert_problem(limited, 429)
    assert "organization" in problem["detail"]
    # The first invitation of the window leaves it 24 h after it was made: 20 h from now.
    assert int(limited.headers["Retry-After"]) == 20 * 3600
    bulk = client.post(f"/v1/organizations/{org}/invitations:bulk",
                       json={"invitations": [{"email": "x@example.com", "role": "viewer"}]}, headers=auth("alice"))
    assert bulk.status_code == 200 and bulk.json()["results"][0]["status"] == 429
    assert int(bulk.headers["Retry-After"]) == 20 * 3600
    clock.advance(hours=20)
    assert invite(client, org, "more@example.com", owner="carol").status_code == 201
    assert_problem(invite(client, org, "again@example.com", owner="carol"), 429)


def test_the_inviters_limit_counts_across_orgs(client: TestClient, clock: Clock) -> None:
    first, second = create_org(client, "alice", "First"), create_org(client, "alice", "Second")
    assert [invite(client, first, f"u{n}@example.com").status_code for n in range(3)] == [201] * 3
    clock.advance(hours=3)
    statuses = [invite(client, second, f"v{n}@example.com").status_code for n in range(3)]
    assert statuses == [201, 201, 429]
    limited = invite(client, second, "w@example.com")
    assert "you" in assert_problem(limited, 429)["detail"]
    assert int(limited.headers["Retry-After"]) == 21 * 3600
    bobs = create_org(client, "bob", "Bob's")
    assert invite(client, bobs, "w@example.com", owner="bob").status_code == 201  # another inviter is not limited


def test_a_bulk_request_stops_at_the_limit_row_by_row(client: TestClient) -> None:
    org = create_org(client, "alice")
    rows = [{"email": f"u{n}@example.com", "role": "viewer"} for n in range(LIMIT + 2)]
    response = client.post(f"/v1/organizations/{org}/invitations:bulk", json={"invitations": rows},
                           headers=auth("alice"))
    assert [r["status"] for r in response.json()["results"]] == [201] * LIMIT + [429, 429]
    assert response.headers["Retry-After"] == str(24 * 3600)
    assert len(client.get(f"/v1/organizations/{org}/invitations", headers=auth("alice")).json()) == LIMIT


# ---- leave and reinstate ------------------------------------------------------------------------

def test_a_member_who_left_or_was_removed_is_reinstated_with_their_role(
    client: TestClient, runtime: Runtime, clock: Clock, smtp: SmtpServer
) -> None:
    org = create_org(client, "alice")
    add_member(runtime, org, "bob", "maintainer")
    add_member(runtime, org, "vic", "viewer")
    assert client.delete(f"/v1/organizations/{org}/members/bob", headers=auth("bob")).status_code == 204  # leaves
    assert client.delete(f"/v1/organizations/{org}/members/vic", headers=auth("alice")).status_code == 204
    assert not check(client, "bob", "create", context=org)
    assert_problem(client.delete(f"/v1/organizations/{org}/members/alice", headers=auth("alice")), 409)  # last owner

    clock.advance(days=89)
    reinstated = client.post(f"/v1/organizations/{org}/members/bob/reinstate", headers=auth("alice"))
    assert reinstated.status_code == 201, reinstated.text
    assert {k: reinstated.json()[k] for k in ("email", "role", "status")} == {
        "email": "bob@example.com", "role": "maintainer", "status": "pending"}
    assert_problem(client.post(f"/v1/organizations/{org}/members/bob/reinstate", headers=auth("alice")), 409)
    assert accept(client, token_for(client, smtp, "bob@example.com"), "bob").status_code == 200
    assert members(client, org) == {"alice": "owner", "bob": "maintainer"}
    assert check(client, "bob", "create", context=org)
    assert_problem(client.post(f"/v1/organizations/{org}/members/bob/reinstate", headers=auth("alice")), 409)

    clock.advance(days=2)  # vic was removed 91 days ago
    assert_problem(client.post(f"/v1/organizations/{org}/members/vic/reinstate", headers=auth("alice")), 404)
    assert_problem(client.post(f"/v1/organizations/{org}/members/nobody/reinstate", headers=auth("alice")), 404)
    assert_problem(client.post(f"/v1/organizations/{org}/members/vic/reinstate", headers=auth("bob")), 403)
    assert_problem(client.post(f"/v1/organizations/{org}/members/vic/reinstate", headers=auth("eve")), 404)
    assert_problem(client.post(f"/v1/organizations/{org}/members/a%20b/reinstate", headers=auth("alice")), 422)


# ---- with grants that expire -------------------------------------------------------------------

def iso(clock: Clock, **delta: float) -> str:
    from datetime import timedelta

    return (clock.now + timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_an_archive_and_restore_keep_each_grants_end(client: TestClient, runtime: Runtime, clock: Clock) -> None:
    org = lab(client, runtime)
    ends = iso(clock, days=60)
    limited = client.patch(f"/v1/organizations/{org}/members/max", json={"expires_at": ends}, headers=auth("alice"))
    assert limited.status_code == 200, limited.text
    shared = client.put("/v1/resources/algorithm/grover/members/mallory",
                        json={"role": "maintainer", "expires_at": ends}, headers=auth("alice"))
    assert shared.status_code == 200, shared.text
    before = client.get(f"/v1/organizations/{org}/members", headers=auth("alice")).json()
    assert client.delete(f"/v1/organizations/{org}", headers=auth("alice")).status_code == 204
    assert not check(client, "mallory", "update", "grover")
    clock.advance(days=1)
    assert client.post(f"/v1/organizations/{org}/restore", headers=auth("alice")).status_code == 200
    assert client.get(f"/v1/organizations/{org}/members", headers=auth("alice")).json() == before
    assert check(client, "mallory", "update", "grover") and check(client, "max", "update", "grover")
    clock.advance(days=60)  # the ends they had still come
    assert not check(client, "mallory", "update", "grover") and not check(client, "max", "update", "grover")


def test_bulk_rows_may_end_the_membership_and_transfer_makes_a_lasting_owner(
    client: TestClient, runtime: Runtime, clock: Clock
) -> None:
    org = create_org(client, "alice")
    rows = [{"email": "a@example.com", "role": "viewer", "expires_at": iso(clock, days=7)},
            {"email": "b@example.com", "role": "viewer", "expires_at": iso(clock, days=-1)}]
    results = client.post(f"/v1/organizations/{org}/invitations:bulk", json={"invitations": rows},
                          headers=auth("alice")).json()["results"]
    assert [r["status"] for r in results] == [201, 422]
    assert results[0]["invitation"]["grant_expires_at"] is not None
    assert [e["field"] for e in results[1]["problem"]["errors"]] == ["invitations[1].expires_at"]
    add_member(runtime, org, "bob", "viewer")
    assert client.patch(f"/v1/organizations/{org}/members/bob", json={"expires_at": iso(clock, days=3)},
                        headers=auth("alice")).status_code == 200
    assert client.post(f"/v1/organizations/{org}/transfer", json={"to_user_id": "bob"},
                       headers=auth("alice")).status_code == 200
    listed = {m["user_id"]: m for m in client.get(f"/v1/organizations/{org}/members", headers=auth("bob")).json()}
    assert (listed["bob"]["role"], listed["bob"]["expires_at"]) == ("owner", None)
    clock.advance(days=4)
    renamed = client.patch(f"/v1/organizations/{org}", json={"name": "Still owned"}, headers=auth("bob"))
    assert renamed.status_code == 200


def test_a_member_whose_membership_ended_can_be_reinstated(
    client: TestClient, runtime: Runtime, clock: Clock, smtp: SmtpServer
) -> None:
    from authz.services.expiry import sweep_expired

    org = create_org(client, "alice")
    add_member(runtime, org, "bob", "maintainer")
    assert (
        client.patch(
            f"/v1/organizations/{org}/members/bob", json={"expires_at": iso(clock, hours=1)}, headers=auth("alice")
        ).status_code
        == 200
    )
    assert_problem(client.post(f"/v1/organizations/{org}/members/bob/reinstate", headers=auth("alice")), 409)
    clock.advance(hours=2)
    sweep_expired(runtime)
    assert members(client, org) == {"alice": "owner"}
    reinstated = client.post(f"/v1/organizations/{org}/members/bob/reinstate", headers=auth("alice"))
    assert reinstated.status_code == 201, reinstated.text
    assert (reinstated.json()["role"], reinstated.json()["grant_expires_at"]) == ("maintainer", None)
    assert accept(client, token_for(client, smtp, "bob@example.com"), "bob").status_code == 200
    assert members(client, org) == {"alice": "owner", "bob": "maintainer"}


def test_the_change_feed_tells_followers_of_the_archive_and_the_restore(client: TestClient, runtime: Runtime) -> None:
    org = lab(client, runtime)
    archived = client.delete(f"/v1/organizations/{org}", headers=auth("alice"))
    restored = client.post(f"/v1/organizations/{org}/restore", headers=auth("alice"))
    first = int(archived.headers["X-Authz-Revision"])
    feed = client.get(f"/v1/changes?after={first - 1}", headers=service_key(runtime, "changes:read")).json()
    archive, restore = feed["changes"][:2]
    assert (archive["revision"], restore["revision"]) == (first, int(restored.headers["X-Authz-Revision"]))
    assert {"op": "archive_org", "id": org} in archive["ops"] and {"op": "restore_org", "id": org} in restore["ops"]
    removed = sorted(tuple(op["rule"]) for op in archive["ops"] if op["op"] == "remove_rule")
    added = sorted(tuple(op["rule"]) for op in restore["ops"] if op["op"] == "add_rule")
    assert removed == added and ("g", "user:mallory", "viewer", "algorithm:grover") in removed
