"""A FastAPI guard for other platform services: protect a route with one line, decided by authz.

    from authz_client import AsyncAuthzClient
    from authz_client.guard import install, path_param, require

    install(app, AsyncAuthzClient("http://authz:8000"))          # once per app

    @app.delete("/algorithms/{id}", dependencies=[require("delete", resource=("algorithm", path_param("id")))])
    async def delete_algorithm(id: str) -> None: ...

The guard forwards the caller's own `Authorization` and `X-Account-Context` to authz's
`POST /v1/check`, so authz verifies the token and decides about that user; refusals are
401/403 problem+json (503 when authz cannot be asked: it fails closed).

With a `LocalDecisions` instead (decisions in this process, no request to authz), the app
authenticates its callers itself and tells the guard who each one is:

    install(app, local_decisions, subject=lambda request: request.state.user_id)

The context is the guard's `context`, else the caller's X-Account-Context, else its
personal account (as authz does for a user). A stale follower is a 503, never a guess.

This module is imported on its own and imports FastAPI only when `require` or `install` is
called, so `authz_client` never imports a web framework; FastAPI comes with the extra
(`pip install 'authz-client[fastapi]'`).
"""

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from authz_client.aio import AsyncAuthzClient
from authz_client.errors import AuthzError, InvalidRequest, Unauthenticated, Unavailable
from authz_client.local import PERSONAL, LocalDecisions
from authz_client.models import CheckResult

if TYPE_CHECKING:  # pragma: no cover
    from fastapi import FastAPI
    from starlette.requests import Request

PROBLEM_TYPE = "urn:authz:problem:"
WWW_AUTHENTICATE = {"WWW-Authenticate": 'Bearer realm="authz"'}
_TITLES = {401: "Not authenticated", 403: "Forbidden", 422: "Invalid request", 503: "Service unavailable"}
_SLUGS = {401: "unauthenticated", 403: "forbidden", 422: "invalid", 503: "unavailable"}


@dataclass(frozen=True)
class PathParam:
    """A value taken from the matched route's path parameters at request time."""

    name: str

    def __call__(self, request: "Request") -> str:
        try:
            return str(request.path_params[self.name])
        except KeyError:
            raise LookupError(f"the route has no path parameter {{{self.name}}} for the authz guard") from None


def path_param(name: str) -> PathParam:
    """`require(..., resource=("algorithm", path_param("id")))`: the id is the `{id}` of the path."""
    return PathParam(name)


Value = str | Callable[["Request"], str] | None
Subject = Callable[["Request"], str | None]  # the authenticated user of a request (LocalDecisions only)
DecisionSource = AsyncAuthzClient | LocalDecisions
ResourceSpec = str | tuple[str, Value] | Callable[["Request"], tuple[str, str | None]]


def _value(value: Value, request: "Request") -> str | None:
    return value(request) if callable(value) else value


def _resource(spec: ResourceSpec, request: "Request") -> tuple[str, str | None]:
    if callable(spec):
        return spec(request)
    if isinstance(spec, str):
        return spec, None
    resource_type, resource_id = spec
    return resource_type, _value(resource_id, request)


def _fastapi() -> Any:
    """FastAPI, or an error that says which extra brings it."""
    try:
        import fastapi
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError("the authz guard needs FastAPI: pip install 'authz-client[fastapi]'",
                                  name=exc.name) from exc
    return fastapi


@functools.cache
def refusal_type() -> type[Exception]:
    """The exception a refusal raises: an HTTPException, so an app without `install` still refuses."""
    _fastapi()
    from fastapi import HTTPException

    class GuardRefusal(HTTPException):
        """401/403/422/503 with a problem+json body (rendered by the handler `install` adds)."""

        def __init__(self, status: int, detail: str, *, errors: list[dict[str, Any]] | None = None,
                     headers: dict[str, str] | None = None) -> None:
            super().__init__(status, detail=detail, headers=headers)
            self.problem: dict[str, Any] = {
                "type": PROBLEM_TYPE + _SLUGS.get(status, "error"),
                "title": _TITLES.get(status, "Error"),
                "status": status,
                "detail": detail,
            }
            if errors is not None:
                self.problem["errors"] = errors

    return GuardRefusal


def _refuse(status: int, detail: str, *, field: str | None = None, headers: dict[str, str] | None = None) -> Exception:
    errors = [{"field": field, "message": detail}] if field is not None else None
    return refusal_type()(status, detail, errors=errors, headers=headers)  # type: ignore[call-arg]


