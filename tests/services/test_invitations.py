"""Invitations in the core: the token's life, who may do what, expiry, and the single use under concurrency."""

import base64
import hashlib
import re
import shutil
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from authz.domain.errors import Conflict, Forbidden, Gone, Invalid, NotFound
from authz.domain.principal import Principal, cli_principal
from authz.mail.sender import OutboxSender
from authz.services import invitations, lifecycle, organizations
from authz.services.policy_admin import reload_policy
from authz.services.runtime import Runtime
from authz.settings import Settings
from authz.store.tables import AuditEntry, CasbinRule, ChangelogEntry, Invitation, Membership, OutboxMessage
from tests.clock import Clock
from tests.conftest import BILLING, POLICY_DIR, add_member, make_settings
from tests.smtp_server import SmtpServer

LINK = re.compile(r"^https?://\S+/invitations/accept\?token=([A-Za-z0-9_-]+)\r?$", re.MULTILINE)


def user(name: str, *, email: str | None = None, verified: bool = True) -> Principal:
    return Principal(kind="user", id=name, email=email or f"{name}@example.com", email_verified=verified)


@pytest.fixture
def settings(database_url: str, smtp: SmtpServer) -> Settings:
    return make_settings(database_url, smtp_host="127.0.0.1", smtp_port=smtp.port, mail_sender=False)


@pytest.fixture
def sender(runtime: Runtime) -> OutboxSender:
    return OutboxSender.from_settings(runtime.settings, runtime.database, clock=lambda: runtime.clock())


def new_org(runtime: Runtime, owner: str = "alice") -> str:
    return organizations.create_organization(runtime, user(owner), "Quantum Lab", BILLING).value.id


def invite(runtime: Runtime, sender: OutboxSender, smtp: SmtpServer, org_id: str, email: str,
           role: str = "maintainer") -> tuple[str, str]:
    """(invitation id, token as read from the delivered email)."""
    created = invitations.create_invitation(runtime, user("alice"), org_id, email, role).value
    assert sender.deliver_due() == 1
    match = LINK.search(smtp.inbox.received[-1].text)
    assert match is not None
    return created.id, match.group(1)


def everything_stored(runtime: Runtime) -> str:
    """Every row of every table, as text: a secret stored anywhere shows up here."""
    from authz.store.tables import Base

    with runtime.database.session() as session:
        return "\n".join(
            repr(row) for table in Base.metadata.sorted_tables for row in session.execute(select(table)).all()
        )


def test_token_is_long_random_urlsafe_and_stored_only_as_a_hash(runtime: Runtime, sender: OutboxSender,
                                                               smtp: SmtpServer) -> None:
    org_id = new_org(runtime)
    invitation_id, token = invite(runtime, sender, smtp, org_id, "bob@example.com")
    secret = token.removeprefix(invitation_id + "_")
    assert re.fullmatch(r"[A-Za-z0-9_-]+", token)
    assert len(base64.urlsafe_b64decode(secret + "=")) == 32
    with runtime.database.session() as session:
        row = session.get(Invitation, invitation_id)
        assert row is not None
        assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
        message = session.scalars(select(OutboxMessage)).one()
        assert (message.status, message.token) == ("sent", None)
        assert "<TOKEN>" in message.body_text
    stored = everything_stored(runtime)
    assert secret not in stored
    _, second = invite(runtime, sender, smtp, org_id, "carol@example.com")
    assert second.split("_", 2)[2] != secret


def test_outbox_holds_the_token_only_until_delivery(runtime: Runtime, sender: OutboxSender) -> None:
    org_id = new_org(runtime)
    created = invitations.create_invitation(runtime, user("alice"), org_id, "bob@example.com", "viewer").value
    with runtime.database.session() as session:
        pending = session.scalars(select(OutboxMessage)).one()
        assert pending.invitation_id == created.id and pending.status == "pending"
        assert pending.token is not None and pending.token.startswith(created.id + "_")
        token = pending.token
        audit = [repr((a.action, a.detail, a.target)) for a in session.scalars(select(AuditEntry))]
    assert not any(token.split("_", 2)[2] in line for line in audit)
    sender.deliver_due()
    assert token.split("_", 2)[-1] not in everything_stored(runtime)


