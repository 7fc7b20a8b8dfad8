"""Creating, reading, updating and archiving (DELETE) organizations; restore and purge: authz.services.lifecycle."""

from typing import Any

from sqlalchemy import insert, select

from authz.domain import ids
from authz.domain import invitations as inv
from authz.domain.errors import Forbidden, NotFound, OutsiderNotFound
from authz.domain.organizations import BillingAddress, billing_address, org_name
from authz.domain.principal import Principal
from authz.mail import outbox
from authz.services.access import owning_role, require_in_context
from authz.services.members import add_member
from authz.services.runtime import Runtime, Written
from authz.services.views import OrganizationView
from authz.store.tables import ArchivedGrant, Invitation, Organization
from authz.store.unit_of_work import UnitOfWork

CHUNK = 500  # values per IN (...) list


def _address(org: Organization) -> BillingAddress:
    return BillingAddress(
        line1=org.billing_line1,
        line2=org.billing_line2,
        postal_code=org.billing_postal_code,
        city=org.billing_city,
        country=org.billing_country,
    )


def _set_address(org: Organization, address: BillingAddress) -> None:
    org.billing_line1 = address.line1
    org.billing_line2 = address.line2
    org.billing_postal_code = address.postal_code
    org.billing_city = address.city
    org.billing_country = address.country


def org_view(org: Organization, role: str | None, show_billing: bool) -> OrganizationView:
    return OrganizationView(org.id, org.name, _address(org) if show_billing else None, org.created_at, role)


def _require_user(principal: Principal) -> str:
    if not principal.is_user:
        raise Forbidden("organizations are managed with a user token")
    return principal.id


def create_organization(rt: Runtime, principal: Principal, name: object, address: object) -> Written[OrganizationView]:
    """A new org with the caller as its first owner (the policy's context_owner role)."""
    user = _require_user(principal)
    clean_name = org_name(name)
    clean_address = billing_address(address)
    owner = owning_role(rt.roles)
    with rt.unit_of_work(principal) as uow:
        org = Organization(id=ids.new_org_id(), name=clean_name, created_by=user, created_at=uow.now,
                           updated_at=uow.now)
        _set_address(org, clean_address)
        uow.session.add(org)
        uow.created(org.id)
        uow.session.flush()
        add_member(uow, org.id, user, principal.email, owner)
        uow.audit("organization.create", context=org.id, target=org.id, detail={"name": clean_name})
        revision = uow.commit()
    return Written(org_view(org, owner, True), revision)


def list_organizations(rt: Runtime, principal: Principal) -> list[OrganizationView]:
    """The orgs the caller is an accepted member of, with its role (from this replica)."""
    user = _require_user(principal)
    snapshot = rt.replica.snapshot
    index = snapshot.index
    roles = index.contexts_of(user, snapshot.clock)
    if not roles:
        return []
    with rt.database.session() as session:
        orgs = session.scalars(
            select(Organization).where(Organization.id.in_(roles), Organization.archived_at.is_(None))
            .order_by(Organization.created_at)
        )
        return [
            org_view(org, roles[org.id], index.role_allows(roles[org.id], "billing", "read"))
            for org in orgs
        ]


def get_organization(rt: Runtime, principal: Principal, org_id: str) -> OrganizationView:
    user = _require_user(principal)
    ids.org_id(org_id)
    snapshot = rt.replica.snapshot
    index = snapshot.index
    role = index.role_in(user, org_id, snapshot.clock)
    if role is None:
        raise OutsiderNotFound("organization not found")
    if not index.role_allows(role, "organization", "read"):
        raise NotFound("organization not found")
    with rt.database.session() as session:
        org = session.get(Organization, org_id)
        if org is None or org.archived_at is not None:
            raise NotFound("organization not found")
        return org_view(org, role, index.role_allows(role, "billing", "read"))


