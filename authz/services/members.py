"""Members of an organization: listing, changing roles, removing and leaving.

An org never loses its last owner: every change locks the org row first and re-counts
owners inside the transaction (DESIGN.md invariant 5). "Owner" is the policy's
`context_owner` role, whatever it is called (`owning_role`).
"""

from datetime import datetime

from sqlalchemy import delete

from authz.domain import ids
from authz.domain.cursors import Page
from authz.domain.errors import Conflict, Forbidden, Invalid, NotFound
from authz.domain.grants import (
    expiry_epoch,
    expiry_instant,
    expiry_value,
    requested_expiry,
)
from authz.domain.invitations import canonical_email
from authz.domain.principal import Principal
from authz.services import paging
from authz.services.access import owning_role, require_in_context
from authz.services.runtime import Runtime, Written
from authz.services.views import MemberView
from authz.store import rules
from authz.store.rules import Rule
from authz.store.tables import FormerMember, Membership
from authz.store.unit_of_work import UnitOfWork
from authz_client.decisions.roles import CompiledRoles


def list_members(
    rt: Runtime, principal: Principal, org_id: str, *, after: str | None = None, limit: int | None = None,
) -> list[MemberView]:
    """The org's members ordered by user id: those after `after`, at most `limit` (keyset paging)."""
    ids.org_id(org_id)
    with rt.database.session() as session:
        require_in_context(session, rt.roles, principal, "read", "member", org_id)
        rows = rules.members_with_grants(session, org_id, rt.clock(), after=after, limit=limit)
    return [MemberView(user_id, email, role, joined_at, _expires(expiry))
            for user_id, email, joined_at, role, expiry in rows]


def members_page(
    rt: Runtime, principal: Principal, org_id: str, *, limit: object = paging.MAX_PAGE, cursor: str | None = None,
) -> Page[MemberView]:
    """One page of `list_members`; `next_cursor` continues after its last member."""
    return paging.keyset_page(
        rt.cursors, ("members", org_id), limit, cursor,
        lambda after, size: list_members(rt, principal, org_id, after=after, limit=size), lambda member: member.user_id,
    )


def _expires(expiry: str | None) -> datetime | None:
    return expiry_instant(expiry) if expiry else None


def _permanent_owners(uow: UnitOfWork, org_id: str, owner: str) -> int:
    """Owners whose grant does not end: the ones that keep the org owned (invariant 5)."""
    return rules.permanent_owners(uow.session, org_id, owner)


def _membership_rule(uow: UnitOfWork, org_id: str, user: str) -> Rule | None:
    """The member's rule in force now (with its expiry, if any), read under the org's lock."""
    rules = uow.rules_where("g", v0=ids.subject_of(user), v2=org_id)
    return next((rule for rule in rules if len(rule) < 5 or not rule[4] or expiry_epoch(rule[4]) > uow.now.timestamp()),
                None)


def _keeps_an_owner(uow: UnitOfWork, org_id: str, rule: Rule, owner: str) -> None:
    """Ending or limiting a permanent owner's grant needs another permanent owner."""
    permanent = len(rule) < 5 or not rule[4]
    if rule[2] == owner and permanent and _permanent_owners(uow, org_id, owner) <= 1:
        raise Conflict(f"the organization must keep at least one {owner}; make another member {owner} first")


def previous_owner_role(roles: CompiledRoles, owner: str) -> str:
    """What an owner becomes by transferring the ownership: the one role the owning role inherits."""
    inherited = roles.inherited(owner)
    if len(inherited) != 1:
        raise Conflict(f"the policy's {owner!r} role inherits {len(inherited)} roles, so it names no role for the "
                       "previous owner; a transfer needs it to inherit exactly one")
    return next(iter(inherited))


def valid_role(rt: Runtime, role: object, field: str = "role") -> str:
    if not isinstance(role, str) or role not in rt.policy.roles:
        raise Invalid(f"role must be one of: {', '.join(sorted(rt.policy.roles))}", field=field)
    return role


def membership_rule(user: str, role: str, org_id: str, expires_at: datetime | None) -> Rule:
    rule: Rule = ("g", ids.subject_of(user), role, org_id)
    return rule if expires_at is None else (*rule, expiry_value(expires_at))


def add_member(uow: UnitOfWork, org_id: str, user: str, email: str | None, role: str,
               expires_at: datetime | None = None) -> None:
    """The rows of a new membership (org creation, invitation acceptance), replacing one that has ended."""
    for ended in uow.rules_where("g", v0=ids.subject_of(user), v2=org_id):
        uow.remove_rule(ended)  # expired, not swept yet: the new membership takes its place
        uow.session.execute(delete(Membership).where(Membership.org_id == org_id, Membership.user_id == user))
        uow.session.flush()
    stored = canonical_email(email) if email is not None else None  # compared exactly (invitations)
    uow.session.add(Membership(org_id=org_id, user_id=user, email=stored, joined_at=uow.now))
    uow.add_rule(membership_rule(user, role, org_id, expires_at))
    uow.session.execute(delete(FormerMember).where(FormerMember.org_id == org_id, FormerMember.user_id == user))


