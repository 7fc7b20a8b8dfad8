"""Liveness, readiness and metrics for the load balancer and Prometheus."""

from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import RuntimeDep

router = APIRouter(tags=["operations"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "not ready: see `reason`"}})
def readyz(request: Request, runtime: RuntimeDep, response: Response) -> dict[str, Any]:
    """Ready while this replica may answer checks: policy loaded and staleness within the bound.

    It never queries the database itself (a probe must not hang on a dead link): the
    follower reads the changelog every poll interval and records whether that worked. A
    replica that has lost the database but is still fresh reports `degraded` with the
    reason and stays in the load balancer, since its checks still answer; it turns 503 at
    the same bound at which checks fail closed.
    """
    replica = runtime.replica
    staleness = replica.staleness()
    limit = runtime.settings.max_staleness
    follower = getattr(request.app.state, "follower", None)
    body: dict[str, Any] = {
        "revision": replica.revision,
        "staleness_seconds": round(staleness, 3),
        "max_staleness_seconds": limit,
        "notifications": "listening" if follower is not None and follower.listening else "polling",
    }
    reasons, fatal = [], False
    if replica.last_sync_error is not None:
        reasons.append(replica.last_sync_error)
    if replica.snapshot.policy is None:
        reasons.append("no policy loaded")
        fatal = True
    if staleness > limit:
        reasons.append(f"changelog not read for {staleness:.0f}s (limit {limit:g}s)")
        fatal = True
    body["status"] = "not ready" if fatal else "degraded" if reasons else "ready"
    if reasons:
        body["reason"] = "; ".join(reasons)
    if fatal:
        response.status_code = 503
    return body


@router.get("/metrics", response_class=Response)
def metrics(request: Request, runtime: RuntimeDep) -> Response:
    """Prometheus text format."""
    collected = request.app.state.metrics
    collected.revision.set(runtime.replica.revision)
    collected.staleness.set(runtime.replica.staleness())
    collected.database_up.set(0 if runtime.replica.last_sync_error is not None else 1)
    collected.revision_waiters.set(runtime.replica.waiting())
    return Response(generate_latest(collected.registry), media_type=CONTENT_TYPE_LATEST)
