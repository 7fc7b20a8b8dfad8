"""Figure 1: the in-process check (`DecisionIndex.check`, no HTTP) against its two baselines.

- a plain dict lookup `(user, org) → role` over the same questions: the physical floor
  of "a few dict lookups" in CPython (each call timed the same way, so the timer's own
  cost is in both);
- pycasbin `enforce()` on the same rules and questions (the resource's context found in a
  dict first, as `explain` does), warmed up first: its first check of an org is far slower.

Calls are timed one by one with perf_counter_ns, in alternating rounds, so noise from
the shared machine falls on both sides.
"""

import gc
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import casbin

from authz.engine.replica import Replica
from authz.policy.model import casbin_request, domain_matches
from authz.store.database import Database
from authz_client.decisions.index import DecisionIndex
from bench.bulk_load import ROOT
from bench.dataset import Dataset, org_id, user_id
from bench.report import Figure, Report
from bench.requests_mix import KINDS, Question, questions

ROUNDS = 5


def run(report: Report, database_url: str, dataset: Dataset, *, quick: bool) -> Replica:
    """Measure and report figure 1; returns the loaded replica (for memory figures)."""
    database = Database(database_url)
    replica = Replica()
    started = time.perf_counter()
    replica.load(database)
    load_seconds = time.perf_counter() - started
    database.dispose()
    index = replica.snapshot.index
    asked = questions(dataset, 20_000 if quick else 100_000)

    roles = _baseline_table(dataset)
    def lookup(user: str, org: str) -> str | None:
        return roles.get((user, org))

    check = index.check
    check_args = [(q.user, q.action, q.resource_type, q.resource_id, None) for q in asked]
    lookup_args = [(q.user, q.org) for q in asked]
    check_ns: list[int] = []
    lookup_ns: list[int] = []
    for _ in range(ROUNDS):
        lookup_ns += _time_calls(lookup, lookup_args)
        check_ns += _time_calls(check, check_args)
    answers = [check(*args) for args in check_args]
    by_kind = {kind: sum(1 for q, a in zip(asked, answers, strict=True) if q.kind == kind and a) for kind in KINDS}

    check_p50, check_p99 = _percentiles(check_ns)
    base_p50, base_p99 = _percentiles(lookup_ns)
    report.add(Figure("in-process check p50", check_p50, "µs", base_p50, "dict lookup p50", limit=3))
    report.add(Figure("in-process check p99", check_p99, "µs", base_p99, "dict lookup p99", limit=10))

    casbin = _pycasbin(dataset, index, asked[: 400 if not quick else 800], check)
    report.add(Figure(
        "in-process check mean vs pycasbin enforce() mean", casbin["check_mean_us"], "µs",
        casbin["casbin_mean_us"], "pycasbin enforce() mean", limit=1 / 50,
        note=f"pycasbin {casbin['speedup']:.0f}× slower; "
             f"{casbin['mismatches']} disagreements in {casbin['questions']} questions",
    ))
    _snapshots(report, index, dataset, quick=quick)
    report.sections["in_process"] = {
        "shape": dataset.shape.label(),
        "questions": len(asked),
        "allowed_by_kind": by_kind,
        "replica_load_s": round(load_seconds, 2),
        "check_us": {"p50": check_p50, "p99": check_p99, "mean": statistics.fmean(check_ns) / 1000},
        "dict_lookup_us": {"p50": base_p50, "p99": base_p99, "mean": statistics.fmean(lookup_ns) / 1000},
        "pycasbin": casbin,
    }
    return replica


def _baseline_table(dataset: Dataset) -> dict[tuple[str, str], str]:
    table: dict[tuple[str, str], str] = {}
    for i in range(dataset.shape.orgs):
        oid = org_id(i)
        for j in range(dataset.shape.members_per_org):
            table[(user_id(dataset.member(i, j)), oid)] = dataset.role(i, j)
    return table


def _time_calls(fn: Callable[..., Any], calls: Sequence[tuple[Any, ...]]) -> list[int]:
    clock = time.perf_counter_ns
    out: list[int] = []
    append = out.append
    gc.disable()
    try:
        for args in calls:
            started = clock()
            fn(*args)
            append(clock() - started)
    finally:
        gc.enable()
    return out


class _RulesAdapter(casbin.persist.Adapter):  # type: ignore[misc]
    """Hands pycasbin its rules the way a database adapter's `load_policy` does."""

    def __init__(self) -> None:
        self.rules: list[tuple[str, ...]] = []

    def load_policy(self, model: Any) -> None:
        for ptype, *values in self.rules:
            model.model[ptype[0]][ptype].policy.append(list(values))


def _loaded_enforcer(rules: list[tuple[str, ...]]) -> casbin.Enforcer:
    """An enforcer as `authz.policy.model.build_enforcer` builds it, loaded with `load_policy()`.

    build_enforcer's add_grouping_policies checks each rule against the ones before it
    (minutes at 1M rules); loading through an adapter is pycasbin's own fast path.
    """
    adapter = _RulesAdapter()
    enforcer = casbin.Enforcer(str(ROOT / "authz" / "policy" / "policy_model.conf"), adapter)
    enforcer.add_named_domain_matching_func("g", domain_matches)
    adapter.rules = rules
    enforcer.load_policy()
    adapter.rules = []
    return enforcer


