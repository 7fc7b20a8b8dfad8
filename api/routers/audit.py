"""An organization's audit log, newest first."""

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import RuntimeDep, UserDep, problems
from api.schemas import AuditOut, AuditPage
from authz.domain.limits import MAX_STORED_INT
from authz.services import audit

router = APIRouter(prefix="/v1/organizations", tags=["audit"])


@router.get("/{org_id}/audit", response_model=AuditPage, responses=problems(400, 401, 403, 404, 422))
def list_audit(
    org_id: str,
    runtime: RuntimeDep,
    principal: UserDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=1000, description="`next_cursor` of the previous page")] = None,
    before: Annotated[int | None, Query(ge=1, le=MAX_STORED_INT, description="entries older than this id")] = None,
) -> AuditPage:
    page = audit.audit_page(runtime, principal, org_id, limit=limit, cursor=cursor, before=before)
    next_before = page.items[-1].id if page.next_cursor is not None else None
    return AuditPage(entries=[AuditOut.model_validate(asdict(e)) for e in page.items], next_before=next_before,
                     next_cursor=page.next_cursor)
