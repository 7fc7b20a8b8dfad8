"""`AppClient`: Starlette's TestClient, each request sent to the app in one call on the client's event loop.

Starlette's own transport streams the response back across threads: about eight calls between the test's
thread and the event loop's per request, 1.3 ms of CPU more than the request itself, which in 4,000
requests was a sixth of `make test-fast`. Here httpx's `ASGITransport` runs the whole exchange inside
the loop that ran the app's lifespan, and the response comes back in one piece. Cookies, redirects,
`base_url`, `raise_server_exceptions` and the lifespan are the TestClient's own. A client used outside
`with` (a second browser on an app another client started) has no loop of its own and uses
Starlette's transport.
"""

from collections.abc import AsyncIterator, Iterable
from typing import Any

import httpx
from fastapi.testclient import TestClient
from starlette.types import ASGIApp


class AppClient(TestClient):
    def __init__(self, app: ASGIApp, *, raise_server_exceptions: bool = True, **kwargs: Any) -> None:
        super().__init__(app, raise_server_exceptions=raise_server_exceptions, **kwargs)
        self._transport = _OneCallTransport(self, app, raise_server_exceptions)


class _OneCallTransport(httpx.BaseTransport):
    def __init__(self, client: TestClient, app: ASGIApp, raise_app_exceptions: bool) -> None:
        self._client = client
        self._streaming = client._transport
        # The client address Starlette's transport gives; the app reads none, its logs show it.
        self._asgi = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions,
                                         client=("testclient", 50000))

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        portal = self._client.portal
        if portal is None:
            return self._streaming.handle_request(request)
        if not isinstance(request.stream, httpx.AsyncByteStream):  # a body given as an iterator of chunks
            request.stream = _Chunks(request.stream)

        async def exchange() -> tuple[int, list[tuple[bytes, bytes]], bytes]:
            response = await self._asgi.handle_async_request(request)
            return response.status_code, response.headers.raw, await response.aread()

        status, headers, body = portal.call(exchange)
        return httpx.Response(status, headers=headers, content=body, request=request)


class _Chunks(httpx.AsyncByteStream):
    """A request body given as an iterator, read by the loop chunk by chunk: the app receives one
    `http.request` message per chunk, as from a chunked upload (Starlette's transport sent one)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk
