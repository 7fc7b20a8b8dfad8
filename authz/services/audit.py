"""Reading an organization's audit log: newest first, paged by id."""

from sqlalchemy import select

from authz.domain import ids
from authz.domain.errors import Invalid
from authz.domain.limits import stored_int
from authz.domain.principal import Principal
from authz.services.access import require_in_context
from authz.services.runtime import Runtime
from authz.services.views import AuditView
from authz.store.tables import AuditEntry

MAX_PAGE = 200


def list_audit(
    rt: Runtime, principal: Principal, context: str, *, limit: int = 50, before: int | None = None
) -> list[AuditView]:
    """Entries of one context, newest first; pass the last id seen as `before` for the next page."""
    ids.context(context, "org_id")
    if not 1 <= limit <= MAX_PAGE:
        raise Invalid(f"limit must be 1-{MAX_PAGE}", field="limit")
    if before is not None:
        stored_int(before, "before", minimum=1)
    with rt.database.session() as session:
        require_in_context(session, rt.policy, principal, "read", "audit", context)
        query = select(AuditEntry).where(AuditEntry.context == context)
        if before is not None:
            query = query.where(AuditEntry.id < before)
        rows = session.scalars(query.order_by(AuditEntry.id.desc()).limit(limit))
        return [
            AuditView(r.id, r.at, r.actor, r.action, r.context, r.target, r.detail, r.request_id, r.revision)
            for r in rows
        ]
