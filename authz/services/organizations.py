"""Creating, reading, updating and deleting organizations."""

from typing import Any

from sqlalchemy import delete, select

from authz.domain import ids
from authz.domain.errors import Forbidden, NotFound, OutsiderNotFound
from authz.domain.organizations import BillingAddress, billing_address, org_name
from authz.domain.principal import Principal
from authz.services.members import OWNER, add_member
from authz.services.access import require_in_context
from authz.services.runtime import Runtime, Written
from authz.services.views import OrganizationView
from authz.store.tables import BackendToken, Membership, Organization, Resource


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


def _view(org: Organization, role: str | None, show_billing: bool) -> OrganizationView:
    return OrganizationView(org.id, org.name, _address(org) if show_billing else None, org.created_at, role)


def _require_user(principal: Principal) -> str:
    if not principal.is_user:
        raise Forbidden("organizations are managed with a user token")
    return principal.id


def create_organization(rt: Runtime, principal: Principal, name: object, address: object) -> Written[OrganizationView]:
    """A new org with the caller as its first owner."""
    user = _require_user(principal)
    clean_name = org_name(name)
    clean_address = billing_address(address)
    with rt.unit_of_work(principal) as uow:
        org = Organization(id=ids.new_org_id(), name=clean_name, created_by=user, created_at=uow.now, updated_at=uow.now)
        _set_address(org, clean_address)
        uow.session.add(org)
        uow.created(org.id)
        uow.session.flush()
        add_member(uow, org.id, user, principal.email, OWNER)
        uow.audit("organization.create", context=org.id, target=org.id, detail={"name": clean_name})
        revision = uow.commit()
    return Written(_view(org, OWNER, True), revision)


def list_organizations(rt: Runtime, principal: Principal) -> list[OrganizationView]:
    """The orgs the caller is an accepted member of, with its role (from this replica)."""
    user = _require_user(principal)
    snapshot = rt.replica.snapshot
    index = snapshot.index
    roles = index.contexts_of(user, snapshot.clock)
    if not roles:
        return []
    with rt.database.session() as session:
        orgs = session.scalars(select(Organization).where(Organization.id.in_(roles)).order_by(Organization.created_at))
        return [
            _view(org, roles[org.id], index.role_allows(roles[org.id], "billing", "read"))
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
        if org is None:
            raise NotFound("organization not found")
        return _view(org, role, index.role_allows(role, "billing", "read"))


def update_organization(
    rt: Runtime, principal: Principal, org_id: str, *, name: object | None = None, address: object | None = None
) -> Written[OrganizationView]:
    """Change the name (needs organization:update) and/or billing address (needs billing:update)."""
    ids.org_id(org_id)
    clean_name = org_name(name) if name is not None else None
    clean_address = billing_address(address) if address is not None else None
    with rt.unit_of_work(principal) as uow:
        org = uow.lock_org(org_id)
        role = require_in_context(uow.session, rt.policy, principal, "read", "organization", org_id)
        changed: dict[str, Any] = {}
        if clean_name is not None:
            require_in_context(uow.session, rt.policy, principal, "update", "organization", org_id)
            org.name = clean_name
            changed["name"] = clean_name
        if clean_address is not None:
            require_in_context(uow.session, rt.policy, principal, "update", "billing", org_id)
            _set_address(org, clean_address)
            changed["billing_address"] = "updated"
        if changed:
            org.updated_at = uow.now
            uow.audit("organization.update", context=org_id, target=org_id, detail=changed)
        uow.commit()
        show_billing = rt.replica.snapshot.index.role_allows(role, "billing", "read")
        view = _view(org, role, show_billing)
    return Written(view, None)


def delete_organization(rt: Runtime, principal: Principal, org_id: str) -> Written[None]:
    """Delete the org with its memberships, invitations, tokens, resources and their roles."""
    ids.org_id(org_id)
    with rt.unit_of_work(principal) as uow:
        org = uow.lock_org(org_id)
        require_in_context(uow.session, rt.policy, principal, "delete", "organization", org_id)
        for rule in uow.rules_where("g", v2=org_id):
            uow.remove_rule(rule)
        # Resources first: their row locks wait for a role change in flight, whose rule
        # rows the next statements then see and remove (no role outlives its resource).
        resources = uow.delete_resources_in(org_id)
        for resource_type, resource_id in resources:
            for rule in uow.rules_where("g", v2=ids.resource_scope(resource_type, resource_id)):
                uow.remove_rule(rule)
        uow.session.execute(delete(BackendToken).where(BackendToken.context == org_id))
        uow.session.execute(delete(Membership).where(Membership.org_id == org_id))
        uow.session.delete(org)
        uow.audit("organization.delete", context=org_id, target=org_id, detail={"name": org.name, "resources": len(resources)})
        revision = uow.commit()
    return Written(None, revision)
