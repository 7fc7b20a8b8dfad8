"""Forward-auth for proxies: nginx `auth_request`, Traefik ForwardAuth, Envoy HTTP `ext_authz`.

The proxy asks before passing a request on; 200 lets it through (with the subject, context
and revision in headers for the upstream), 401 and 403 refuse it. Any method is accepted,
because Envoy checks with the original request's own method and path.
"""

from typing import Any

import orjson
from fastapi import APIRouter, Request, Response

from api.deps import REVISION_HEADER, PrincipalDep, RuntimeDep, problems
from api.problems import problem
from api.staleness import require_fresh
from authz.domain.errors import Invalid
from authz.services import forward_auth

router = APIRouter(tags=["forward-auth"])
PREFIX = "/v1/authorize"
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
SUBJECT_HEADER = "X-Authz-Subject"
CONTEXT_HEADER = "X-Authz-Context"
NO_STORE = {"Cache-Control": "no-store"}


def _envoy_suffix(request: Request) -> str | None:
    """The original path Envoy appended to /v1/authorize, exactly as received (still percent-encoded)."""
    raw: bytes = request.scope.get("raw_path") or request.scope["path"].encode()
    text = raw.decode("latin-1")
    root = request.scope.get("root_path", "")
    if root and text.startswith(root):
        text = text[len(root):]
    if not text.startswith(PREFIX):
        raise Invalid(f"the check path must begin with {PREFIX} as plain text", field="path")
    suffix = text[len(PREFIX):]
    return suffix or None


# Documented as GET; the other methods (and Envoy's appended path) are the same operation.
@router.api_route(PREFIX, methods=["GET"], responses=problems(401, 403, 422, 503),
                  summary="Forward-auth check of a proxied request")
@router.api_route(PREFIX, methods=[m for m in ALL_METHODS if m != "GET"], include_in_schema=False)
@router.api_route(PREFIX + "/{original_path:path}", methods=ALL_METHODS, include_in_schema=False)
async def authorize(request: Request, runtime: RuntimeDep, principal: PrincipalDep) -> Response:
    """Decide the request described by X-Original-*, X-Forwarded-* or the appended path (Envoy)."""
    require_fresh(runtime)
    snapshot = runtime.replica.snapshot
    headers = {name: value for name, value in request.headers.items()
               if name.startswith(("x-original-", "x-forwarded-"))}
    original = forward_auth.original_request(request.method, _envoy_suffix(request), headers)
    decision = forward_auth.authorize_original(snapshot, principal, original, request.headers.get("x-account-context"))
    request.app.state.metrics.decisions.labels("allowed" if decision.allowed else "denied").inc()
    revision = str(snapshot.revision)
    if not decision.allowed:
        errors = [{"field": decision.field, "message": decision.reason}] if decision.field else None
        return problem(403, decision.reason, errors=errors, headers={**NO_STORE, REVISION_HEADER: revision})
    assert decision.match is not None and decision.subject is not None and decision.context is not None
    body: dict[str, Any] = {
        "allowed": True,
        "subject": decision.subject,
        "context": decision.context,
        "action": decision.match.action,
        "resource": {"type": decision.match.resource_type, "id": decision.match.resource_id},
        "route": decision.match.route.name,
        "revision": snapshot.revision,
    }
    return Response(
        orjson.dumps(body),
        media_type="application/json",
        headers={
            **NO_STORE,
            SUBJECT_HEADER: decision.subject,
            CONTEXT_HEADER: decision.context,
            REVISION_HEADER: revision,
        },
    )