def _percentiles(samples: list[int]) -> tuple[float, float]:
    ordered = sorted(samples)
    return ordered[len(ordered) // 2] / 1000, ordered[int(len(ordered) * 0.99)] / 1000


def _pycasbin(dataset: Dataset, index: Any, asked: list[Question], check: Callable[..., bool]) -> dict[str, Any]:
    """pycasbin over every rule of the dataset, asked the same questions (after a warm-up pass)."""
    from authz.policy.loader import load_policy_dir

    document = load_policy_dir(ROOT / "policies")
    rules: list[tuple[str, ...]] = list(document.rules())
    for i in range(dataset.shape.orgs):
        oid = org_id(i)
        rules += [("g", "user:" + user_id(dataset.member(i, j)), dataset.role(i, j), oid)
                  for j in range(dataset.shape.members_per_org)]
    for n in range(dataset.shape.resource_roles):
        resource_type, rid, uid, role = dataset.resource_role(n)
        rules.append(("g", "user:" + uid, role, f"{resource_type}:{rid}"))
    started = time.perf_counter()
    enforcer = _loaded_enforcer(rules)
    build_seconds = time.perf_counter() - started
    del rules
    contexts = index.context_of

    def enforce(q: Question) -> bool:
        context = contexts(q.resource_type, q.resource_id)
        if context is None:
            return False
        return bool(enforcer.enforce(*casbin_request(  # noqa: F821 - deleted only after the last call
            "user:" + q.user, context, q.resource_type, f"{q.resource_type}:{q.resource_id}", q.action)))

    started = time.perf_counter()
    for q in asked:  # warm-up: pycasbin builds each domain's role links on first use
        enforce(q)
    warm_seconds = time.perf_counter() - started
    casbin_ns = _time_calls(enforce, [(q,) for q in asked])
    check_args = [(q.user, q.action, q.resource_type, q.resource_id, None) for q in asked]
    check_ns = [ns for _ in range(20) for ns in _time_calls(check, check_args)]
    mismatches = sum(1 for q in asked if enforce(q) != check(q.user, q.action, q.resource_type, q.resource_id, None))
    casbin_mean = statistics.fmean(casbin_ns) / 1000
    check_mean = statistics.fmean(check_ns) / 1000
    del enforcer  # free pycasbin's memory before the next figure (the closure is not called again)
    gc.collect()
    return {
        "questions": len(asked), "build_s": round(build_seconds, 1), "warm_up_s": round(warm_seconds, 1),
        "casbin_mean_us": casbin_mean, "casbin_p50_us": _percentiles(casbin_ns)[0],
        "check_mean_us": check_mean, "speedup": casbin_mean / check_mean, "mismatches": mismatches,
    }


def _snapshots(report: Report, index: DecisionIndex, dataset: Dataset, *, quick: bool) -> None:
    """Copy-on-write figures: one delta applied to the loaded index, and one listing page of 1M in one context.

    A delta is a role change (remove then add) of one membership, applied as a replica
    applies it: a new snapshot from the previous one (chained, so shards get shared and
    copied as in service).
    """
    org, user = org_id(0), user_id(0)
    current = index
    delta_ns: list[int] = []
    for n in range(200 if quick else 1000):
        old, new = ("viewer", "maintainer") if n % 2 else ("maintainer", "viewer")
        delta = [{"op": "remove_rule", "rule": ["g", "user:" + user, old, org]},
                 {"op": "add_rule", "rule": ["g", "user:" + user, new, org]}]
        started = time.perf_counter_ns()
        current = current.apply(delta)
        delta_ns.append(time.perf_counter_ns() - started)
    p50, p99 = _percentiles(delta_ns)
    report.add(Figure(f"apply one delta (role change) at {dataset.shape.label()} p50", p50, "µs", limit=1000))
    report.add(Figure(f"apply one delta (role change) at {dataset.shape.label()} p99", p99, "µs", limit=5000))

    resources = 100_000 if quick else 1_000_000
    editor = DecisionIndex.build()
    context = "org_" + "f" * 24
    editor.add_rule(("p", "viewer", "*", "algorithm", "read"))
    editor.add_rule(("g", "user:reader", "viewer", context))
    editor.load_grouped_resources([(context, "\x1f".join(f"algorithm:a{n:07d}" for n in range(resources)))])
    big = editor.finish()
    starts = [f"a{n:07d}" for n in range(0, resources - 1000, max(1, resources // 200))]
    page_ns: list[int] = []
    for after in starts:
        started = time.perf_counter_ns()
        page = big.list_resources("reader", "read", "algorithm", None, after, 1000)
        page_ns.append(time.perf_counter_ns() - started)
        assert len(page) == 1000 and page[0] > after
    p50, p99 = _percentiles(page_ns)
    report.add(Figure(f"list-resources page of 1000 of {resources:,} in one context p50", p50 / 1000, "ms", limit=5))
    report.add(Figure(f"list-resources page of 1000 of {resources:,} in one context p99", p99 / 1000, "ms", limit=10))
