"""Figure 3: member writes at 1M memberships, end to end through the API (SQLite and PostgreSQL).

Each round removes a non-owner member of an org (DELETE .../members/{user}) and adds it
back (an invitation, then its acceptance: the write that makes the membership), so the
database stays at its size. Calls are sequential: this is write latency, not throughput.
"""

import random
from pathlib import Path

from bench import server
from bench.clients import MemberWriter, percentile
from bench.dataset import Dataset, org_id, user_id
from bench.report import Figure, Report


def member_rounds(dataset: Dataset, count: int, seed: int) -> list[tuple[str, str, str]]:
    """(owner, org, member) of `count` distinct orgs, each member a non-owner."""
    rng = random.Random(seed)
    shape = dataset.shape
    picked: list[tuple[str, str, str]] = []
    for i in rng.sample(range(shape.orgs), min(count, shape.orgs)):
        for j in range(1, shape.members_per_org):
            if dataset.role(i, j) != "owner":
                picked.append((dataset.owner_of(i), org_id(i), user_id(dataset.member(i, j))))
                break
    return picked


def measure(base_url: str, database_url: str, rounds: list[tuple[str, str, str]]) -> dict[str, list[float]]:
    writer = MemberWriter(base_url, database_url)
    try:
        for owner, org, member in rounds[:5]:  # warm-up: connections, caches
            writer.remove(owner, org, member)
            writer.add(owner, org, member)
        writer.timings = {kind: [] for kind in writer.timings}
        for owner, org, member in rounds[5:]:
            writer.remove(owner, org, member)
            writer.add(owner, org, member)
        return writer.timings
    finally:
        writer.close()


def run(report: Report, label: str, database_url: str, dataset: Dataset, workdir: Path, *, quick: bool,
        seed: int = 3) -> None:
    rounds = member_rounds(dataset, 65 if quick else 205, seed)
    port = server.free_port()
    with server.authz_serve(database_url, port, workdir / f"authz-writes-{label}.log") as authz:
        timings = measure(authz.url, database_url, rounds)
    size = f"{dataset.shape.memberships:,} memberships"
    for kind, name in (("accept", "add member (invitation accepted)"), ("remove", "remove member")):
        samples = timings[kind]
        report.add(Figure(f"{label}: {name} p50", percentile(samples, 0.5), "ms", limit=10, note=size))
        report.add(Figure(f"{label}: {name} p99", percentile(samples, 0.99), "ms", limit=50))
    report.sections[f"writes_{label}"] = {
        kind: {"n": len(v), "p50_ms": percentile(v, 0.5), "p99_ms": percentile(v, 0.99), "max_ms": max(v)}
        for kind, v in timings.items()
    }
