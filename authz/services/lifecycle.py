"""After an organization's DELETE (an archive, authz.services.organizations): restore and purge.

- Restore: a user who was an owner when the org was archived (anyone else: 404), within
  `AUTHZ_ORG_RETENTION`, gets it back exactly as it was: the archived grants move back
  into casbin_rule in one revision. Invitations revoked by the archive stay revoked.
- Purge: past the retention, any replica's purger (or `authz orgs purge --now`) deletes
  the org for good in one revision per org: memberships, former members, invitations and
  their emails, resource registrations (their ids are free again) and archived roles,
  backend tokens (the ciphertext with them). Audit rows stay.

Purges are claimed like outbox rows: each replica takes one due org at a time with
`FOR UPDATE SKIP LOCKED`, so two purgers never take the same org and a restore in flight
(which holds the org's lock) is skipped; a row restored meanwhile no longer matches.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Executable, delete, func, select
from sqlalchemy.orm import Session

from authz.domain import ids
from authz.domain import invitations as inv
from authz.domain.errors import Conflict, Forbidden, Gone, NotFound, OutsiderNotFound
from authz.domain.principal import Principal
from authz.services.access import owning_role, role_in_context
from authz.services.organizations import CHUNK, org_view
from authz.services.runtime import Runtime, Written
from authz.services.views import OrganizationView
from authz.store import rules
from authz.store.tables import (
    ArchivedGrant,
    BackendToken,
    FormerMember,
    Invitation,
    Membership,
    Organization,
    OutboxMessage,
    Resource,
)
from authz.store.unit_of_work import UnitOfWork

log = logging.getLogger("authz.lifecycle")
PURGER = Principal(kind="cli", id="org-purger")  # audited as cli:org-purger


def purge_after(rt: Runtime, org: Organization) -> datetime | None:
    return org.archived_at + rt.settings.org_retention if org.archived_at is not None else None


def _was_owner(uow: UnitOfWork, org_id: str, user: str, owner: str) -> bool:
    found = uow.session.scalar(select(ArchivedGrant.id).where(
        ArchivedGrant.org_id == org_id, ArchivedGrant.domain == org_id,
        ArchivedGrant.subject == ids.subject_of(user), ArchivedGrant.role == owner,
    ).limit(1))
    return found is not None


@dataclass(frozen=True)
class Restorable:
    """An archived org the caller may restore (it was an owner at archive time), and until when."""

    id: str
    name: str
    archived_at: datetime
    restorable_until: datetime


def restorable_by(rt: Runtime, principal: Principal) -> list[Restorable]:
    """The archived orgs, within their retention, that the caller owned when they were archived."""
    if not principal.is_user:
        return []
    owner = rt.roles.context_owner
    now = rt.clock()
    with rt.database.session() as session:
        rows = session.scalars(
            select(Organization).join(ArchivedGrant, (ArchivedGrant.org_id == Organization.id)
                                      & (ArchivedGrant.domain == Organization.id))
            .where(Organization.archived_at.is_not(None), ArchivedGrant.subject == ids.subject_of(principal.id),
                   ArchivedGrant.role == owner)
            .order_by(Organization.archived_at.desc())
        ).all()
        found = []
        for org in rows:
            until = purge_after(rt, org)
            if until is not None and until > now:
                found.append(Restorable(org.id, org.name, org.archived_at, until))  # type: ignore[arg-type]
    return found


def restore_organization(rt: Runtime, principal: Principal, org_id: str) -> Written[OrganizationView]:
    """Undo an archive within the retention: every membership and resource role back, one revision."""
    ids.org_id(org_id)
    admin = principal.kind == "cli"
    if not admin and not principal.is_user:
        raise Forbidden("organizations are restored with a user token")
    owner = owning_role(rt.roles)
    with rt.unit_of_work(principal) as uow:
        try:
            org = uow.lock_context(org_id, archived=True)
        except NotFound:
            raise NotFound("organization not found") if admin else OutsiderNotFound("organization not found") from None
        assert org is not None
        if org.archived_at is None:
            if admin or role_in_context(uow.session, rt.roles, principal.id, org_id) is not None:
                raise Conflict("this organization is not archived")
            raise OutsiderNotFound("organization not found")
        if not admin and not _was_owner(uow, org_id, principal.id, owner):
            raise OutsiderNotFound("organization not found")  # nobody else learns that it exists
        deadline = purge_after(rt, org)
        assert deadline is not None
        if uow.now >= deadline:
            raise Gone(f"the retention of this archived organization ended at {deadline.isoformat()}; "
                       "it is being purged and cannot be restored")
        scopes = {ids.resource_scope(t, r) for t, r in uow.lock_resources_in(org_id)}
        grants = list(uow.session.scalars(
            select(ArchivedGrant).where(ArchivedGrant.org_id == org_id).order_by(ArchivedGrant.id)
        ))
        restored = 0
        for grant in grants:
            if grant.domain == org_id or grant.domain in scopes:
                rule = ("g", grant.subject, grant.role, grant.domain)
                uow.add_rule((*rule, grant.expires) if grant.expires else rule)  # an end it had, it keeps
                restored += 1
        uow.session.execute(delete(ArchivedGrant).where(ArchivedGrant.org_id == org_id))
        archived_at, archived_by = org.archived_at, org.archived_by
        org.archived_at, org.archived_by = None, None
        uow.record({"op": "restore_org", "id": org_id})
        uow.audit("organization.restore", context=org_id, target=org_id, detail={
            "archived_at": archived_at.isoformat(), "archived_by": archived_by, "grants": restored,
        })
        revision = uow.commit()
    return Written(org_view(org, None if admin else owner, True), revision)


def _purge(uow: UnitOfWork, org: Organization) -> dict[str, int]:
    """Delete a locked, archived org for good (audit rows stay); what was deleted, counted."""
    org_id = org.id
    resources = uow.delete_resources_in(org_id)  # their ids are free again
    domains = [org_id, *(ids.resource_scope(t, r) for t, r in resources)]
    leftover = 0
    for start in range(0, len(domains), CHUNK):  # none after an archive; a purge leaves none whatever happened
        leftover += len(uow.remove_grants_in(domains[start:start + CHUNK]))
    counts = {
        "resources": len(resources),
        "grants": _delete(uow, ArchivedGrant, ArchivedGrant.org_id == org_id) + leftover,
        "members": _delete(uow, Membership, Membership.org_id == org_id),
        "former_members": _delete(uow, FormerMember, FormerMember.org_id == org_id),
    }
    invitations = select(Invitation.id).where(Invitation.org_id == org_id).scalar_subquery()
    uow.session.execute(delete(OutboxMessage).where(OutboxMessage.invitation_id.in_(invitations)))
    counts["invitations"] = _delete(uow, Invitation, Invitation.org_id == org_id)
    counts["backend_tokens"] = _delete(uow, BackendToken, BackendToken.context == org_id)
    uow.session.delete(org)
    uow.record({"op": "purge_org", "id": org_id})
    uow.audit("organization.purge", context=org_id, target=org_id,
              detail={"name": org.name, "archived_at": org.archived_at.isoformat() if org.archived_at else None,
                      **counts})
    return counts


def _delete(uow: UnitOfWork, table: type, condition: object) -> int:
    result = uow.session.execute(delete(table).where(condition))  # type: ignore[arg-type]
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def purge_organization(rt: Runtime, principal: Principal, org_id: str, *, now: bool = False) -> Written[dict[str, int]]:
    """The operator's purge (`authz orgs purge`): an archived org, past its retention unless `now`."""
    ids.org_id(org_id)
    with rt.unit_of_work(principal) as uow:
        org = uow.lock_context(org_id, archived=True)
        assert org is not None
        if org.archived_at is None:
            raise Conflict("this organization is not archived; archive it first (authz orgs archive)")
        deadline = purge_after(rt, org)
        if not now and deadline is not None and uow.now < deadline:
            raise Conflict(f"its retention ends at {deadline.isoformat()}; purge it before with --now")
        counts = _purge(uow, org)
        revision = uow.commit()
    return Written(counts, revision)