def test_accept_creates_membership_changelog_and_audit_in_one_revision(runtime: Runtime, sender: OutboxSender,
                                                                        smtp: SmtpServer) -> None:
    org_id = new_org(runtime)
    invitation_id, token = invite(runtime, sender, smtp, org_id, "Bob@Example.COM")
    before = runtime.replica.revision
    accepted = invitations.accept_invitation(runtime, user("bob", email="bob@EXAMPLE.com"), token)
    assert (accepted.value.organization_id, accepted.value.role) == (org_id, "maintainer")
    assert accepted.revision == before + 1 == runtime.replica.revision
    assert runtime.replica.snapshot.index.role_in("bob", org_id) == "maintainer"
    with runtime.database.session() as session:
        change = session.get(ChangelogEntry, accepted.revision)
        assert change is not None
        assert {"op": "add_rule", "rule": ["g", "user:bob", "maintainer", org_id]} in change.delta
        audit = session.scalars(select(AuditEntry).where(AuditEntry.action == "invitation.accept")).one()
        assert (audit.target, audit.revision, audit.context) == ("bob", accepted.revision, org_id)
        row = session.get(Invitation, invitation_id)
        assert row is not None and (row.status, row.decided_by) == ("accepted", "bob")
    with pytest.raises(Conflict, match="already accepted"):
        invitations.accept_invitation(runtime, user("bob"), token)


def test_only_the_invited_verified_email_may_accept(runtime: Runtime, sender: OutboxSender, smtp: SmtpServer) -> None:
    org_id = new_org(runtime)
    _, token = invite(runtime, sender, smtp, org_id, "bob@example.com")
    with pytest.raises(Forbidden, match="different email"):
        invitations.accept_invitation(runtime, user("mallory"), token)
    with pytest.raises(Forbidden, match="not verified"):
        invitations.accept_invitation(runtime, user("bob", verified=False), token)
    with pytest.raises(Forbidden, match="no email"):
        invitations.accept_invitation(runtime, Principal(kind="user", id="bob", email_verified=True), token)
    with pytest.raises(Forbidden, match="different email"):
        invitations.decline_invitation(runtime, user("mallory"), token)
    assert runtime.replica.snapshot.index.role_in("mallory", org_id) is None
    assert runtime.replica.snapshot.index.role_in("bob", org_id) is None
    assert invitations.accept_invitation(runtime, user("bob"), token).value.organization_id == org_id


def test_unknown_and_malformed_tokens(runtime: Runtime, sender: OutboxSender, smtp: SmtpServer) -> None:
    org_id = new_org(runtime)
    invitation_id, token = invite(runtime, sender, smtp, org_id, "bob@example.com")
    forged = invitation_id + "_" + "A" * 43  # right invitation, wrong secret
    for candidate in (forged, "inv_" + "0" * 24 + "_" + token[-43:], "not-a-token", token + "x"):
        with pytest.raises(NotFound, match="no invitation matches"):
            invitations.accept_invitation(runtime, user("bob"), candidate)
    for bad in ("", "   ", "x" * 201, 42, None):
        with pytest.raises(Invalid) as caught:
            invitations.accept_invitation(runtime, user("bob"), bad)
        assert caught.value.field == "token"
    assert invitations.accept_invitation(runtime, user("bob"), token).value.role == "maintainer"


