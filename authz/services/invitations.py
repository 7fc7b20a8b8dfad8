"""Invitations: owners invite by email; a person becomes a member only by accepting.

Who may list, create, resend and revoke is the policy's `invitation` type (owners, as
shipped), never code. Every write locks the org row first, like the member writes, so
concurrent invitations, acceptances and org deletions queue in one order. Creating and
resending write the mail into the outbox in the same transaction (authz.mail.outbox);
the token itself is returned to nobody: it exists in clear only in that outbox row until
delivery, and as a SHA-256 hash on the invitation.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from authz.domain import ids
from authz.domain import invitations as inv
from authz.domain.cursors import Page
from authz.domain.errors import (
    AuthzError,
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    NotFound,
    TooManyRequests,
)
from authz.domain.grants import requested_expiry
from authz.domain.principal import Principal
from authz.mail import outbox
from authz.mail.message import invitation_message, inviter_name
from authz.services import paging
from authz.services.access import require_in_context, role_in_context
from authz.services.invitation_limits import check_invitation_limits, lock_inviter
from authz.services.members import add_member, valid_role
from authz.services.runtime import Runtime, Written
from authz.store.tables import FormerMember, Invitation, Membership, Organization
from authz.store.unit_of_work import UnitOfWork

BULK_MAX = 100
REINSTATE_WINDOW = timedelta(days=90)
UNKNOWN_TOKEN = "no invitation matches this token; if it was resent, use the link in the newest email"


@dataclass(frozen=True)
class InvitationView:
    """An invitation as owners see it (never the token)."""

    id: str
    organization_id: str
    email: str
    role: str
    status: inv.Status
    delivery: str  # pending, sent, failed: the latest email's state
    invited_by: str
    created_at: datetime
    expires_at: datetime
    grant_expires_at: datetime | None = None  # the membership it creates ends then


@dataclass(frozen=True)
class MyInvitationView:
    """A pending invitation as its recipient sees it."""

    id: str
    organization_id: str
    organization_name: str
    email: str
    role: str
    invited_by: str
    expires_at: datetime


@dataclass(frozen=True)
class InvitationPreview:
    """What the page an invitation link opens shows to the signed-in holder of the link.

    The organization's name and the inviter are shown only to the invited person (verified
    email); anyone else holding the link learns only that it is not theirs.
    """

    status: inv.Status
    for_caller: bool  # the caller's verified email is the invited one
    email_verified: bool
    email_hint: str  # the invited address, partly hidden ("b…@example.com")
    already_member: bool
    organization_id: str | None = None
    organization_name: str | None = None
    role: str | None = None
    invited_by: str | None = None
    expires_at: datetime | None = None
    grant_expires_at: datetime | None = None  # the membership it creates ends then


@dataclass(frozen=True)
class AcceptedView:
    organization_id: str
    role: str


def _view(row: Invitation, delivery: str, now: datetime) -> InvitationView:
    return InvitationView(
        row.id, row.org_id, row.email, row.role, inv.visible_status(row.status, row.expires_at, now),
        delivery, row.invited_by, row.created_at, row.expires_at, row.grant_expires_at,
    )


def _enqueue_mail(rt: Runtime, uow: UnitOfWork, principal: Principal, org: Organization, row: Invitation,
                  token: str) -> None:
    content = invitation_message(
        org_name=org.name,
        inviter=inviter_name(principal.id, principal.email),
        role=row.role,
        recipient=row.email,
        public_url=rt.settings.public_url,
        expires_at=row.expires_at,
    )
    outbox.enqueue(uow.session, invitation_id=row.id, recipient=row.email, content=content, token=token, now=uow.now)


def _member_with_email(uow: UnitOfWork, org_id: str, email: str) -> bool:
    found = uow.session.scalar(
        # Exact: member emails are stored canonical (members.add_member); SQL lower() would fold Unicode.
        select(Membership.user_id).where(Membership.org_id == org_id, Membership.email == email).limit(1)
    )
    return found is not None


def _live_invitation(uow: UnitOfWork, org_id: str, email: str, *, other_than: str | None = None) -> str | None:
    """The id of a pending, unexpired invitation of `email` to the org, if there is one."""
    query = select(Invitation.id).where(
        Invitation.org_id == org_id, Invitation.email == email,
        Invitation.status == inv.PENDING, Invitation.expires_at > uow.now,
    )
    if other_than is not None:
        query = query.where(Invitation.id != other_than)
    return uow.session.scalar(query.limit(1))


def _org_invitation(uow: UnitOfWork, org_id: str, invitation_id: str) -> Invitation:
    row = uow.session.scalar(
        select(Invitation).where(Invitation.id == invitation_id, Invitation.org_id == org_id).with_for_update()
    )
    if row is None:
        raise NotFound("invitation not found")
    return row


# ---- owners ------------------------------------------------------------------------------

def _create(rt: Runtime, uow: UnitOfWork, principal: Principal, org: Organization, address: str, role: str,
            grant_ends: datetime | None = None, *, action: str = "invitation.create",
            detail: dict[str, object] | None = None) -> Invitation:
    """One new invitation of a locked org (the caller may create invitations): its row, email and audit entry."""
    if _member_with_email(uow, org.id, address):
        raise Conflict(f"{address} is already a member of this organization")
    pending = _live_invitation(uow, org.id, address)
    if pending is not None:
        raise Conflict(f"{address} already has a pending invitation ({pending}); resend or revoke it instead")
    check_invitation_limits(uow, org.id, principal.id, rt.settings.invitations_per_day)
    invitation_id = inv.new_invitation_id()
    token = inv.new_token(invitation_id)
    row = Invitation(
        id=invitation_id, org_id=org.id, email=address, role=role, token_hash=token.digest,
        status=inv.PENDING, invited_by=principal.id, created_at=uow.now,
        expires_at=uow.now + timedelta(seconds=rt.settings.invitation_ttl), grant_expires_at=grant_ends,
    )
    uow.session.add(row)
    uow.session.flush()
    _enqueue_mail(rt, uow, principal, org, row, token.value)
    extra = {"grant_expires_at": grant_ends.isoformat()} if grant_ends is not None else {}
    uow.audit(action, context=org.id, target=invitation_id,
              detail={"email": address, "role": role, **extra, **(detail or {})})
    return row


def _lock_for_inviting(rt: Runtime, uow: UnitOfWork, principal: Principal, org_id: str) -> Organization:
    org = uow.lock_org(org_id)
    require_in_context(uow.session, rt.roles, principal, "create", "invitation", org_id)
    lock_inviter(uow, principal.id)  # after the org's lock, always (authz.services.invitation_limits)
    return org


def create_invitation(rt: Runtime, principal: Principal, org_id: str, email: object, role: object,
                      expires_at: object = None) -> Written[InvitationView]:
    """A pending invitation and its email in the outbox, in one transaction.

    `expires_at`: when the membership it creates ends (None: it does not).
    """
    ids.org_id(org_id)
    address = inv.email(email)
    clean_role = valid_role(rt, role)
    with rt.unit_of_work(principal) as uow:
        grant_ends = requested_expiry(expires_at, uow.now)
        org = _lock_for_inviting(rt, uow, principal, org_id)
        row = _create(rt, uow, principal, org, address, clean_role, grant_ends)
        uow.commit()
    return Written(_view(row, outbox.PENDING, uow.now), None)


def create_invitations(rt: Runtime, principal: Principal, org_id: str,
                       rows: Sequence[Mapping[str, object]]) -> list[InvitationView | AuthzError]:
    """Up to BULK_MAX invitations in one transaction: per row, the invitation or why not, in order.

    Who may invite and whether the org exists are asked once (an error for the whole
    request); everything about one row (its email, role, a duplicate, the rate limit)
    is that row's answer, and a refused row changes nothing.
    """
    ids.org_id(org_id)
    if not 1 <= len(rows) <= BULK_MAX:
        raise Invalid(f"invitations must hold 1-{BULK_MAX} rows", field="invitations")
    results: list[InvitationView | AuthzError] = []
    with rt.unit_of_work(principal) as uow:
        org = _lock_for_inviting(rt, uow, principal, org_id)
        for number, fields in enumerate(rows):
            try:
                unknown = sorted(set(fields) - {"email", "role", "expires_at"})
                if unknown:
                    raise Invalid(f"invitations[{number}].{unknown[0]} is not an invitation field",
                                  field=f"invitations[{number}].{unknown[0]}")
                address = inv.email(fields.get("email"), f"invitations[{number}].email")
                clean_role = valid_role(rt, fields.get("role"), f"invitations[{number}].role")
                grant_ends = requested_expiry(fields.get("expires_at"), uow.now, f"invitations[{number}].expires_at")
                row = _create(rt, uow, principal, org, address, clean_role, grant_ends)
            except (Invalid, Conflict, TooManyRequests) as exc:
                results.append(exc)
                continue
            results.append(_view(row, outbox.PENDING, uow.now))
        uow.commit()
    return results


def reinstate_member(rt: Runtime, principal: Principal, org_id: str, user_id: str) -> Written[InvitationView]:
    """An invitation that brings back a member removed or gone in the last REINSTATE_WINDOW, with their role."""
    ids.org_id(org_id)
    user = ids.user_id(user_id)
    with rt.unit_of_work(principal) as uow:
        org = _lock_for_inviting(rt, uow, principal, org_id)
        former = uow.session.get(FormerMember, (org_id, user))
        if role_in_context(uow.session, rt.roles, user, org_id) is not None:
            raise Conflict(f"{user} is a member of this organization")
        if former is None or former.left_at <= uow.now - REINSTATE_WINDOW:
            raise NotFound(f"{user} was not a member of this organization in the last {REINSTATE_WINDOW.days} days")
        if former.email is None:
            raise Conflict(f"no email address is known for {user}; invite them by email instead")
        if former.role not in rt.policy.roles:
            raise Conflict(f"their former role {former.role!r} no longer exists; invite them with another role")
        row = _create(rt, uow, principal, org, former.email.lower(), former.role, action="member.reinstate",
                      detail={"user_id": user, "left_at": former.left_at.isoformat(), "how": former.how})
        uow.commit()
    return Written(_view(row, outbox.PENDING, uow.now), None)


def list_invitations(
    rt: Runtime, principal: Principal, org_id: str, *, after: str | None = None, limit: int | None = None,
) -> list[InvitationView]:
    """The org's invitations ordered by id, with status and delivery state: after `after`, at most `limit`."""
    ids.org_id(org_id)
    now = rt.clock()
    with rt.database.session() as session:
        require_in_context(session, rt.roles, principal, "read", "invitation", org_id)
        query = select(Invitation).where(Invitation.org_id == org_id)
        if after is not None:
            query = query.where(Invitation.id > after)
        rows = list(session.scalars(query.order_by(Invitation.id).limit(limit)))
        delivery = outbox.delivery_states(session, [row.id for row in rows])
        return [_view(row, delivery.get(row.id, outbox.PENDING), now) for row in rows]


