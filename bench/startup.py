"""Figure 4: start-up at 1M memberships on PostgreSQL: spawn → `/readyz` 200, and RSS after the load.

Also `authz serve --workers 2`: two processes, each loading the state and following the
changelog (a write through one must show up in the revision both report).
"""

import time
from pathlib import Path

import httpx

from bench import server
from bench.clients import MemberWriter
from bench.dataset import Dataset
from bench.report import Figure, Report
from bench.writes import member_rounds


def run(report: Report, database_url: str, dataset: Dataset, workdir: Path) -> None:
    size = f"{dataset.shape.memberships:,} memberships, {dataset.shape.resources:,} resources"
    port = server.free_port()
    with server.authz_serve(database_url, port, workdir / "authz-startup.log") as authz:
        ready = authz.ready_after or float("nan")
        rss = authz.rss_mb()
    report.add(Figure("PostgreSQL start-up to /readyz 200", ready, "s", limit=10, note=size))
    report.add(Figure("RSS after load (one process)", rss, "MB", limit=600, note=size))

    port = server.free_port()
    with server.authz_serve(database_url, port, workdir / "authz-workers.log", workers=2) as authz:
        workers_ready = authz.ready_after or float("nan")
        processes = authz.pids()
        total_rss = authz.rss_mb()
        followed = _both_follow(authz.url, database_url, dataset)
    report.add(Figure("--workers 2: start-up to /readyz 200", workers_ready, "s",
                      note=f"{len(processes)} processes (supervisor and workers), {total_rss:.0f} MB in all; "
                           f"a write seen by every worker: {followed}"))
    report.sections["startup"] = {"ready_s": ready, "rss_mb": rss, "workers_ready_s": workers_ready,
                                  "workers_total_rss_mb": total_rss, "processes": len(processes),
                                  "write_followed_by_all_workers": followed}


def _both_follow(url: str, database_url: str, dataset: Dataset) -> bool:
    """After one write, every answer of /readyz (whichever worker serves it) reaches its revision."""
    owner, org, member = member_rounds(dataset, 1, seed=99)[0]
    writer = MemberWriter(url, database_url)
    try:
        writer.remove(owner, org, member)
        writer.add(owner, org, member)
        target = httpx.get(url + "/readyz").json()["revision"]
    finally:
        writer.close()
    deadline = time.monotonic() + 10
    seen: set[int] = set()
    with httpx.Client(base_url=url) as client:
        while time.monotonic() < deadline:
            revisions = {client.get("/readyz").json()["revision"] for _ in range(20)}
            seen |= revisions
            if min(revisions) >= target:
                return True
            time.sleep(0.2)
    return False