def install(app: "FastAPI", client: DecisionSource, *, subject: Subject | None = None) -> None:
    """Give the app's guards their decision source and render their refusals as problem+json.

    `subject` (required with a `LocalDecisions`): who the request's caller is, or None (401).
    """
    _fastapi()
    if isinstance(client, LocalDecisions) and subject is None:
        raise TypeError("a LocalDecisions guard needs `subject`: the app's own way to name the caller")
    from fastapi.responses import JSONResponse

    async def render(_: Any, exc: Exception) -> Any:
        problem = getattr(exc, "problem", None) or {"status": 500, "detail": "refused"}
        return JSONResponse(problem, status_code=problem["status"], headers=getattr(exc, "headers", None),
                            media_type="application/problem+json")

    app.state.authz_client = client
    app.state.authz_subject = subject
    app.add_exception_handler(refusal_type(), render)


def _bearer(request: "Request") -> str:
    header = request.headers.get("authorization")
    if not header:
        raise _refuse(401, "missing Authorization: Bearer credential", headers=WWW_AUTHENTICATE)
    scheme, _, credential = header.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise _refuse(401, "the Authorization header must be `Bearer <credential>`", headers=WWW_AUTHENTICATE)
    return credential.strip()


def require(
    action: str,
    resource: ResourceSpec,
    *,
    context: Value = None,
    client: DecisionSource | None = None,
    subject: Subject | None = None,
) -> Any:
    """A dependency that lets the request through only if authz allows the caller `action` on `resource`.

    `resource` is a type (`"algorithm"`: a type-level action in the caller's
    X-Account-Context, or in `context`), `(type, id)` where the id may be `path_param(...)`
    or any callable of the request, or a callable returning `(type, id)`. The dependency's
    value is the `CheckResult` (with the revision it was decided at).
    """
    _fastapi()
    from fastapi import Depends, Request

    id_field = resource[1].name if isinstance(resource, tuple) and isinstance(resource[1], PathParam) else "resource.id"
    context_field = context.name if isinstance(context, PathParam) else "X-Account-Context"

    async def authz_guard(request: Request) -> CheckResult:
        authz: DecisionSource | None = client or getattr(request.app.state, "authz_client", None)
        if authz is None:
            raise RuntimeError("the authz guard has no client: call authz_client.guard.install(app, client)")
        resource_type, resource_id = _resource(resource, request)
        if isinstance(authz, LocalDecisions):
            named = subject or getattr(request.app.state, "authz_subject", None)
            if named is None:
                raise RuntimeError("a LocalDecisions guard needs `subject` (install(app, decisions, subject=...))")
            result = await _decide_locally(authz, named, request, action, resource_type, resource_id,
                                           _value(context, request))
        else:
            result = await _decide_remotely(authz, request, action, resource_type, resource_id,
                                            _value(context, request), id_field, context_field)
        if not result.allowed:
            target = resource_type if resource_id is None else f"{resource_type}:{resource_id}"
            raise _refuse(403, f"you may not {action} {target}")
        return result

    return Depends(authz_guard)


async def _decide_locally(decisions: LocalDecisions, subject: Subject, request: "Request", action: str,
                          resource_type: str, resource_id: str | None, context: str | None) -> CheckResult:
    user = subject(request)
    if not user:
        raise _refuse(401, "the request has no authenticated caller", headers=WWW_AUTHENTICATE)
    context = context or request.headers.get("x-account-context") or PERSONAL
    try:
        return await decisions.check_async(action, (resource_type, resource_id), subject=user, context=context)
    except Unavailable as exc:
        raise _refuse(503, f"authorization is unavailable: {exc.detail}", headers={"Retry-After": "1"}) from None


async def _decide_remotely(authz: AsyncAuthzClient, request: "Request", action: str, resource_type: str,
                           resource_id: str | None, context: str | None, id_field: str,
                           context_field: str) -> CheckResult:
    credential = _bearer(request)
    caller = authz.with_credential(credential, account_context=request.headers.get("x-account-context"))
    try:
        return await caller.check(action, (resource_type, resource_id), context=context)
    except Unauthenticated as exc:
        raise _refuse(401, exc.detail, headers=WWW_AUTHENTICATE) from None
    except InvalidRequest as exc:
        named = exc.fields[0] if exc.fields else ""
        if named == "resource.id":
            raise _refuse(422, f"{id_field} is not a valid resource id", field=id_field) from None
        if named in ("context", "X-Account-Context"):
            raise _refuse(422, f"{context_field} must be `personal` or an organization id",
                          field=context_field) from None
        raise _refuse(403, exc.detail) from None
    except Unavailable as exc:
        raise _refuse(503, f"authorization is unavailable: {exc.detail}", headers={"Retry-After": "1"}) from None
    except AuthzError as exc:
        if exc.status in (403, 404):
            raise _refuse(403, exc.detail) from None
        raise _refuse(503, "authorization failed; refusing to guess", headers={"Retry-After": "1"}) from None


__all__ = ["PathParam", "install", "path_param", "refusal_type", "require"]
