"""Every error as application/problem+json (RFC 9457), including the framework's own."""

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from authz.domain.errors import (
    AuthzError,
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    Malformed,
    NotFound,
    TooManyRequests,
    Unavailable,
)
from authz.policy.yaml_nodes import PolicyInvalid

log = logging.getLogger("authz.api")
PROBLEM_TYPE = "urn:authz:problem:"
MEDIA_TYPE = "application/problem+json"

TITLES = {
    400: "Malformed request",
    401: "Not authenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    410: "Gone",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Invalid request",
    429: "Too many requests",
    500: "Internal error",
    503: "Service unavailable",
}
SLUGS = {
    400: "malformed", 401: "unauthenticated", 403: "forbidden", 404: "not-found", 405: "method-not-allowed",
    409: "conflict", 410: "gone", 413: "too-large", 415: "unsupported-media-type", 422: "invalid", 429: "rate-limited",
    500: "internal", 503: "unavailable",
}
STATUS_OF: dict[type[AuthzError], int] = {
    Invalid: 422, Malformed: 400, NotFound: 404, Forbidden: 403, Conflict: 409, Gone: 410, Unavailable: 503,
    TooManyRequests: 429,
}


def problem_body(status: int, detail: str, *, errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE + SLUGS.get(status, "error"),
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = errors
    return body


def problem(status: int, detail: str, *, errors: list[dict[str, Any]] | None = None,
            headers: dict[str, str] | None = None) -> Response:
    body = problem_body(status, detail, errors=errors)
    return Response(orjson.dumps(body), status_code=status, media_type=MEDIA_TYPE, headers=headers)


def status_of(exc: AuthzError) -> int:
    return next((code for kind, code in STATUS_OF.items() if isinstance(exc, kind)), 400)


def error_body(exc: AuthzError) -> dict[str, Any]:
    """The problem+json body of a core error (also one row of a bulk answer)."""
    status = status_of(exc)
    errors = [{"field": exc.field, "message": exc.detail}] if status == 422 or (status == 400 and exc.field) else None
    return problem_body(status, exc.detail, errors=errors)


class Unauthenticated(Exception):
    """No credential, or one that fails verification."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def _field_of(location: tuple[Any, ...]) -> str:
    parts = [str(p) for p in location if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


async def _authz_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AuthzError)
    body = error_body(exc)
    status = body["status"]
    if exc.outsider:
        _count_outsider(request, status)
    headers = {"Retry-After": "1"} if status == 503 else None
    if isinstance(exc, TooManyRequests):
        headers = {"Retry-After": str(exc.retry_after)}
    return problem(status, exc.detail, errors=body.get("errors"), headers=headers)


def _count_outsider(request: Request, status: int) -> None:
    """An outsider's refused attempt: the service log and a metric (a tenant's audit log never sees it)."""
    route = getattr(request.scope.get("route"), "path", None) or "unmatched"
    log.info("refused a caller with no role or scope there", extra={
        "route": route, "method": request.method, "status": status,
        "request_id": request.scope.get("state", {}).get("request_id"),
    })
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.outsider_refusals.labels(route).inc()


async def _policy_invalid(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, PolicyInvalid)
    errors = [{"field": f"{e.file}:{e.line}", "file": e.file, "line": e.line, "message": e.reason} for e in exc.errors]
    return problem(422, "the policy files are invalid; nothing was changed: " + str(exc.errors[0]), errors=errors)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    raw = exc.errors()
    if any(error.get("type") == "json_invalid" for error in raw):
        return problem(400, "the request body is not valid JSON")
    content_type = request.headers.get("content-type", "")
    body_errors = any(tuple(error.get("loc", ())) == ("body",) for error in raw)
    if body_errors and content_type and "json" not in content_type:
        return problem(415, f"send the body as JSON with Content-Type: application/json (got {content_type[:60]})")
    errors = [{"field": _field_of(tuple(e.get("loc", ()))), "message": e.get("msg", "invalid")} for e in raw]
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    return problem(422, detail, errors=errors)


async def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else TITLES.get(exc.status_code, "error")
    if exc.status_code == 404 and detail == "Not Found":
        detail = "no such endpoint"
    return problem(exc.status_code, detail, headers=getattr(exc, "headers", None))


async def _unauthenticated(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, Unauthenticated)
    return problem(401, exc.detail, headers={"WWW-Authenticate": 'Bearer realm="authz"'})


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("unhandled error", exc_info=exc, extra={"route": request.url.path})
    return problem(500, "an internal error occurred; it has been logged")


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AuthzError, _authz_error)
    app.add_exception_handler(PolicyInvalid, _policy_invalid)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Unauthenticated, _unauthenticated)
    app.add_exception_handler(Exception, _unexpected)
