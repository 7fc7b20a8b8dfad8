"""Liveness, readiness and metrics for the load balancer and Prometheus."""

from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from api.deps import RuntimeDep

router = APIRouter(tags=["operations"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "not ready: see `reason`"}})
def readyz(runtime: RuntimeDep, response: Response) -> dict[str, Any]:
    """Ready when the database answers, the policy is loaded and the replica is fresh enough."""
    replica = runtime.replica
    staleness = replica.staleness()
    body: dict[str, Any] = {"revision": replica.revision, "staleness_seconds": round(staleness, 3)}
    reasons = []
    try:
        with runtime.database.session() as session:
            session.execute(text("SELECT 1"))
    except Exception:  # noqa: BLE001 - any failure means the database is not reachable
        reasons.append("database unreachable")
    if replica.policy is None:
        reasons.append("no policy loaded")
    if staleness > runtime.settings.max_staleness:
        reasons.append(f"changelog not read for {staleness:.0f}s")
    body["status"] = "ready" if not reasons else "not ready"
    if reasons:
        body["reason"] = "; ".join(reasons)
        response.status_code = 503
    return body


@router.get("/metrics", response_class=Response)
def metrics(request: Request, runtime: RuntimeDep) -> Response:
    """Prometheus text format."""
    collected = request.app.state.metrics
    collected.revision.set(runtime.replica.revision)
    collected.staleness.set(runtime.replica.staleness())
    return Response(generate_latest(collected.registry), media_type=CONTENT_TYPE_LATEST)
