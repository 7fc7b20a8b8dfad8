"""Decision queries for sidecars and services: answered from memory, at this replica's revision."""

from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Header, Query, Request

from api.deps import PrincipalDep, RuntimeDep, problems
from api.schemas import (
    BatchBody,
    BatchOut,
    BatchResult,
    CheckBody,
    CheckOut,
    ListResourcesBody,
    ListResourcesOut,
    ListSubjectsBody,
    ListSubjectsOut,
)
from api.staleness import require_fresh
from authz.domain import ids
from authz.domain.errors import Forbidden, Invalid
from authz.domain.principal import Principal
from authz.services import decisions
from authz.services.runtime import Runtime

router = APIRouter(prefix="/v1", tags=["decisions"])
ContextHeader = Annotated[str | None, Header(max_length=2000, description="personal (default) or an org id")]


def _default_context(principal: Principal, header: str | None) -> str | None:
    """A user's X-Account-Context is the default context of its type-level questions."""
    if principal.is_user:
        return header or ids.PERSONAL
    return header


async def _ready(runtime: Runtime, min_revision: int | None) -> None:
    require_fresh(runtime)
    if min_revision is not None and runtime.replica.revision < min_revision:
        await anyio.to_thread.run_sync(decisions.require_revision, runtime, min_revision)


@router.post("/check", response_model=CheckOut, response_model_exclude_none=True,
             responses=problems(400, 401, 403, 413, 422, 503))
async def check(
    body: CheckBody,
    request: Request,
    runtime: RuntimeDep,
    principal: PrincipalDep,
    x_account_context: ContextHeader = None,
    explain: Annotated[bool, Query(description="add the role and rule behind the decision")] = False,
) -> CheckOut:
    await _ready(runtime, body.min_revision)
    question = decisions.check_request(
        principal, subject=body.subject, action=body.action, resource_type=body.resource.type,
        resource_id=body.resource.id, context=body.context,
        default_context=_default_context(principal, x_account_context),
    )
    metrics = request.app.state.metrics
    if explain:
        result = decisions.explain(runtime, question)
        metrics.decisions.labels("allowed" if result["allowed"] else "denied").inc()
        return CheckOut(allowed=result["allowed"], revision=runtime.replica.revision, explanation=result["explanation"])
    allowed = decisions.check(runtime, question)
    metrics.decisions.labels("allowed" if allowed else "denied").inc()
    return CheckOut(allowed=allowed, revision=runtime.replica.revision)


@router.post("/check/batch", response_model=BatchOut, responses=problems(400, 401, 403, 413, 422, 503))
async def check_batch(
    body: BatchBody, request: Request, runtime: RuntimeDep, principal: PrincipalDep,
    x_account_context: ContextHeader = None,
) -> BatchOut:
    await _ready(runtime, body.min_revision)
    default = _default_context(principal, x_account_context)
    questions = [
        decisions.check_request(
            principal, subject=item.subject, action=item.action, resource_type=item.resource.type,
            resource_id=item.resource.id, context=item.context, default_context=default,
            field_prefix=f"checks.{n}.",
        )
        for n, item in enumerate(body.checks)
    ]
    results = decisions.check_batch(runtime, questions)
    allowed = sum(results)
    metrics = request.app.state.metrics
    metrics.decisions.labels("allowed").inc(allowed)
    metrics.decisions.labels("denied").inc(len(results) - allowed)
    return BatchOut(results=[BatchResult(allowed=a) for a in results], revision=runtime.replica.revision)


@router.post("/list-resources", response_model=ListResourcesOut, responses=problems(400, 401, 403, 413, 422, 503))
async def list_resources(
    body: ListResourcesBody, runtime: RuntimeDep, principal: PrincipalDep, x_account_context: ContextHeader = None,
) -> ListResourcesOut:
    await _ready(runtime, body.min_revision)
    user = decisions.subject_for(principal, body.subject)
    action = ids.name(body.action, "action")
    resource_type = ids.name(body.type, "type")
    context = decisions.resolve_context(user, body.context, x_account_context if principal.is_user else None)
    found = decisions.list_resources(runtime, user, action, resource_type, context)
    return ListResourcesOut(resources=found, revision=runtime.replica.revision)


@router.post("/list-subjects", response_model=ListSubjectsOut, responses=problems(400, 401, 403, 413, 422, 503))
async def list_subjects(body: ListSubjectsBody, runtime: RuntimeDep, principal: PrincipalDep) -> ListSubjectsOut:
    await _ready(runtime, body.min_revision)
    action = ids.name(body.action, "action")
    resource_type = ids.name(body.resource.type, "resource.type")
    if body.resource.id is None:
        raise Invalid("resource.id is required", field="resource.id")
    resource_id = ids.resource_id(body.resource.id, "resource.id")
    if principal.is_user:
        # A user may list who can act on a resource only if it may read that resource itself.
        if not runtime.replica.index.check(principal.id, "read", resource_type, resource_id, None):
            raise Forbidden("you may not read this resource")
    elif not principal.has_scope("check"):
        raise Forbidden("this service key lacks the `check` scope")
    subjects = decisions.list_subjects(runtime, action, resource_type, resource_id)
    return ListSubjectsOut(subjects=subjects, revision=runtime.replica.revision)
