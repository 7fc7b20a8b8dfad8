"""Members of an organization: listing, changing roles, removing and leaving.

An org never loses its last owner: every change locks the org row first and re-counts
owners inside the transaction (DESIGN.md invariant 5).
"""

from sqlalchemy import delete, func, literal, select

from authz.domain import ids
from authz.domain.errors import Conflict, Invalid, NotFound
from authz.domain.invitations import canonical_email
from authz.domain.principal import Principal
from authz.services.access import require_in_context, role_in_context
from authz.services.runtime import Runtime, Written
from authz.services.views import MemberView
from authz.store.tables import CasbinRule, Membership
from authz.store.unit_of_work import UnitOfWork

OWNER = "owner"


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
    stored = canonical_email(email) if email is not None else None  # compared exactly (invitations)
    uow.session.add(Membership(org_id=org_id, user_id=user, email=stored, joined_at=uow.now))
    uow.add_rule(("g", ids.subject_of(user), role, org_id))


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
        uow.session.execute(delete(Membership).where(Membership.org_id == org_id, Membership.user_id == user_id))
        uow.audit("member.leave" if leaving else "member.remove", context=org_id, target=user_id, detail={"role": current})
        revision = uow.commit()
    return Written(None, revision)
