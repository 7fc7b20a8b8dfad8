"""`POST /v1/check` and `/v1/check/batch` answered before FastAPI's routing and dependency machinery.

authz sits on the request path of every platform component, and FastAPI's per-request
work (route matching through nested routers, exception middleware, dependency solving)
costs more than the decision itself. This middleware answers only the plain, valid
request: JSON body, no query string, a good credential this replica knows, a fresh
replica, no `min_revision` wait. For anything else it steps aside: it hands the request
(with the body it has read) to the FastAPI route, which gives the answer or the
problem+json. No error answer is written here, and the answers it does give come from
the route's own functions (`answer_check`, `answer_batch`).

Every request to the two paths is counted in `authz_fast_path_total{outcome}`: `answered`,
the reason it stepped aside, or `error`. It runs inside `RequestMiddleware`, so request
metrics and the access log see every request whichever way it was answered.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from api.auth import Authenticator, UnknownServiceKey
from api.media_types import is_json
from api.metrics import FastPathOutcome, Metrics
from api.middleware import replay_body
from api.problems import Unauthenticated
from api.routers.decisions import CONTEXT_HEADER_MAX, answer_batch, answer_check
from api.schemas import BatchBody, CheckBody
from api.staleness import require_fresh
from authz.domain.errors import AuthzError, Unavailable
from authz.domain.principal import Principal
from authz.engine.replica import Snapshot
from authz.services.runtime import Runtime

log = logging.getLogger("authz.api")
M = TypeVar("M", bound=BaseModel)

_HEADERS_JSON = (b"content-type", b"application/json")


class Asked(NamedTuple):
    """What the answers read of a request, taken from the scope in one pass over its headers.

    No Starlette Request: it and its Headers (a scan per header asked for) cost more than
    the decision. Each header is the first of its name, as `Headers.get` reads it for the route.
    """

    authenticator: Authenticator
    metrics: Metrics
    authorization: str | None
    account_context: str | None
    request_id: str | None


Answer = Callable[[Asked, bytes], bytes]


class StepAside(Exception):
    """The request is not the plain valid one answered here; the route answers it (`outcome` says why)."""

    def __init__(self, outcome: FastPathOutcome) -> None:
        super().__init__(outcome)
        self.outcome = outcome


def _body(model: type[M], raw: bytes) -> M:
    try:
        return model.model_validate_json(raw)
    except ValidationError:
        raise StepAside("invalid_body") from None


def _account_context(asked: Asked) -> str | None:
    value = asked.account_context
    if value is not None and len(value) > CONTEXT_HEADER_MAX:
        raise StepAside("invalid_header")
    return value


def _principal(asked: Asked) -> Principal:
    try:
        return asked.authenticator.principal(asked.authorization, asked.request_id)
    except UnknownServiceKey:  # new to this replica: the route looks it up in the database
        raise StepAside("unknown_service_key") from None
    except Unauthenticated:
        raise StepAside("unauthenticated") from None


def _snapshot_at(runtime: Runtime, min_revision: int | None) -> Snapshot:
    """The snapshot to answer from now; a stale replica or a `min_revision` not yet applied is the route's."""
    try:
        require_fresh(runtime)
    except Unavailable:
        raise StepAside("unavailable") from None
    snapshot = runtime.replica.snapshot
    if min_revision is not None and snapshot.revision < min_revision:
        raise StepAside("min_revision_wait")
    return snapshot


def _check(asked: Asked, raw: bytes) -> bytes:
    body = _body(CheckBody, raw)
    account_context = _account_context(asked)
    principal = _principal(asked)
    runtime = asked.authenticator.runtime
    snapshot = _snapshot_at(runtime, body.min_revision)
    try:
        return answer_check(runtime, asked.metrics, snapshot, principal, body, account_context, explain=False)
    except AuthzError:  # a subject or context that is invalid or not the caller's to ask about
        raise StepAside("refused") from None


def _batch(asked: Asked, raw: bytes) -> bytes:
    body = _body(BatchBody, raw)
    account_context = _account_context(asked)
    principal = _principal(asked)
    snapshot = _snapshot_at(asked.authenticator.runtime, body.min_revision)
    try:
        return answer_batch(asked.metrics, snapshot, principal, body, account_context)
    except AuthzError:
        raise StepAside("refused") from None


ANSWERS: dict[str, Answer] = {"/v1/check": _check, "/v1/check/batch": _batch}


@dataclass(frozen=True)
class RouteTemplate:
    """What `RequestMiddleware` reads of `scope["route"]` to label metrics and the access log."""

    path: str


class DecisionFastPath:
    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self._templates = {path: RouteTemplate(path) for path in ANSWERS}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        answer = ANSWERS.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if answer is None:
            await self.app(scope, receive, send)
            return
        content_type, authorization, account_context = _headers(scope)
        if scope["query_string"] or content_type is None or not is_json(content_type):
            self.metrics.count_fast_path("query_string" if scope["query_string"] else "not_json")
            await self.app(scope, receive, send)
            return
        # Outside the `try`: a body over the limit raises for RequestMiddleware to answer 413.
        raw = await _read_body(receive)
        payload: bytes | None = None
        outcome: FastPathOutcome
        try:
            asked = Asked(scope["app"].state.authenticator, self.metrics, authorization, account_context,
                          scope.get("state", {}).get("request_id"))
            payload = answer(asked, raw)
            outcome = "answered"
        except StepAside as aside:
            outcome = aside.outcome
        except Exception:
            # A bug here, not the caller's fault. A check only reads, so the route may safely
            # answer it again: if the fault is this shortcut's own, the caller still gets the
            # right answer; if it is in the shared decision code, the route fails too and
            # answers the 500 problem. Either way the operator sees it: `error` in
            # authz_fast_path_total (alert on any) and this traceback in the log. Failing
            # here with a 500 instead would turn a fault of an optimisation into an outage.
            outcome = "error"
            log.exception("the decision fast path failed; the route answers instead", extra={
                "route": scope["path"], "request_id": scope.get("state", {}).get("request_id"),
            })
        self.metrics.count_fast_path(outcome)
        if payload is None:
            await self.app(scope, replay_body(raw, receive), send)
            return
        scope["route"] = self._templates[scope["path"]]
        await send({"type": "http.response.start", "status": 200,
                    "headers": [_HEADERS_JSON, (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})


def _headers(scope: Scope) -> tuple[str | None, str | None, str | None]:
    """Content-Type, Authorization and X-Account-Context: the first of each, or None."""
    content_type = authorization = account_context = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            if authorization is None:
                authorization = value.decode("latin-1")
        elif name == b"content-type":
            if content_type is None:
                content_type = value.decode("latin-1")
        elif name == b"x-account-context" and account_context is None:
            account_context = value.decode("latin-1")
    return content_type, authorization, account_context


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
