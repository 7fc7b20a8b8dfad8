"""Reading an organization's audit log: newest first, paged by id."""

from sqlalchemy import select

from authz.domain import ids
from authz.domain.cursors import Page
from authz.domain.errors import Invalid
from authz.domain.limits import stored_int
from authz.domain.principal import Principal
from authz.services import paging
from authz.services.access import require_in_context
from authz.services.runtime import Runtime
from authz.services.views import AuditView
from authz.store.tables import AuditEntry

MAX_PAGE = 200


def audit_page(
    rt: Runtime, principal: Principal, context: str, *, limit: int = 50, cursor: str | None = None,
    before: int | None = None,
) -> Page[AuditView]:
    """One page, newest first; `next_cursor` continues with older entries (`before` is the older way)."""
    size = paging.check_limit(limit, MAX_PAGE)
    query = ("audit", context)
    after = paging.position(rt.cursors, query, cursor, int)
    if after is not None:
        before = after if before is None else min(before, after)
    rows = list_audit(rt, principal, context, limit=size + 1, before=before, max_limit=MAX_PAGE + 1)
    return paging.page(rt.cursors, query, rows, size, lambda entry: entry.id)


def list_audit(
    rt: Runtime, principal: Principal, context: str, *, limit: int = 50, before: int | None = None,
    max_limit: int = MAX_PAGE,
) -> list[AuditView]:
    """Entries of one context, newest first; pass the last id seen as `before` for the next page."""
    ids.context(context, "org_id")
    if not 1 <= limit <= max_limit:
        raise Invalid(f"limit must be 1-{MAX_PAGE}", field="limit")
    if before is not None:
        stored_int(before, "before", minimum=1)
    with rt.database.session() as session:
        require_in_context(session, rt.roles, principal, "read", "audit", context)
        query = select(AuditEntry).where(AuditEntry.context == context)
        if before is not None:
            query = query.where(AuditEntry.id < before)
        rows = session.scalars(query.order_by(AuditEntry.id.desc()).limit(limit))
        return [
            AuditView(r.id, r.at, r.actor, r.action, r.context, r.target, r.detail, r.request_id, r.revision)
            for r in rows
        ]
