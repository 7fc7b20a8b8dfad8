"""Dependencies shared by the routers: the runtime, the caller, its account context."""

from typing import Annotated

from fastapi import Depends, Header, Query, Request, Response

from api.auth import authenticate
from api.schemas import Problem
from authz.domain import ids
from authz.domain.errors import Forbidden, Invalid, OutsiderNotFound
from authz.domain.principal import Principal
from authz.services.runtime import Runtime

REVISION_HEADER = "X-Authz-Revision"


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
PrincipalDep = Annotated[Principal, Depends(authenticate)]


def user_principal(principal: PrincipalDep) -> Principal:
    if not principal.is_user:
        raise Forbidden("this endpoint needs a user token, not a service key")
    return principal


UserDep = Annotated[Principal, Depends(user_principal)]


def account_context(
    runtime: RuntimeDep,
    principal: UserDep,
    x_account_context: Annotated[
        str | None, Header(max_length=2000, description="personal (default) or an org id")
    ] = None,
) -> str:
    """The context of this request: the caller's personal account or an org it is a member of."""
    value = x_account_context or ids.PERSONAL
    if value == ids.PERSONAL:
        return ids.personal_context(principal.id)
    try:
        context = ids.org_id(value, "X-Account-Context")
    except Invalid:
        raise Invalid("X-Account-Context must be `personal` or an organization id", field="X-Account-Context") from None
    snapshot = runtime.replica.snapshot
    if snapshot.index.role_in(principal.id, context, snapshot.clock) is None:
        raise OutsiderNotFound("organization not found")
    return context


ContextDep = Annotated[str, Depends(account_context)]


def set_revision(response: Response, runtime: Runtime, revision: int | None) -> None:
    """Writes report the revision they committed (or the current one when nothing changed)."""
    response.headers[REVISION_HEADER] = str(revision if revision is not None else runtime.replica.revision)


def problems(*statuses: int) -> dict[int | str, dict[str, object]]:
    """OpenAPI descriptions of the problem responses a route can give."""
    return {
        status: {"model": Problem, "content": {"application/problem+json": {}}, "description": _DESCRIPTIONS[status]}
        for status in statuses
    }


_DESCRIPTIONS = {
    400: "Malformed request",
    401: "No or bad credential",
    403: "Not allowed",
    404: "Not found or not visible to the caller",
    409: "Conflicts with the current state",
    410: "Gone",
    413: "Body too large",
    422: "Invalid field",
    429: "Rate limit reached (see Retry-After)",
    503: "Not ready, or the database is unavailable",
}


# ---- paged listings (members, invitations) -------------------------------------------------

PageLimit = Annotated[int, Query(ge=1, le=1000, description="items per page (at most 1000)")]
PageCursor = Annotated[str | None, Query(max_length=1000, description="from the previous page's Link rel=next")]


def link_next(request: Request, response: Response, next_cursor: str | None, limit: int) -> None:
    """GitHub's way for a listing that stays a JSON array: `Link: <...>; rel="next"` while more follow."""
    if next_cursor is not None:
        url = request.url.include_query_params(cursor=next_cursor, limit=limit)
        response.headers["Link"] = f'<{url}>; rel="next"'
