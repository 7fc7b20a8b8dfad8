"""Decision queries for sidecars and services: answered from memory, at this replica's revision."""

from typing import Annotated

import orjson
from fastapi import APIRouter, Header, Query, Request, Response

from api.deps import PrincipalDep, RuntimeDep, problems
from api.metrics import Metrics
from api.schemas import (
    BatchBody,
    BatchOut,
    CheckBody,
    CheckOut,
    ListResourcesBody,
    ListResourcesOut,
    ListSubjectsBody,
    ListSubjectsOut,
)
from api.serving import ServerShutdown
from api.staleness import require_fresh
from authz.domain import ids
from authz.domain.errors import Unavailable
from authz.domain.principal import Principal
from authz.engine.replica import Snapshot
from authz.services import decisions
from authz.services.runtime import Runtime

# Decision queries are answered to bearer credentials, never to a browser's cookie, so FastAPI's
# strict Content-Type (a CSRF defence for cookie sessions) guards nothing here; a body sent
# without a Content-Type is read as JSON, as /v1/check always has.
router = APIRouter(prefix="/v1", tags=["decisions"], strict_content_type=False)
CONTEXT_HEADER_MAX = 2000
ContextHeader = Annotated[
    str | None, Header(max_length=CONTEXT_HEADER_MAX, description="personal (default) or an org id"),
]
ExplainQuery = Annotated[bool, Query(description="add the role and rule behind the decision")]


def _default_context(principal: Principal, header: str | None) -> str | None:
    """A user's X-Account-Context is the default context of its type-level questions."""
    if principal.is_user:
        return header or ids.PERSONAL
    return header


async def ready_snapshot(request: Request, runtime: Runtime, min_revision: int | None) -> Snapshot:
    """The snapshot to answer from: fail closed when stale; with `min_revision`, wait (bounded) for it.

    The wait parks a future on the event loop (`Replica.reached`): it holds no thread. It
    ends with a 503 when the server begins to stop (api.serving), so the caller retries on
    a replica that is running instead of being cut off.
    """
    require_fresh(runtime)
    snapshot = runtime.replica.snapshot
    if min_revision is None or snapshot.revision >= min_revision:
        return snapshot
    follower = getattr(request.app.state, "follower", None)
    if follower is not None:
        follower.wake()  # read the changelog now rather than at the next poll
    shutdown: ServerShutdown = request.app.state.shutdown
    reached = await shutdown.unless_begun(runtime.replica.reached(min_revision, runtime.settings.min_revision_wait))
    if reached is None and shutdown.begun:
        raise Unavailable("this replica is shutting down; retry on another")
    if reached is None:
        raise Unavailable(
            f"this replica is at revision {runtime.replica.revision}, behind the requested {min_revision}; "
            "retry shortly"
        )
    return reached


def _runtime(request: Request) -> Runtime:
    """The runtime without a dependency: a sync dependency would cost a thread-pool hop per check."""
    runtime: Runtime = request.app.state.runtime
    return runtime


def _json(payload: bytes) -> Response:
    """A pre-serialized body: FastAPI passes a Response through without re-validating it."""
    return Response(payload, media_type="application/json")


def answer_check(runtime: Runtime, metrics: Metrics, snapshot: Snapshot, principal: Principal, body: CheckBody,
                 account_context: str | None, *, explain: bool) -> bytes:
    """The JSON answer of /v1/check to a parsed body (shared by the route and `api.fast_path`)."""
    question = decisions.check_request(
        principal, subject=body.subject, action=body.action, resource_type=body.resource.type,
        resource_id=body.resource.id, context=body.context,
        default_context=_default_context(principal, account_context),
    )
    if explain:
        result = decisions.explain(runtime, snapshot, question)
        metrics.count_decisions(allowed=int(result["allowed"]), denied=int(not result["allowed"]))
        return orjson.dumps({"allowed": result["allowed"], "revision": snapshot.revision,
                             "explanation": result["explanation"]})
    allowed = decisions.check(snapshot, question)
    metrics.count_decisions(allowed=int(allowed), denied=int(not allowed))
    return orjson.dumps({"allowed": allowed, "revision": snapshot.revision})


def answer_batch(metrics: Metrics, snapshot: Snapshot, principal: Principal, body: BatchBody,
                 account_context: str | None) -> bytes:
    """The JSON answer of /v1/check/batch to a parsed body (shared by the route and `api.fast_path`)."""
    questions = decisions.check_requests(
        principal,
        ((item.subject, item.action, item.resource.type, item.resource.id, item.context) for item in body.checks),
        _default_context(principal, account_context),
    )
    results = decisions.check_batch(snapshot, questions)
    allowed = sum(results)
    metrics.count_decisions(allowed=allowed, denied=len(results) - allowed)
    return orjson.dumps({"results": [_ALLOWED if a else _DENIED for a in results], "revision": snapshot.revision})


@router.post("/check", response_model=CheckOut, response_model_exclude_none=True,
             responses=problems(400, 401, 403, 413, 422, 503))
async def check(body: CheckBody, request: Request, principal: PrincipalDep,
                x_account_context: ContextHeader = None, explain: ExplainQuery = False) -> Response:
    """May the subject do the action on the resource? `{allowed, revision}`.

    The plain, valid request is usually answered by `api.fast_path` before it gets here;
    this route answers the rest (explain, min_revision waits, and every error).
    """
    runtime = _runtime(request)
    snapshot = await ready_snapshot(request, runtime, body.min_revision)
    return _json(answer_check(runtime, request.app.state.metrics, snapshot, principal, body, x_account_context,
                              explain=explain))


@router.post("/check/batch", response_model=BatchOut, responses=problems(400, 401, 403, 413, 422, 503))
async def check_batch(body: BatchBody, request: Request, principal: PrincipalDep,
                      x_account_context: ContextHeader = None) -> Response:
    """Up to 1000 checks in one request: `{results: [{allowed}], revision}`, in order."""
    snapshot = await ready_snapshot(request, _runtime(request), body.min_revision)
    return _json(answer_batch(request.app.state.metrics, snapshot, principal, body, x_account_context))


_ALLOWED = {"allowed": True}
_DENIED = {"allowed": False}


@router.post("/list-resources", response_model=ListResourcesOut, responses=problems(400, 401, 403, 413, 422, 503))
async def list_resources(
    body: ListResourcesBody, request: Request, runtime: RuntimeDep, principal: PrincipalDep,
    x_account_context: ContextHeader = None,
) -> ListResourcesOut:
    snapshot = await ready_snapshot(request, runtime, body.min_revision)
    page = decisions.list_resources(
        snapshot, principal, cursors=runtime.cursors, subject=body.subject, action=body.action,
        resource_type=body.type,
        context=body.context, default_context=x_account_context if principal.is_user else None,
        limit=body.limit, cursor=body.cursor,
    )
    return ListResourcesOut(resources=page.items, revision=page.revision, next_cursor=page.next_cursor)


@router.post("/list-subjects", response_model=ListSubjectsOut, responses=problems(400, 401, 403, 413, 422, 503))
async def list_subjects(
    body: ListSubjectsBody, request: Request, runtime: RuntimeDep, principal: PrincipalDep,
) -> ListSubjectsOut:
    snapshot = await ready_snapshot(request, runtime, body.min_revision)
    page = decisions.list_subjects(
        snapshot, principal, cursors=runtime.cursors, action=body.action, resource_type=body.resource.type,
        resource_id=body.resource.id, limit=body.limit, cursor=body.cursor,
    )
    return ListSubjectsOut(subjects=page.items, revision=page.revision, next_cursor=page.next_cursor)
