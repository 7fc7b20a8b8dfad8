"""Prometheus metrics, in a registry owned by one app (no process-global state)."""

from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter("authz_http_requests_total", "HTTP requests", ["method", "route", "status"], registry=r)
        self.latency = Histogram(
            "authz_http_request_duration_seconds", "HTTP request latency", ["method", "route"],
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.decisions = Counter("authz_decisions_total", "Decisions answered", ["outcome"], registry=r)
        self.revision = Gauge("authz_revision", "The revision this replica has applied", registry=r)
        self.staleness = Gauge(
            "authz_staleness_seconds", "Seconds since this replica last read the changelog", registry=r
        )
        self.database_up = Gauge(
            "authz_database_up", "1 if the last read of the changelog succeeded, else 0", registry=r
        )
        self.outsider_refusals = Counter(
            "authz_outsider_refusals_total",
            "Requests refused because the caller has no role or scope where the target lives (not in any audit log)",
            ["route"], registry=r,
        )
        self.revision_waiters = Gauge(
            "authz_revision_waiters", "Requests waiting for this replica to reach their min_revision", registry=r
        )
        # Children resolved once: `labels()` takes a lock and a dict lookup on every call.
        self._allowed = self.decisions.labels("allowed")
        self._denied = self.decisions.labels("denied")
        self._request_children: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    def count_decisions(self, *, allowed: int, denied: int) -> None:
        if allowed:
            self._allowed.inc(allowed)
        if denied:
            self._denied.inc(denied)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """One HTTP request: its count by method, route template and status, and its latency."""
        key = (method, route, str(status))
        children = self._request_children.get(key)
        if children is None:
            children = (self.requests.labels(*key), self.latency.labels(method, route))
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)
