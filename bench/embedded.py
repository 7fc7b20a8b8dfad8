"""Issue 17: the client's embedded mode (`authz_client.LocalDecisions`) against its two baselines, same run.

    .venv/bin/python -m bench.run --only embedded [--quick]

A real `authz serve` on the bench's data; a `LocalDecisions` in this process loads its
snapshot and follows its feed. Then, over the same mixed questions:

- `LocalDecisions.check()` (freshness test, resource parsing, the index's lookups) vs a
  plain dict lookup `(user, org) → role`: each call timed one by one with perf_counter_ns,
  in alternating rounds, so noise from the shared machine falls on both sides;
- vs the same question asked over loopback HTTP with `AuthzClient.check` (one keep-alive
  connection, one request at a time): what the application would do without it.
"""

import gc
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from authz_client import AuthzClient, LocalDecisions
from bench import server
from bench.dataset import Dataset, org_id, user_id
from bench.inproc import _percentiles, _time_calls
from bench.report import Figure, Report
from bench.requests_mix import KINDS, questions
from bench.sidecar import create_feed_key

ROUNDS = 5


def run(report: Report, database_url: str, dataset: Dataset, workdir: Path, *, quick: bool) -> None:
    size = f"{dataset.shape.memberships:,} memberships, {dataset.shape.resources:,} resources"
    key = create_feed_key(database_url)
    asked = questions(dataset, 20_000 if quick else 100_000, seed=8)
    over_http = asked[: 500 if quick else 2000]
    roles: dict[tuple[str, str], str] = {}
    for i in range(dataset.shape.orgs):
        for j in range(dataset.shape.members_per_org):
            roles[(user_id(dataset.member(i, j)), org_id(i))] = dataset.role(i, j)

    def lookup(user: str, org: str) -> str | None:
        return roles.get((user, org))

    with server.authz_serve(database_url, server.free_port(), workdir / "authz-embedded.log") as central:
        started = time.perf_counter()
        local = LocalDecisions(central.url, key, freeze_gc=True)  # the bench process owns its heap
        local.start(wait=120)
        load_s = time.perf_counter() - started
        try:
            check = local.check
            check_calls = [(q.action, (q.resource_type, q.resource_id), q.user) for q in asked]
            lookup_calls = [(q.user, q.org) for q in asked]
            local_ns: list[int] = []
            lookup_ns: list[int] = []
            for _ in range(ROUNDS):
                lookup_ns += _time_calls(lookup, lookup_calls)
                local_ns += _time_local(check, check_calls)
            answers = [check(a, r, subject=s) for a, r, s in check_calls]
            with AuthzClient(central.url, key) as client:
                expected = [client.check(q.action, (q.resource_type, q.resource_id), subject=q.user).allowed
                            for q in over_http[:200]]  # also the warm-up of the connection
                http_ns = _time_http(client, over_http)
        finally:
            local.stop()
    disagreements = sum(1 for a, b in zip(answers, expected, strict=False) if a != b)
    if disagreements:
        raise RuntimeError(f"the embedded index disagrees with the service on {disagreements} of {len(expected)}")
    by_kind = {kind: sum(1 for q, a in zip(asked, answers, strict=True) if q.kind == kind and a) for kind in KINDS}
    local_p50, local_p99 = _percentiles(local_ns)
    lookup_p50, lookup_p99 = _percentiles(lookup_ns)
    http_p50, http_p99 = _percentiles(http_ns)
    report.add(Figure("embedded check() p50", local_p50, "µs", lookup_p50, "dict lookup p50", limit=3,
                      note=f"LocalDecisions at {size}; {len(asked):,} questions × {ROUNDS} rounds"))
    report.add(Figure("embedded check() p99", local_p99, "µs", lookup_p99, "dict lookup p99"))
    report.add(Figure("embedded check() p50 vs loopback HTTP", local_p50, "µs", http_p50,
                      "AuthzClient.check over loopback HTTP p50", limit=1 / 200,
                      note=f"HTTP: one keep-alive connection, {len(over_http)} sequential checks, p99 "
                           f"{http_p99:.0f} µs; {http_p50 / local_p50:.0f}× faster"))
    report.add(Figure("embedded snapshot load (LocalDecisions.start)", load_s, "s", note=size))
    report.sections["embedded"] = {
        "shape": dataset.shape.label(), "questions": len(asked), "allowed_by_kind": by_kind, "load_s": load_s,
        "check_us": {"p50": local_p50, "p99": local_p99, "mean": statistics.fmean(local_ns) / 1000},
        "dict_lookup_us": {"p50": lookup_p50, "p99": lookup_p99, "mean": statistics.fmean(lookup_ns) / 1000},
        "http_check_us": {"p50": http_p50, "p99": http_p99, "mean": statistics.fmean(http_ns) / 1000},
    }


def _time_local(check: Callable[..., bool], calls: Sequence[tuple[str, tuple[str, str], str]]) -> list[int]:
    """As `_time_calls`, with `subject` passed by keyword as an application would."""
    clock = time.perf_counter_ns
    out: list[int] = []
    append = out.append
    gc.disable()
    try:
        for action, resource, subject in calls:
            started = clock()
            check(action, resource, subject=subject)
            append(clock() - started)
    finally:
        gc.enable()
    return out


def _time_http(client: AuthzClient, asked: Sequence[Any]) -> list[int]:
    clock = time.perf_counter_ns
    out: list[int] = []
    for q in asked:
        started = clock()
        client.check(q.action, (q.resource_type, q.resource_id), subject=q.user)
        out.append(clock() - started)
    return out
