"""The OpenID AuthZEN Authorization API 1.0 (`/access/v1/...`) and its public metadata.

AuthZEN answers a malformed request with 400 (not authz's 422), ignores unknown fields,
and reports a malformed item of a batch as a denied item; so these routes parse their
bodies themselves, with lenient models, and translate every validation error to a 400
problem naming the field. The decisions are authz's (`authz.services.authzen`).
"""

from typing import Any, TypeVar

import orjson
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from api.auth import authenticate
from api.deps import problems
from api.media_types import is_json
from api.staleness import require_fresh
from authz.domain.errors import Invalid, Malformed
from authz.engine.replica import Snapshot
from authz.services import authzen
from authz.services.decisions import DEFAULT_LISTING_PAGE, MAX_BATCH, MAX_LISTING_PAGE
from authz.services.runtime import Runtime

M = TypeVar("M", bound=BaseModel)
router = APIRouter(tags=["authzen"])
PREFIX = "/access/v1"


class Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")  # AuthZEN: receivers MUST ignore unknown fields


class Subject(Lenient):
    type: StrictStr = Field(max_length=1000)
    id: StrictStr = Field(max_length=1000)
    properties: dict[str, Any] | None = None


class SearchedSubject(Lenient):
    type: StrictStr = Field(max_length=1000)
    id: StrictStr | None = Field(default=None, max_length=1000)  # ignored: it is what the search finds


class Resource(Lenient):
    type: StrictStr = Field(max_length=1000)
    id: StrictStr = Field(max_length=1000)
    properties: dict[str, Any] | None = None


class SearchedResource(Lenient):
    type: StrictStr = Field(max_length=1000)
    id: StrictStr | None = Field(default=None, max_length=1000)


class Action(Lenient):
    name: StrictStr = Field(max_length=1000)
    properties: dict[str, Any] | None = None


class Evaluation(Lenient):
    subject: Subject
    action: Action
    resource: Resource
    context: dict[str, Any] | None = None


class Options(Lenient):
    evaluations_semantic: StrictStr = "execute_all"


class Evaluations(Lenient):
    subject: dict[str, Any] | None = None
    action: dict[str, Any] | None = None
    resource: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    evaluations: list[dict[str, Any]] | None = Field(default=None, max_length=MAX_BATCH)
    options: Options | None = None


class Page(Lenient):
    token: StrictStr | None = Field(default=None, max_length=1000)
    limit: StrictInt = Field(default=DEFAULT_LISTING_PAGE, ge=1, le=MAX_LISTING_PAGE)


class SubjectSearch(Lenient):
    subject: SearchedSubject
    action: Action
    resource: Resource
    context: dict[str, Any] | None = None
    page: Page | None = None


class ResourceSearch(Lenient):
    subject: Subject
    action: Action
    resource: SearchedResource
    context: dict[str, Any] | None = None
    page: Page | None = None


class ActionSearch(Lenient):
    subject: Subject
    resource: Resource
    context: dict[str, Any] | None = None
    page: Page | None = None


def _problem_of(exc: ValidationError, prefix: str = "") -> Malformed:
    error = exc.errors()[0]
    field = prefix + (".".join(str(part) for part in error.get("loc", ())) or "body")
    return Malformed(f"{field}: {error.get('msg', 'invalid')}", field=field)


async def _body(request: Request) -> dict[str, Any]:
    """The JSON object of the request, or 400 (empty, not JSON, not an object, wrong Content-Type)."""
    content_type = request.headers.get("content-type", "")
    if not is_json(content_type):
        raise Malformed("send the body as JSON with Content-Type: application/json", field="body")
    raw = await request.body()
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise Malformed("the request body is not valid JSON" if raw else "the request body is empty",
                        field="body") from None
    if not isinstance(data, dict):
        raise Malformed("the request body must be a JSON object", field="body")
    return data


def _parse(model: type[M], data: dict[str, Any], prefix: str = "") -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _problem_of(exc, prefix) from None


def _question(evaluation: Evaluation) -> authzen.Question:
    return authzen.Question(evaluation.subject.type, evaluation.subject.id, evaluation.action.name,
                            evaluation.resource.type, evaluation.resource.id)


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    require_fresh(runtime)
    return runtime


def _snapshot(runtime: Runtime) -> Snapshot:
    """One published state for the whole answer: decisions and the revision reported agree."""
    return runtime.replica.snapshot


def _json(payload: dict[str, Any]) -> Response:
    return Response(orjson.dumps(payload), media_type="application/json")


def _with_revision(payload: dict[str, Any], revision: int) -> dict[str, Any]:
    return payload | {"context": {**payload.get("context", {}), "revision": revision}}


_ERRORS = problems(400, 401, 403, 413, 503)