def invitations_page(
    rt: Runtime, principal: Principal, org_id: str, *, limit: object = paging.MAX_PAGE, cursor: str | None = None,
) -> Page[InvitationView]:
    """One page of `list_invitations`; `next_cursor` continues after its last invitation."""
    return paging.keyset_page(
        rt.cursors, ("invitations", org_id), limit, cursor,
        lambda after, size: list_invitations(rt, principal, org_id, after=after, limit=size),
        lambda invitation: invitation.id,
    )


def resend_invitation(rt: Runtime, principal: Principal, org_id: str, invitation_id: str) -> Written[InvitationView]:
    """A new token and expiry for a pending (or expired) invitation; the old token is dead."""
    ids.org_id(org_id)
    inv.invitation_id(invitation_id)
    with rt.unit_of_work(principal) as uow:
        org = uow.lock_org(org_id)
        require_in_context(uow.session, rt.roles, principal, "create", "invitation", org_id)
        row = _org_invitation(uow, org_id, invitation_id)
        if row.status != inv.PENDING:
            raise Conflict(f"this invitation is {row.status}; only pending or expired invitations can be resent")
        if _member_with_email(uow, org_id, row.email):
            raise Conflict(f"{row.email} is already a member of this organization")
        newer = _live_invitation(uow, org_id, row.email, other_than=row.id)
        if newer is not None:
            raise Conflict(f"{row.email} has a newer pending invitation ({newer}); resend that one")
        token = inv.new_token(row.id)
        row.token_hash = token.digest
        row.expires_at = uow.now + timedelta(seconds=rt.settings.invitation_ttl)
        outbox.retire_pending(uow.session, row.id, "not sent: superseded by a resend")
        _enqueue_mail(rt, uow, principal, org, row, token.value)
        uow.audit("invitation.resend", context=org_id, target=row.id, detail={"email": row.email, "role": row.role})
        uow.commit()
    return Written(_view(row, outbox.PENDING, uow.now), None)


