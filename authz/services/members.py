"""Members of an organization: listing, changing roles, removing and leaving.

An org never loses its last owner: every change locks the org row first and re-counts
owners inside the transaction (DESIGN.md invariant 5).
"""

from sqlalchemy import delete, func, literal, select

from authz.domain import ids
from authz.domain.errors import Conflict, Forbidden, Invalid, NotFound
from authz.domain.principal import Principal
from authz.services.access import require_in_context, role_in_context
from authz.services.runtime import Runtime, Written
from authz.services.views import MemberView
from authz.store.tables import CasbinRule, FormerMember, Membership
from authz.store.unit_of_work import UnitOfWork

OWNER = "owner"
MAINTAINER = "maintainer"  # what an owner becomes by transferring the ownership


def list_members(rt: Runtime, principal: Principal, org_id: str) -> list[MemberView]:
    ids.org_id(org_id)
    with rt.database.session() as session:
        require_in_context(session, rt.policy, principal, "read", "member", org_id)
        rows = session.execute(
            select(Membership.user_id, Membership.email, Membership.joined_at, CasbinRule.v1)
            .join(
                CasbinRule,
                (CasbinRule.ptype == "g")
                & (CasbinRule.v2 == Membership.org_id)
                & (CasbinRule.v0 == literal(ids.USER_SUBJECT_PREFIX).concat(Membership.user_id)),
            )
            .where(Membership.org_id == org_id)
            .order_by(Membership.joined_at, Membership.user_id)
        ).all()
    return [MemberView(user_id, email, role, joined_at) for user_id, email, joined_at, role in rows]


def _owner_count(uow: UnitOfWork, org_id: str) -> int:
    return uow.session.scalar(
        select(func.count()).select_from(CasbinRule).where(
            CasbinRule.ptype == "g", CasbinRule.v2 == org_id, CasbinRule.v1 == OWNER
        )
    ) or 0


def valid_role(rt: Runtime, role: object, field: str = "role") -> str:
    if not isinstance(role, str) or role not in rt.policy.roles:
        raise Invalid(f"role must be one of: {', '.join(sorted(rt.policy.roles))}", field=field)
    return role


def add_member(uow: UnitOfWork, org_id: str, user: str, email: str | None, role: str) -> None:
    """The rows of a new membership (used by org creation and invitation acceptance)."""
    uow.session.add(Membership(org_id=org_id, user_id=user, email=email, joined_at=uow.now))
    uow.add_rule(("g", ids.subject_of(user), role, org_id))
    uow.session.execute(delete(FormerMember).where(FormerMember.org_id == org_id, FormerMember.user_id == user))


def _remember_former(uow: UnitOfWork, org_id: str, user: str, email: str | None, role: str, how: str) -> None:
    """What `reinstate` needs later: the role and the email of a member who is gone."""
    uow.session.execute(delete(FormerMember).where(FormerMember.org_id == org_id, FormerMember.user_id == user))
    uow.session.add(FormerMember(org_id=org_id, user_id=user, email=email, role=role, left_at=uow.now, how=how))


def change_role(rt: Runtime, principal: Principal, org_id: str, user_id: str, role: object) -> Written[MemberView]:
    ids.org_id(org_id)
    ids.user_id(user_id)
    new_role = valid_role(rt, role)
    with rt.unit_of_work(principal) as uow:
        uow.lock_org(org_id)
        require_in_context(uow.session, rt.policy, principal, "update", "member", org_id)
        current = role_in_context(uow.session, user_id, org_id)
        membership = uow.session.get(Membership, (org_id, user_id))
        if current is None or membership is None:
            raise NotFound("member not found")
        if current == new_role:
            return Written(MemberView(user_id, membership.email, current, membership.joined_at), None)
        if current == OWNER and _owner_count(uow, org_id) <= 1:
            raise Conflict("the organization must keep at least one owner; make another member owner first")
        uow.remove_rule(("g", ids.subject_of(user_id), current, org_id))
        uow.add_rule(("g", ids.subject_of(user_id), new_role, org_id))
        uow.audit("member.role_change", context=org_id, target=user_id, detail={"from": current, "to": new_role})
        revision = uow.commit()
    return Written(MemberView(user_id, membership.email, new_role, membership.joined_at), revision)


def remove_member(rt: Runtime, principal: Principal, org_id: str, user_id: str) -> Written[None]:
    """An owner removes a member, or a member leaves (user_id is the caller)."""
    ids.org_id(org_id)
    ids.user_id(user_id)
    with rt.unit_of_work(principal) as uow:
        uow.lock_org(org_id)
        leaving = principal.is_user and principal.id == user_id
        if leaving:
            require_in_context(uow.session, rt.policy, principal, "read", "organization", org_id)
        else:
            require_in_context(uow.session, rt.policy, principal, "delete", "member", org_id)
        current = role_in_context(uow.session, user_id, org_id)
        if current is None:
            raise NotFound("member not found")
        if current == OWNER and _owner_count(uow, org_id) <= 1:
            raise Conflict("the organization must keep at least one owner; make another member owner first")
        uow.remove_rule(("g", ids.subject_of(user_id), current, org_id))
        membership = uow.session.get(Membership, (org_id, user_id))
        _remember_former(uow, org_id, user_id, membership.email if membership else None, current,
                         "left" if leaving else "removed")
        uow.session.execute(delete(Membership).where(Membership.org_id == org_id, Membership.user_id == user_id))
        uow.audit("member.leave" if leaving else "member.remove", context=org_id, target=user_id, detail={"role": current})
        revision = uow.commit()
    return Written(None, revision)


def transfer_ownership(rt: Runtime, principal: Principal, org_id: str, to_user_id: object) -> Written[str]:
    """An owner hands the org to a member: the member becomes owner, the caller maintainer, in one revision.

    Under the org's lock, like every role change: the caller must still be an owner and
    the target still a member when it runs, and the org has an owner throughout.
    """
    ids.org_id(org_id)
    target = ids.user_id(to_user_id, "to_user_id")
    if MAINTAINER not in rt.policy.roles:
        raise Conflict(f"the policy has no {MAINTAINER!r} role for the previous owner")
    with rt.unit_of_work(principal) as uow:
        uow.lock_org(org_id)
        mine = require_in_context(uow.session, rt.policy, principal, "read", "organization", org_id)
        if mine != OWNER:
            raise Forbidden("only an owner can transfer the ownership")
        theirs = role_in_context(uow.session, target, org_id)
        if theirs is None:
            raise Invalid("to_user_id is not a member of this organization; invite them first", field="to_user_id")
        if theirs == OWNER:
            raise Conflict(f"{target} is already an owner of this organization")
        uow.remove_rule(("g", ids.subject_of(target), theirs, org_id))
        uow.add_rule(("g", ids.subject_of(target), OWNER, org_id))
        uow.remove_rule(("g", ids.subject_of(principal.id), OWNER, org_id))
        uow.add_rule(("g", ids.subject_of(principal.id), MAINTAINER, org_id))
        uow.audit("organization.transfer", context=org_id, target=target,
                  detail={"from": principal.id, "to": target, "their_role_before": theirs})
        revision = uow.commit()
    return Written(target, revision)
