"""Prometheus metrics, in a registry owned by one app (no process-global state)."""

from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

# What `api.fast_path` did with a /v1/check or /v1/check/batch request: `answered` it; `error`
# (an unexpected exception: a bug, logged with its traceback); or why it stepped aside and
# left the request to the FastAPI route.
FastPathOutcome = Literal[
    "answered", "error",
    "query_string", "not_json", "invalid_body", "invalid_header", "unauthenticated", "unknown_service_key",
    "refused", "unavailable", "min_revision_wait",
]
FAST_PATH_OUTCOMES: tuple[FastPathOutcome, ...] = get_args(FastPathOutcome)


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
        self.fast_path = Counter(
            "authz_fast_path_total",
            "/v1/check and /v1/check/batch requests by what the fast path did: answered, error, or why it "
            "left the request to the route",
            ["outcome"], registry=r,
        )
        # Only the sidecar catches up (api.sidecar.FeedKeyCache): it resolves the children, so the
        # service exports the family without series.
        self.key_catch_ups = Counter(
            "authz_sidecar_key_catch_ups_total",
            "Catch-ups with the upstream for a service key the sidecar's replica did not know, by outcome: "
            "applied (revisions applied), current (nothing newer upstream), failed (upstream unreachable or refused)",
            ["outcome"], registry=r,
        )
        # Children resolved once: `labels()` takes a lock and a dict lookup on every call. Every
        # fast-path outcome is exported from the start (at 0), so a rate over it is defined at once.
        self._allowed = self.decisions.labels("allowed")
        self._denied = self.decisions.labels("denied")
        self._fast_path = {outcome: self.fast_path.labels(outcome) for outcome in FAST_PATH_OUTCOMES}
        self._request_children: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    def count_decisions(self, *, allowed: int, denied: int) -> None:
        if allowed:
            self._allowed.inc(allowed)
        if denied:
            self._denied.inc(denied)

    def count_fast_path(self, outcome: FastPathOutcome) -> None:
        self._fast_path[outcome].inc()

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """One HTTP request: its count by method, route template and status, and its latency."""
        key = (method, route, str(status))
        children = self._request_children.get(key)
        if children is None:
            children = (self.requests.labels(*key), self.latency.labels(method, route))
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)