def revoke_invitation(rt: Runtime, principal: Principal, org_id: str, invitation_id: str) -> Written[None]:
    """Revoked: its token stops working and an unsent email is never sent. Revoking twice is fine."""
    ids.org_id(org_id)
    inv.invitation_id(invitation_id)
    with rt.unit_of_work(principal) as uow:
        uow.lock_org(org_id)
        require_in_context(uow.session, rt.roles, principal, "delete", "invitation", org_id)
        row = _org_invitation(uow, org_id, invitation_id)
        if row.status == inv.REVOKED:
            return Written(None, None)
        if row.status != inv.PENDING:
            hint = "; remove the member instead" if row.status == inv.ACCEPTED else ""
            raise Conflict(f"this invitation was already {row.status}{hint}")
        row.status, row.decided_at, row.decided_by = inv.REVOKED, uow.now, principal.id
        outbox.retire_pending(uow.session, row.id, "not sent: the invitation was revoked")
        uow.audit("invitation.revoke", context=org_id, target=row.id, detail={"email": row.email, "role": row.role})
        uow.commit()
    return Written(None, None)


# ---- recipients --------------------------------------------------------------------------

def my_invitations(rt: Runtime, principal: Principal) -> list[MyInvitationView]:
    """Pending, unexpired invitations for the caller's verified email (none without one)."""
    if not principal.is_user:
        raise Forbidden("this endpoint needs a user token")
    if not principal.email or not principal.email_verified:
        return []
    now = rt.clock()
    with rt.database.session() as session:
        rows = session.execute(
            select(Invitation, Organization.name)
            .join(Organization, Organization.id == Invitation.org_id)
            .where(Invitation.email == inv.canonical_email(principal.email), Invitation.status == inv.PENDING,
                   Invitation.expires_at > now)
            .order_by(Invitation.created_at.desc(), Invitation.id)
        ).all()
        return [
            MyInvitationView(row.id, row.org_id, name, row.email, row.role, row.invited_by, row.expires_at)
            for row, name in rows
        ]


def _parse(token: object) -> tuple[str, str]:
    """(invitation id, token) of a well-formed token; checked before any transaction starts."""
    invitation_id = inv.parse_token(token)
    if invitation_id is None:
        raise NotFound(UNKNOWN_TOKEN)
    return invitation_id, str(token).strip()


def _hint(address: str) -> str:
    local, _, domain = address.partition("@")
    return f"{local[:1]}…@{domain}"


def preview_invitation(rt: Runtime, principal: Principal, token: object) -> InvitationPreview:
    """Read-only: what an invitation link is, for the invitation page (no state changes)."""
    if not principal.is_user:
        raise Forbidden("invitations are answered with a user token")
    invitation_id, value = _parse(token)
    with rt.database.session() as session:
        row = session.get(Invitation, invitation_id)
        if row is None or not inv.token_matches(value, row.token_hash):
            raise NotFound(UNKNOWN_TOKEN)
        org = session.get(Organization, row.org_id)
        if org is None:
            raise NotFound(UNKNOWN_TOKEN)
        status = inv.visible_status(row.status, row.expires_at, rt.clock())
        verified = bool(principal.email) and principal.email_verified
        mine = verified and inv.same_email(row.email, principal.email)
        if not mine:
            return InvitationPreview(status, False, verified, _hint(row.email), False)
        member = role_in_context(session, rt.roles, principal.id, row.org_id) is not None
        return InvitationPreview(status, True, True, _hint(row.email), member, org.id, org.name, row.role,
                                 row.invited_by, row.expires_at, row.grant_expires_at)