@router.post(PREFIX + "/evaluation", responses=_ERRORS)
async def evaluation(request: Request) -> Response:
    """AuthZEN Access Evaluation: `{subject, action, resource, context?}` → `{decision, context}`."""
    data = await _body(request)
    principal = await authenticate(request)
    runtime = _runtime(request)
    snapshot = _snapshot(runtime)
    revision = snapshot.revision
    answer = authzen.evaluate(snapshot, principal, _question(_parse(Evaluation, data)))
    return _json(_with_revision(answer, revision))


@router.post(PREFIX + "/evaluations", responses=_ERRORS)
async def evaluations(request: Request) -> Response:
    """AuthZEN Access Evaluations: `evaluations` with top-level defaults → `{evaluations: [...]}` in order."""
    data = await _body(request)
    principal = await authenticate(request)
    body = _parse(Evaluations, data)
    runtime = _runtime(request)
    snapshot = _snapshot(runtime)
    revision = snapshot.revision
    if not body.evaluations:  # absent or empty: a single evaluation (backwards compatible)
        answer = authzen.evaluate(snapshot, principal, _question(_parse(Evaluation, data)))
        return _json(_with_revision(answer, revision))
    defaults = {key: value for key in ("subject", "action", "resource", "context")
                if (value := getattr(body, key)) is not None}
    items: list[authzen.Question | str] = []
    for position, item in enumerate(body.evaluations):
        merged = defaults | {key: item[key] for key in ("subject", "action", "resource", "context") if key in item}
        try:
            items.append(_question(Evaluation.model_validate(merged)))
        except ValidationError as exc:
            items.append(_problem_of(exc, f"evaluations.{position}.").detail)
    semantic = body.options.evaluations_semantic if body.options else "execute_all"
    try:
        results = authzen.evaluate_all(snapshot, principal, items, semantic)
    except Invalid as exc:
        raise Malformed(exc.detail, field=exc.field) from None
    return _json({"evaluations": results, "context": {"revision": revision}})


def _search_answer(found: authzen.Found, revision: int) -> Response:
    page = {"next_token": found.next_token, "count": len(found.results)}
    return _json({"page": page, "context": {"revision": revision}, "results": found.results})


def _page(page: Page | None) -> tuple[int, str | None]:
    return (page.limit, page.token) if page is not None else (DEFAULT_LISTING_PAGE, None)


@router.post(PREFIX + "/search/subject", responses=_ERRORS)
async def search_subject(request: Request) -> Response:
    """AuthZEN Subject Search: the users who may do the action on the resource."""
    data = await _body(request)
    principal = await authenticate(request)
    body = _parse(SubjectSearch, data)
    runtime = _runtime(request)
    snapshot = _snapshot(runtime)
    revision = snapshot.revision
    limit, token = _page(body.page)
    found = authzen.search_subjects(snapshot, principal, cursors=runtime.cursors, subject_type=body.subject.type,
                                    action=body.action.name, resource_type=body.resource.type,
                                    resource_id=body.resource.id, limit=limit, token=token)
    return _search_answer(found, revision)


@router.post(PREFIX + "/search/resource", responses=_ERRORS)
async def search_resource(request: Request) -> Response:
    """AuthZEN Resource Search: the resources of a type the user may do the action on."""
    data = await _body(request)
    principal = await authenticate(request)
    body = _parse(ResourceSearch, data)
    runtime = _runtime(request)
    snapshot = _snapshot(runtime)
    revision = snapshot.revision
    limit, token = _page(body.page)
    found = authzen.search_resources(snapshot, principal, cursors=runtime.cursors, subject_type=body.subject.type,
                                     subject_id=body.subject.id, action=body.action.name,
                                     resource_type=body.resource.type, limit=limit, token=token)
    return _search_answer(found, revision)


@router.post(PREFIX + "/search/action", responses=_ERRORS)
async def search_action(request: Request) -> Response:
    """AuthZEN Action Search: the actions the user may do on the resource."""
    data = await _body(request)
    principal = await authenticate(request)
    body = _parse(ActionSearch, data)
    runtime = _runtime(request)
    snapshot = _snapshot(runtime)
    revision = snapshot.revision
    found = authzen.search_actions(snapshot, principal, subject_type=body.subject.type, subject_id=body.subject.id,
                                   resource_type=body.resource.type, resource_id=body.resource.id)
    return _search_answer(found, revision)


@router.get("/.well-known/authzen-configuration", tags=["authzen"])
async def configuration(request: Request) -> Response:
    """Public PDP metadata: where each AuthZEN endpoint is (no credential needed)."""
    base = str(request.base_url).rstrip("/")
    return _json({
        "policy_decision_point": base,
        "access_evaluation_endpoint": base + PREFIX + "/evaluation",
        "access_evaluations_endpoint": base + PREFIX + "/evaluations",
        "search_subject_endpoint": base + PREFIX + "/search/subject",
        "search_resource_endpoint": base + PREFIX + "/search/resource",
        "search_action_endpoint": base + PREFIX + "/search/action",
    })
