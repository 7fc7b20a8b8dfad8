"""The change feed: `GET /v1/changes` as JSON pages (with long-poll) or as server-sent events."""

from collections.abc import AsyncIterator
from typing import Annotated

import anyio
import anyio.to_thread
import orjson
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse

from api.deps import PrincipalDep, RuntimeDep, problems
from api.schemas import ChangesOut
from api.serving import ServerShutdown
from authz.domain.errors import Invalid, Unavailable
from authz.domain.limits import MAX_STORED_INT
from authz.services import changes
from authz.services.runtime import Runtime

router = APIRouter(prefix="/v1", tags=["changes"])
EVENT_STREAM = "text/event-stream"


async def _newer_than(runtime: Runtime, revision: int, timeout: float, shutdown: ServerShutdown) -> bool:
    """Until this replica has a revision after `revision` (True), or `timeout` passes or the server
    begins to stop (False).

    `Replica.reached` parks a future on the event loop: a waiting feed holds no thread.
    """
    return await shutdown.unless_begun(runtime.replica.reached(revision + 1, timeout)) is not None


def _last_event_id(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 19 or int(value) > MAX_STORED_INT:
        raise Invalid("Last-Event-ID must be a revision (the id of the last event received)", field="Last-Event-ID")
    return int(value)


@router.get(
    "/changes", response_model=ChangesOut, responses={**problems(401, 403, 422),
                                                      200: {"content": {EVENT_STREAM: {}}}},
)
async def read_changes(
    request: Request,
    runtime: RuntimeDep,
    principal: PrincipalDep,
    after: Annotated[int, Query(ge=0, le=MAX_STORED_INT, description="changes with a greater revision")] = 0,
    limit: Annotated[int, Query(ge=1, le=changes.MAX_LIMIT)] = changes.DEFAULT_LIMIT,
    wait: Annotated[float, Query(ge=0, le=30, description="seconds to long-poll when nothing is newer")] = 0,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
    last_event_id: Annotated[str | None, Header(max_length=40, description="SSE: resume after this revision")] = None,
) -> Response:
    """The changelog's deltas in order, one per revision; `Accept: text/event-stream` streams them."""
    changes.require_feed_reader(principal)
    shutdown: ServerShutdown = request.app.state.shutdown
    resume = _last_event_id(last_event_id)
    if resume is not None:
        after = max(after, resume)
    page = await anyio.to_thread.run_sync(changes.read_changes, runtime, after, limit)  # 503 now if no database
    if accept is not None and EVENT_STREAM in accept:
        return StreamingResponse(
            _events(runtime, shutdown, page, limit), media_type=EVENT_STREAM,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    if not page.changes and wait > 0:
        wait = min(wait, runtime.settings.changes_max_wait)
        if await _newer_than(runtime, after, wait, shutdown):
            page = await anyio.to_thread.run_sync(changes.read_changes, runtime, after, limit)
    body = {"changes": [change.to_json() for change in page.changes], "next_after": page.next_after}
    return Response(orjson.dumps(body), media_type="application/json")


async def _events(runtime: Runtime, shutdown: ServerShutdown, page: changes.ChangePage,
                  limit: int) -> AsyncIterator[bytes]:
    """The changes of `page` and every later one as events (`id:` the revision), as they commit.

    Ends when the client goes away (Starlette cancels it), when the database does, or when
    the server begins to stop (api.serving); the client reconnects with Last-Event-ID and
    loses nothing. A comment line every `changes_keepalive` seconds keeps proxies from
    closing an idle stream.
    """
    yield b"retry: 1000\n\n"
    while True:
        for change in page.changes:
            yield b"id: %d\nevent: change\ndata: %s\n\n" % (change.revision, orjson.dumps(change.to_json()))
        position = page.next_after
        if len(page.changes) < limit:
            if not await _newer_than(runtime, position, runtime.settings.changes_keepalive, shutdown):
                if not shutdown.begun:
                    yield b": keep-alive\n\n"
            elif not page.changes:
                await anyio.sleep(0.05)  # newer, yet not visible to this read: a revision still committing
        if shutdown.begun:
            yield b": the server is shutting down; reconnect with Last-Event-ID\n\n"
            return
        try:
            page = await anyio.to_thread.run_sync(changes.read_changes, runtime, position, limit)
        except Unavailable:
            yield b": the database is unavailable; reconnect with Last-Event-ID\n\n"
            return