def _locked_by_token(uow: UnitOfWork, invitation_id: str, token: str) -> Invitation:
    """The invitation a token belongs to, locked after its org (the order every writer uses)."""
    found = uow.session.get(Invitation, invitation_id)
    if found is None or not inv.token_matches(token, found.token_hash):
        raise NotFound(UNKNOWN_TOKEN)
    try:
        org = uow.lock_context(found.org_id, archived=True)
    except NotFound:  # purged meanwhile
        raise NotFound(UNKNOWN_TOKEN) from None
    if org is not None and org.archived_at is not None:  # its invitations were revoked by the archive
        raise Gone("this invitation no longer works: the organization was deleted")
    row = uow.session.scalar(
        select(Invitation).where(Invitation.id == invitation_id).with_for_update()
        .execution_options(populate_existing=True)
    )
    if row is None or not inv.token_matches(token, row.token_hash):  # deleted or resent meanwhile
        raise NotFound(UNKNOWN_TOKEN)
    return row


def _check_recipient(principal: Principal, row: Invitation) -> None:
    """Only the invited person, proven by a verified email claim, may answer an invitation."""
    if not principal.is_user:
        raise Forbidden("invitations are answered with a user token")
    if not principal.email:
        raise Forbidden("your token carries no email; sign in with the invited email address")
    if not principal.email_verified:
        raise Forbidden("your email address is not verified; verify it with your identity provider first")
    if not inv.same_email(row.email, principal.email):
        raise Forbidden("this invitation was sent to a different email address")


def _check_open(row: Invitation, now: datetime) -> None:
    if row.status == inv.REVOKED:
        raise Gone("this invitation was revoked by an owner of the organization")
    if row.status in (inv.ACCEPTED, inv.DECLINED):
        raise Conflict(f"this invitation was already {row.status}; an invitation works once")
    if row.expires_at <= now:
        raise Gone(f"this invitation expired at {row.expires_at.isoformat()}; ask an owner to resend it")


def _decide(uow: UnitOfWork, row: Invitation, status: str, user: str) -> None:
    """Pending → `status`, only if still pending: the last guard of the single use."""
    result = uow.session.execute(
        update(Invitation)
        .where(Invitation.id == row.id, Invitation.status == inv.PENDING, Invitation.token_hash == row.token_hash)
        .values(status=status, decided_at=uow.now, decided_by=user)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict("this invitation was already used; an invitation works once")
    outbox.retire_pending(uow.session, row.id, f"not sent: the invitation was {status}")


def accept_invitation(rt: Runtime, principal: Principal, token: object) -> Written[AcceptedView]:
    """The caller becomes a member with the invited role: membership, rule, changelog, audit at once."""
    invitation_id, value = _parse(token)
    with rt.unit_of_work(principal) as uow:
        row = _locked_by_token(uow, invitation_id, value)
        _check_recipient(principal, row)
        _check_open(row, uow.now)
        if role_in_context(uow.session, rt.roles, principal.id, row.org_id) is not None:
            raise Conflict("you are already a member of this organization")
        if row.role not in rt.policy.roles:
            raise Conflict(f"the role {row.role!r} no longer exists; ask an owner for a new invitation")
        if row.grant_expires_at is not None and row.grant_expires_at <= uow.now:
            raise Gone(f"the membership this invitation grants ended at {row.grant_expires_at.isoformat()}; "
                       "ask an owner for a new invitation")
        _decide(uow, row, inv.ACCEPTED, principal.id)
        add_member(uow, row.org_id, principal.id, principal.email, row.role, row.grant_expires_at)
        uow.audit("invitation.accept", context=row.org_id, target=principal.id,
                  detail={"invitation": row.id, "email": row.email, "role": row.role})
        try:
            revision = uow.commit()
        except IntegrityError:
            raise Conflict("you are already a member of this organization") from None
    return Written(AcceptedView(row.org_id, row.role), revision)


def decline_invitation(rt: Runtime, principal: Principal, token: object) -> Written[None]:
    """The invited person says no; the token stops working."""
    invitation_id, value = _parse(token)
    with rt.unit_of_work(principal) as uow:
        row = _locked_by_token(uow, invitation_id, value)
        _check_recipient(principal, row)
        _check_open(row, uow.now)
        _decide(uow, row, inv.DECLINED, principal.id)
        uow.audit("invitation.decline", context=row.org_id, target=row.id,
                  detail={"email": row.email, "role": row.role})
        uow.commit()
    return Written(None, None)
