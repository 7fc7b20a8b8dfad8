"""`GET /v1/snapshot`: the whole decision state at one revision, for a follower to start from."""

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from api.deps import REVISION_HEADER, PrincipalDep, RuntimeDep, problems
from api.routers.decisions import ready_snapshot
from authz.domain.errors import Unavailable
from authz.engine import transfer
from authz.services import changes

router = APIRouter(prefix="/v1", tags=["changes"])
NDJSON = "application/x-ndjson"


@router.get("/snapshot", responses={**problems(401, 403, 503), 200: {"content": {NDJSON: {}}}},
            response_class=StreamingResponse)
async def read_snapshot(
    request: Request,
    runtime: RuntimeDep,
    principal: PrincipalDep,
    part: Annotated[Literal["service_keys"] | None,
                    Query(description="only the service-key hashes (what a follower re-reads on a key change)")] = None,
    min_revision: Annotated[
        int | None, Query(ge=0, description="wait (briefly) until this replica has it, else 503")
    ] = None,
) -> StreamingResponse:
    """Rules, memberships, resources, per-resource roles, the policy and service-key hashes at one revision.

    Newline-delimited JSON (`authz.engine.transfer`), written from this replica's published
    snapshot: one revision however long it streams, and no database read. Load it, then
    follow `/v1/changes?after=<its revision>`.
    """
    changes.require_feed_reader(principal)
    # A follower that saw a key change at revision R in the feed (read from the database)
    # asks with min_revision=R: this replica may not have applied R yet.
    snapshot = runtime.replica.snapshot if min_revision is None else \
        await ready_snapshot(request, runtime, min_revision)
    if snapshot.policy is None:
        raise Unavailable("this replica has not loaded the policy yet; retry shortly")
    # A sync iterator: Starlette runs each step in a worker thread, so the event loop stays free.
    return StreamingResponse(
        transfer.dump(snapshot, only_service_keys=part == "service_keys"), media_type=NDJSON,
        headers={REVISION_HEADER: str(snapshot.revision), "Cache-Control": "no-store"},
    )