def test_expiry_follows_the_injected_clock(runtime: Runtime, sender: OutboxSender, smtp: SmtpServer) -> None:
    clock = Clock(runtime)
    org_id = new_org(runtime)
    invitation_id, token = invite(runtime, sender, smtp, org_id, "bob@example.com")
    clock.advance(seconds=runtime.settings.invitation_ttl - 1)
    assert [i.id for i in invitations.my_invitations(runtime, user("bob"))] == [invitation_id]
    clock.advance(seconds=1)
    with pytest.raises(Gone, match="expired"):
        invitations.accept_invitation(runtime, user("bob"), token)
    assert invitations.my_invitations(runtime, user("bob")) == []
    [listed] = invitations.list_invitations(runtime, user("alice"), org_id)
    assert listed.status == "expired"
    # an expired invitation no longer blocks a new one for the same email
    again = invitations.create_invitation(runtime, user("alice"), org_id, "bob@example.com", "viewer").value
    assert again.status == "pending"
    with pytest.raises(Conflict, match="newer pending invitation"):
        invitations.resend_invitation(runtime, user("alice"), org_id, invitation_id)


def test_resend_kills_the_old_token_and_revoke_kills_the_new(runtime: Runtime, sender: OutboxSender,
                                                             smtp: SmtpServer) -> None:
    clock = Clock(runtime)
    org_id = new_org(runtime)
    invitation_id, old = invite(runtime, sender, smtp, org_id, "bob@example.com")
    first_expiry = invitations.list_invitations(runtime, user("alice"), org_id)[0].expires_at
    clock.advance(days=8)  # expired: resending revives it
    resent = invitations.resend_invitation(runtime, user("alice"), org_id, invitation_id).value
    assert resent.status == "pending" and resent.expires_at == first_expiry + timedelta(days=8)
    assert sender.deliver_due() == 1
    link = LINK.search(smtp.inbox.received[-1].text)
    assert link is not None
    new = link.group(1)
    assert new != old
    with pytest.raises(NotFound):
        invitations.accept_invitation(runtime, user("bob"), old)
    invitations.revoke_invitation(runtime, user("alice"), org_id, invitation_id)
    invitations.revoke_invitation(runtime, user("alice"), org_id, invitation_id)  # twice is fine
    with pytest.raises(Gone, match="revoked"):
        invitations.accept_invitation(runtime, user("bob"), new)
    with pytest.raises(Conflict, match="revoked"):
        invitations.resend_invitation(runtime, user("alice"), org_id, invitation_id)
    assert invitations.list_invitations(runtime, user("alice"), org_id)[0].status == "revoked"


def test_revoked_before_delivery_is_never_sent(runtime: Runtime, sender: OutboxSender, smtp: SmtpServer) -> None:
    org_id = new_org(runtime)
    created = invitations.create_invitation(runtime, user("alice"), org_id, "bob@example.com", "viewer").value
    invitations.revoke_invitation(runtime, user("alice"), org_id, created.id)
    assert sender.deliver_due() == 0
    assert smtp.inbox.received == []
    with runtime.database.session() as session:
        message = session.scalars(select(OutboxMessage)).one()
        assert (message.status, message.token) == ("failed", None)
        assert "revoked" in (message.last_error or "")
    assert invitations.list_invitations(runtime, user("alice"), org_id)[0].delivery == "failed"


def test_decline_ends_the_invitation(runtime: Runtime, sender: OutboxSender, smtp: SmtpServer) -> None:
    org_id = new_org(runtime)
    _, token = invite(runtime, sender, smtp, org_id, "bob@example.com")
    invitations.decline_invitation(runtime, user("bob"), token)
    with pytest.raises(Conflict, match="declined"):
        invitations.accept_invitation(runtime, user("bob"), token)
    assert invitations.list_invitations(runtime, user("alice"), org_id)[0].status == "declined"
    assert runtime.replica.snapshot.index.role_in("bob", org_id) is None