def purge_due(rt: Runtime, principal: Principal = PURGER, limit: int = 100) -> list[str]:
    """Purge the archived orgs past their retention, one transaction (and revision) each; their ids."""
    purged: list[str] = []
    while len(purged) < limit:
        with rt.unit_of_work(principal) as uow:
            cutoff = uow.now - rt.settings.org_retention
            org = uow.session.scalar(
                select(Organization)
                .where(Organization.archived_at.is_not(None), Organization.archived_at <= cutoff)
                .order_by(Organization.archived_at, Organization.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            if org is None:
                return purged
            uow.lock_context(org.id, archived=True)  # already held: registers it with the unit of work
            _purge(uow, org)
            uow.commit()
        purged.append(org.id)
        log.info("purged archived organization", extra={"org_id": org.id})
    return purged


def purge_job(rt: Runtime) -> None:
    """The purger thread's job: its errors are logged, never raised (the thread goes on)."""
    try:
        purge_due(rt)
    except Exception:  # the next run tries again
        log.warning("purging archived organizations failed; retrying at the next run", exc_info=True)


# ---- the operator's view (authz orgs list|show) --------------------------------------------

@dataclass(frozen=True)
class OrganizationSummary:
    id: str
    name: str
    state: str  # active, archived
    created_at: datetime
    archived_at: datetime | None
    archived_by: str | None
    purge_after: datetime | None
    members: int
    owners: list[str]
    resources: int
    pending_invitations: int
    backend_tokens: int

    def to_json(self) -> dict[str, object]:
        data = dict(self.__dict__)
        for key in ("created_at", "archived_at", "purge_after"):
            value = data[key]
            data[key] = value.isoformat() if value is not None else None
        return data


def _summary(rt: Runtime, session: Session, org: Organization) -> OrganizationSummary:
    grants: Sequence[tuple[str, str]]
    if org.archived_at is None:
        grants = [(subject, role) for subject, role, _, _ in rules.grants_in(session, [org.id])]
    else:
        grants = session.execute(select(ArchivedGrant.subject, ArchivedGrant.role).where(
            ArchivedGrant.org_id == org.id, ArchivedGrant.domain == org.id)).all()

    def count(query: Executable) -> int:
        return int(session.scalar(query) or 0)

    return OrganizationSummary(
        id=org.id, name=org.name, state="archived" if org.archived_at is not None else "active",
        created_at=org.created_at, archived_at=org.archived_at, archived_by=org.archived_by,
        purge_after=purge_after(rt, org), members=len(grants),
        owners=sorted(ids.user_of(subject) for subject, role in grants if role == rt.roles.context_owner),
        resources=count(select(func.count()).select_from(Resource).where(Resource.context == org.id)),
        pending_invitations=count(select(func.count()).select_from(Invitation).where(
            Invitation.org_id == org.id, Invitation.status == inv.PENDING)),
        backend_tokens=count(select(func.count()).select_from(BackendToken).where(BackendToken.context == org.id)),
    )


def list_all(rt: Runtime, *, archived_only: bool = False) -> list[OrganizationSummary]:
    with rt.database.session() as session:
        query = select(Organization).order_by(Organization.created_at, Organization.id)
        if archived_only:
            query = query.where(Organization.archived_at.is_not(None))
        return [_summary(rt, session, org) for org in session.scalars(query)]


def show(rt: Runtime, org_id: str) -> OrganizationSummary:
    ids.org_id(org_id)
    with rt.database.session() as session:
        org = session.get(Organization, org_id)
        if org is None:
            raise NotFound("organization not found")
        return _summary(rt, session, org)
