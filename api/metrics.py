"""Prometheus metrics, in a registry owned by one app (no process-global state)."""

from dataclasses import dataclass, field

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
