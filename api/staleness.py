"""Fail closed when this replica has lost the changelog for too long (DESIGN.md invariant 4)."""

from authz.domain.errors import Unavailable
from authz.services.runtime import Runtime


def require_fresh(runtime: Runtime) -> None:
    staleness = runtime.replica.staleness()
    if staleness > runtime.settings.max_staleness:
        raise Unavailable(
            f"this replica has not reached the database for {staleness:.0f}s "
            f"(limit {runtime.settings.max_staleness:.0f}s); refusing to answer from stale data"
        )
