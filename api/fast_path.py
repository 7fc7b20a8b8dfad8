"""`POST /v1/check` and `/v1/check/batch` answered before FastAPI's routing and dependency machinery.

authz sits on the request path of every platform component, and FastAPI's per-request
work (route matching through nested routers, exception middleware, the endpoint wrapper)
costs more than the decision itself. This middleware answers only the plain, valid
request: JSON body, no query string, a good credential, a fresh replica, no
`min_revision` wait. Anything else, or any error at all, hands the request (with the
body it has read) to the FastAPI route, which gives the same answer or the problem+json.
So no error handling is duplicated here: the fast path answers exactly as the route
would, through the same functions (`answer_check`, `answer_batch`), or steps aside.

It runs inside `RequestMiddleware`, so metrics and the access log see every request.
"""

from collections.abc import Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from api.auth import authenticate_request
from api.lean import is_json
from api.middleware import replay_body
from api.routers.decisions import answer_batch, answer_check
from api.schemas import BatchBody, CheckBody
from api.staleness import require_fresh
from authz.engine.replica import Snapshot
from authz.services.runtime import Runtime

Answer = Callable[[Request, bytes], bytes | None]
_HEADERS_JSON = (b"content-type", b"application/json")


def _snapshot_at(request: Request, min_revision: int | None) -> Snapshot | None:
    """The snapshot to answer from now, or None (the route waits for a `min_revision` not yet applied)."""
    runtime: Runtime = request.app.state.runtime
    require_fresh(runtime)
    snapshot = runtime.replica.snapshot
    return snapshot if min_revision is None or snapshot.revision >= min_revision else None


def _check(request: Request, raw: bytes) -> bytes | None:
    body = CheckBody.model_validate_json(raw)
    principal = authenticate_request(request)
    snapshot = _snapshot_at(request, body.min_revision)
    if snapshot is None:
        return None
    return answer_check(request, snapshot, principal, body, explain=False)


def _batch(request: Request, raw: bytes) -> bytes | None:
    body = BatchBody.model_validate_json(raw)
    principal = authenticate_request(request)
    snapshot = _snapshot_at(request, body.min_revision)
    if snapshot is None:
        return None
    return answer_batch(request, snapshot, principal, body)


ANSWERS: dict[str, Answer] = {"/v1/check": _check, "/v1/check/batch": _batch}


@dataclass(frozen=True)
class RouteTemplate:
    """What `RequestMiddleware` reads of `scope["route"]` to label metrics and the access log."""

    path: str


class DecisionFastPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._templates = {path: RouteTemplate(path) for path in ANSWERS}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["query_string"]:
            await self.app(scope, receive, send)
            return
        answer = ANSWERS.get(scope["path"])
        if answer is None or not _declares_json(scope):
            await self.app(scope, receive, send)
            return
        raw = await _read_body(receive)
        request = Request(scope)
        try:
            payload = answer(request, raw)
        except Exception:  # noqa: BLE001 - invalid input, bad credential, stale replica: the route answers
            payload = None
        if payload is None:
            await self.app(scope, replay_body(raw, receive), send)
            return
        scope["route"] = self._templates[scope["path"]]
        await send({"type": "http.response.start", "status": 200,
                    "headers": [_HEADERS_JSON, (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})


def _declares_json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return is_json(value.decode("latin-1"))
    return False


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away: nothing to answer
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)
