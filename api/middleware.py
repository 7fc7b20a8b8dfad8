"""One pure-ASGI middleware: request id, body size limit, metrics and one log line per request.

Pure ASGI (not BaseHTTPMiddleware) so the body is never read twice and the check path
pays only for a few dict operations.
"""

import itertools
import secrets
import time
from collections.abc import Iterator

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.access_log import AccessLog
from api.metrics import Metrics
from api.problems import problem

REQUEST_ID_HEADER = b"x-request-id"


class _TooLarge(Exception):
    pass


class RequestMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: Metrics, max_body_bytes: int, tracing: bool = False) -> None:
        self.app = app
        # With tracing on, the request runs inside the server span (the instrumentation is the
        # outermost middleware): its trace id goes into the access line. Off, nothing is looked up.
        self.tracing = tracing
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.access_log = AccessLog()
        self._new_request_id = _request_ids().__next__  # per app: no process-global state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope) or self._new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        trace_id = _trace_id(request_id) if self.tracing else None
        status = 500
        limit = self.max_body_bytes

        declared = _content_length(scope)
        too_large = declared is not None and declared > limit
        if declared is None and _is_chunked(scope):
            # The size of a chunked body is known only by reading it. Read it here, up to the
            # limit, so every route answers 413: a limit hit inside FastAPI's own body parsing
            # would be caught there and turned into 400 "error parsing the body".
            body, too_large = await _read_at_most(receive, limit)
            if not too_large:
                receive = replay_body(body, receive)
        if too_large:
            status = 413
            await problem(413, f"the request body exceeds {limit} bytes")(scope, receive, send)
            self._finish(scope, status, started, request_id, trace_id)
            return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge
            return message

        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (REQUEST_ID_HEADER, request_id.encode())]
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_id)
        except _TooLarge:
            if response_started:
                raise
            status = 413
            await problem(413, f"the request body exceeds {limit} bytes")(scope, receive, send)
        finally:
            self._finish(scope, status, started, request_id, trace_id)

    def _finish(self, scope: Scope, status: int, started: float, request_id: str, trace_id: str | None) -> None:
        duration = time.perf_counter() - started
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        method = scope["method"]
        self.metrics.observe_request(method, template, status, duration)
        fields = {"method": method, "route": template, "status": status,
                  "duration_ms": round(duration * 1000, 3), "request_id": request_id}
        if trace_id is not None:
            fields["trace_id"] = trace_id
        self.access_log.write(fields)


def _trace_id(request_id: str) -> str | None:
    """The current (server) span's trace id as 32 hex digits; the request id becomes a span attribute."""
    from opentelemetry import trace

    span = trace.get_current_span()
    context = span.get_span_context()
    if not context.is_valid:
        return None
    span.set_attribute("authz.request_id", request_id)
    return f"{context.trace_id:032x}"


def _request_id(scope: Scope) -> str | None:
    """The caller's X-Request-ID when it is a sane token (1-64 of letters, digits and -)."""
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            candidate: str = value.decode("latin-1")
            if 0 < len(candidate) <= 64 and candidate.replace("-", "").isalnum():
                return candidate
            break
    return None


def _request_ids() -> Iterator[str]:
    """16 hex digits: 8 random per process, then a counter (unique without a syscall per request)."""
    prefix = secrets.token_hex(4)
    for n in itertools.count():
        yield f"{prefix}{n & 0xFFFFFFFF:08x}"


def _is_chunked(scope: Scope) -> bool:
    return any(name == b"transfer-encoding" for name, _ in scope["headers"])


async def _read_at_most(receive: Receive, limit: int) -> tuple[bytes, bool]:
    """The whole body, or (what was read, True) as soon as it exceeds `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            return b"".join(chunks), False
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return b"", True
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), False


def replay_body(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the app the body read here, then the real messages (disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