def update_organization(
    rt: Runtime, principal: Principal, org_id: str, *, name: object | None = None, address: object | None = None
) -> Written[OrganizationView]:
    """Change the name (needs organization:update) and/or billing address (needs billing:update)."""
    ids.org_id(org_id)
    clean_name = org_name(name) if name is not None else None
    clean_address = billing_address(address) if address is not None else None
    with rt.unit_of_work(principal) as uow:
        org = uow.lock_org(org_id)
        role = require_in_context(uow.session, rt.roles, principal, "read", "organization", org_id)
        changed: dict[str, Any] = {}
        if clean_name is not None:
            require_in_context(uow.session, rt.roles, principal, "update", "organization", org_id)
            org.name = clean_name
            changed["name"] = clean_name
        if clean_address is not None:
            require_in_context(uow.session, rt.roles, principal, "update", "billing", org_id)
            _set_address(org, clean_address)
            changed["billing_address"] = "updated"
        if changed:
            org.updated_at = uow.now
            uow.audit("organization.update", context=org_id, target=org_id, detail=changed)
        uow.commit()
        show_billing = rt.replica.snapshot.index.role_allows(role, "billing", "read")
        view = org_view(org, role, show_billing)
    return Written(view, None)


def delete_organization(rt: Runtime, principal: Principal, org_id: str) -> Written[None]:
    """DELETE archives the org (API.md "Organization lifecycle"); nothing is destroyed.

    In one revision: every `g` rule of the org (its memberships) and of its resources
    (their own roles) moves from casbin_rule to archived_grants, so every decision in it
    is deny on every replica by Casbin's own meaning, and the org leaves every member's
    contexts; pending invitations are revoked (and stay so after a restore); its backend
    tokens stay encrypted but cannot be resolved (the archived org cannot be locked as a
    context); its resource rows stay, so their ids stay taken. `authz.services.lifecycle`
    restores or purges it.
    """
    ids.org_id(org_id)
    with rt.unit_of_work(principal) as uow:
        org = uow.lock_org(org_id)
        if principal.kind != "cli":  # the operator (`authz orgs archive`) needs no role in it
            require_in_context(uow.session, rt.roles, principal, "delete", "organization", org_id)
        # Resource rows first: their locks wait for a role change in flight, whose rule
        # rows the next statements then see and move (no role survives the archive).
        resources = uow.lock_resources_in(org_id)
        members = archive_grants(uow, org_id, [org_id])
        shared = archive_grants(uow, org_id, [ids.resource_scope(t, r) for t, r in resources])
        revoked = revoke_pending_invitations(uow, org_id, principal.id)
        org.archived_at, org.archived_by = uow.now, principal.audit_name
        uow.record({"op": "archive_org", "id": org_id})
        uow.audit("organization.archive", context=org_id, target=org_id, detail={
            "name": org.name, "members": members, "resources": len(resources), "resource_roles": shared,
            "revoked_invitations": revoked,
        })
        revision = uow.commit()
    return Written(None, revision)


def archive_grants(uow: UnitOfWork, org_id: str, domains: list[str]) -> int:
    """Move the `g` rules of `domains` (locked) from casbin_rule to archived_grants; how many."""
    moved = 0
    for start in range(0, len(domains), CHUNK):
        rules = uow.remove_grants_in(domains[start:start + CHUNK])
        if rules:
            uow.session.execute(insert(ArchivedGrant), [
                {"org_id": org_id, "subject": rule[1], "role": rule[2], "domain": rule[3],
                 "expires": rule[4] if len(rule) > 4 and rule[4] else None}
                for rule in rules
            ])
        moved += len(rules)
    return moved


def revoke_pending_invitations(uow: UnitOfWork, org_id: str, by: str) -> int:
    """Revoke every pending invitation of the org (expired ones too) and stop their unsent emails."""
    pending = list(uow.session.scalars(
        select(Invitation).where(Invitation.org_id == org_id, Invitation.status == inv.PENDING).with_for_update()
    ))
    for row in pending:
        row.status, row.decided_at, row.decided_by = inv.REVOKED, uow.now, by
        outbox.retire_pending(uow.session, row.id, "not sent: the organization was archived")
    return len(pending)