def test_conflicts_on_create(runtime: Runtime) -> None:
    org_id = new_org(runtime)
    add_member(runtime, org_id, "bob", "viewer")  # bob@example.com
    with pytest.raises(Conflict, match="already a member"):
        invitations.create_invitation(runtime, user("alice"), org_id, "BOB@example.com", "viewer")
    invitations.create_invitation(runtime, user("alice"), org_id, "carol@example.com", "viewer")
    with pytest.raises(Conflict, match="pending invitation"):
        invitations.create_invitation(runtime, user("alice"), org_id, "Carol@Example.com", "owner")
    assert len(invitations.list_invitations(runtime, user("alice"), org_id)) == 1


def test_accepting_when_already_a_member_changes_nothing(runtime: Runtime, sender: OutboxSender,
                                                          smtp: SmtpServer) -> None:
    org_id = new_org(runtime)
    _, token = invite(runtime, sender, smtp, org_id, "robert@example.com", "owner")
    add_member(runtime, org_id, "bob", "viewer")  # bob joined another way meanwhile
    revision = runtime.replica.revision
    with pytest.raises(Conflict, match="already a member"):
        invitations.accept_invitation(runtime, user("bob", email="robert@example.com"), token)
    assert runtime.replica.revision == revision
    assert runtime.replica.snapshot.index.role_in("bob", org_id) == "viewer"
    assert invitations.list_invitations(runtime, user("alice"), org_id)[0].status == "pending"


def test_who_may_invite_is_the_policy_not_code(runtime: Runtime, tmp_path: Path) -> None:
    org_id = new_org(runtime)
    add_member(runtime, org_id, "max", "maintainer")
    with pytest.raises(Forbidden):
        invitations.create_invitation(runtime, user("max"), org_id, "bob@example.com", "viewer")
    with pytest.raises(Forbidden):
        invitations.list_invitations(runtime, user("max"), org_id)
    with pytest.raises(NotFound):
        invitations.create_invitation(runtime, user("mallory"), org_id, "bob@example.com", "viewer")
    with pytest.raises(Forbidden):
        invitations.create_invitation(runtime, cli_principal(), org_id, "bob@example.com", "viewer")

    policies = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, policies)
    permissions = policies / "permissions.yaml"
    text = permissions.read_text()
    edited = text.replace("  invitation:\n    actions:\n      read: [owner]\n      create: [owner]",
                          "  invitation:\n    actions:\n      read: [maintainer]\n      create: [maintainer]")
    assert edited != text
    permissions.write_text(edited)
    reload_policy(runtime, cli_principal(), policies)
    created = invitations.create_invitation(runtime, user("max"), org_id, "bob@example.com", "viewer").value
    assert [i.id for i in invitations.list_invitations(runtime, user("max"), org_id)] == [created.id]
    with pytest.raises(Forbidden):  # delete stayed owner-only
        invitations.revoke_invitation(runtime, user("max"), org_id, created.id)


def test_invalid_inputs_name_the_field(runtime: Runtime) -> None:
    org_id = new_org(runtime)
    cases = [
        ((org_id, "bob@example.com\r\nBcc: eve@evil.example", "viewer"), "email"),
        ((org_id, "bob", "viewer"), "email"),
        ((org_id, "bob@localhost", "viewer"), "email"),
        ((org_id, "bob smith@example.com", "viewer"), "email"),
        ((org_id, "bób@example.com", "viewer"), "email"),
        ((org_id, "a" * 65 + "@example.com", "viewer"), "email"),
        ((org_id, 7, "viewer"), "email"),
        ((org_id, "bob@example.com", "admin"), "role"),
        (("org_nope", "bob@example.com", "viewer"), "org_id"),
    ]
    for (org, email, role), field in cases:
        with pytest.raises(Invalid) as caught:
            invitations.create_invitation(runtime, user("alice"), org, email, role)
        assert caught.value.field == field, (email, role)
    with pytest.raises(Invalid) as caught:
        invitations.resend_invitation(runtime, user("alice"), org_id, "inv_../../x")
    assert caught.value.field == "invitation_id"
    assert invitations.list_invitations(runtime, user("alice"), org_id) == []