def remember_former(uow: UnitOfWork, org_id: str, user: str, email: str | None, role: str, how: str) -> None:
    """What `reinstate` needs later: the role and the email of a member who is gone."""
    uow.session.execute(delete(FormerMember).where(FormerMember.org_id == org_id, FormerMember.user_id == user))
    uow.session.add(FormerMember(org_id=org_id, user_id=user, email=email, role=role, left_at=uow.now, how=how))


UNCHANGED = object()


def change_role(rt: Runtime, principal: Principal, org_id: str, user_id: str, role: object | None,
                expires_at: object = UNCHANGED) -> Written[MemberView]:
    """Change a member's role and/or when the membership ends (`expires_at`: a time, None for never)."""
    ids.org_id(org_id)
    ids.user_id(user_id)
    new_role = valid_role(rt, role) if role is not None else None
    roles = rt.roles
    with rt.unit_of_work(principal) as uow:
        uow.lock_org(org_id)
        new_expiry = (requested_expiry(expires_at, uow.now) if expires_at is not UNCHANGED else UNCHANGED)
        require_in_context(uow.session, roles, principal, "update", "member", org_id)
        current = _membership_rule(uow, org_id, user_id)
        membership = uow.session.get(Membership, (org_id, user_id))
        if current is None or membership is None:
            raise NotFound("member not found")
        role_now, expiry_now = current[2], _expires(current[4] if len(current) > 4 else None)
        wanted = membership_rule(user_id, new_role or role_now, org_id,
                                 expiry_now if new_expiry is UNCHANGED else new_expiry)  # type: ignore[arg-type]
        if wanted == current:
            return Written(MemberView(user_id, membership.email, role_now, membership.joined_at, expiry_now), None)
        owner = owning_role(roles)
        if wanted[2] != owner or len(wanted) > 4:
            _keeps_an_owner(uow, org_id, current, owner)
        uow.remove_rule(current)
        uow.add_rule(wanted)
        detail: dict[str, object] = {"from": role_now, "to": wanted[2]}
        if len(wanted) > 4 or len(current) > 4:
            detail["expires_at"] = wanted[4] if len(wanted) > 4 else None
        uow.audit("member.role_change", context=org_id, target=user_id, detail=detail)
        revision = uow.commit()
    return Written(MemberView(user_id, membership.email, wanted[2], membership.joined_at,
                              _expires(wanted[4] if len(wanted) > 4 else None)), revision)


def remove_member(rt: Runtime, principal: Principal, org_id: str, user_id: str) -> Written[None]:
    """An owner removes a member, or a member leaves (user_id is the caller)."""
    ids.org_id(org_id)
    ids.user_id(user_id)
    roles = rt.roles
    with rt.unit_of_work(principal) as uow:
        uow.lock_org(org_id)
        leaving = principal.is_user and principal.id == user_id
        if leaving:
            require_in_context(uow.session, roles, principal, "read", "organization", org_id)
        else:
            require_in_context(uow.session, roles, principal, "delete", "member", org_id)
        current = _membership_rule(uow, org_id, user_id)
        if current is None:
            raise NotFound("member not found")
        _keeps_an_owner(uow, org_id, current, owning_role(roles))
        uow.remove_rule(current)
        membership = uow.session.get(Membership, (org_id, user_id))
        remember_former(uow, org_id, user_id, membership.email if membership else None, current[2],
                         "left" if leaving else "removed")
        uow.session.execute(delete(Membership).where(Membership.org_id == org_id, Membership.user_id == user_id))
        uow.audit("member.leave" if leaving else "member.remove", context=org_id, target=user_id,
                  detail={"role": current[2]})
        revision = uow.commit()
    return Written(None, revision)


def transfer_ownership(rt: Runtime, principal: Principal, org_id: str, to_user_id: object) -> Written[str]:
    """An owner hands the org to a member: the member becomes owner, the caller the role the owning
    role inherits (maintainer, as shipped), in one revision.

    Under the org's lock, like every role change: the caller must still be an owner and
    the target still a member when it runs, and the org has an owner throughout.
    """
    ids.org_id(org_id)
    target = ids.user_id(to_user_id, "to_user_id")
    roles = rt.roles
    owner = owning_role(roles)
    stepped_down = previous_owner_role(roles, owner)
    with rt.unit_of_work(principal) as uow:
        uow.lock_org(org_id)
        require_in_context(uow.session, roles, principal, "read", "organization", org_id)
        mine = _membership_rule(uow, org_id, principal.id)
        if mine is None or mine[2] != owner:
            raise Forbidden(f"only a member with the role {owner!r} can transfer the ownership")
        theirs = _membership_rule(uow, org_id, target)
        if theirs is None:
            raise Invalid("to_user_id is not a member of this organization; invite them first", field="to_user_id")
        if theirs[2] == owner:
            raise Conflict(f"{target} already has the role {owner!r} in this organization")
        # The new owner's grant does not end (a transfer is for good); the caller keeps any end theirs had.
        uow.remove_rule(theirs)
        uow.add_rule(membership_rule(target, owner, org_id, None))
        uow.remove_rule(mine)
        uow.add_rule(membership_rule(principal.id, stepped_down, org_id, _expires(mine[4] if len(mine) > 4 else None)))
        uow.audit("organization.transfer", context=org_id, target=target,
                  detail={"from": principal.id, "to": target, "their_role_before": theirs[2]})
        revision = uow.commit()
    return Written(target, revision)