def test_my_invitations_needs_a_verified_email(runtime: Runtime) -> None:
    org_id = new_org(runtime)
    other = new_org(runtime, owner="olga")
    first = invitations.create_invitation(runtime, user("alice"), org_id, "bob@example.com", "viewer").value
    second = invitations.create_invitation(runtime, user("olga"), other, "BOB@example.com", "owner").value
    invitations.create_invitation(runtime, user("alice"), org_id, "carol@example.com", "viewer")
    mine = invitations.my_invitations(runtime, user("bob", email="Bob@Example.com"))
    assert {(i.id, i.organization_id, i.role, i.organization_name) for i in mine} == {
        (first.id, org_id, "viewer", "Quantum Lab"), (second.id, other, "owner", "Quantum Lab")}
    assert invitations.my_invitations(runtime, user("bob", verified=False)) == []
    invitations.revoke_invitation(runtime, user("olga"), other, second.id)
    assert [i.id for i in invitations.my_invitations(runtime, user("bob"))] == [first.id]


def test_concurrent_accepts_of_one_token_exactly_one_wins(runtime: Runtime, sender: OutboxSender,
                                                          smtp: SmtpServer) -> None:
    org_id = new_org(runtime)
    _, token = invite(runtime, sender, smtp, org_id, "bob@example.com")
    before = runtime.replica.revision
    # Two accounts of one person (same verified email) and retries of each, all at once.
    callers = [user("bob"), user("bob-work", email="bob@example.com")] * 4
    barrier = threading.Barrier(len(callers))
    outcomes: list[str] = []
    lock = threading.Lock()

    def accept(principal: Principal) -> None:
        barrier.wait(timeout=10)
        try:
            invitations.accept_invitation(runtime, principal, token)
            result = "ok:" + principal.id
        except Conflict:
            result = "conflict"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=accept, args=(p,)) for p in callers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(outcomes) == len(callers)
    winners = [o for o in outcomes if o.startswith("ok:")]
    assert len(winners) == 1, outcomes
    assert outcomes.count("conflict") == len(callers) - 1
    winner = winners[0].removeprefix("ok:")
    with runtime.database.session() as session:
        members = session.scalars(select(Membership.user_id).where(Membership.org_id == org_id)).all()
        assert sorted(members) == sorted(["alice", winner])
        rules = session.scalar(select(func.count()).select_from(CasbinRule).where(CasbinRule.v2 == org_id))
        assert rules == 2
        assert session.scalar(select(func.max(ChangelogEntry.revision))) == before + 1
        accepts = session.scalars(select(AuditEntry).where(AuditEntry.action == "invitation.accept")).all()
        assert [a.target for a in accepts] == [winner]


def test_deleting_the_org_revokes_its_invitations_and_the_purge_takes_them_and_their_mails(
        runtime: Runtime, sender: OutboxSender, smtp: SmtpServer) -> None:
    org_id = new_org(runtime)
    _, token = invite(runtime, sender, smtp, org_id, "bob@example.com")
    invitations.create_invitation(runtime, user("alice"), org_id, "carol@example.com", "viewer")
    organizations.delete_organization(runtime, user("alice"), org_id)
    with runtime.database.session() as session:
        statuses = session.scalars(select(Invitation.status)).all()
        assert statuses == ["revoked", "revoked"]
    with pytest.raises(Gone):
        invitations.accept_invitation(runtime, user("bob"), token)
    assert sender.deliver_due() == 0  # carol's unsent email is never sent
    lifecycle.purge_organization(runtime, cli_principal(), org_id, now=True)
    with runtime.database.session() as session:
        assert session.scalar(select(func.count()).select_from(Invitation)) == 0
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 0
    with pytest.raises(NotFound):
        invitations.accept_invitation(runtime, user("bob"), token)
