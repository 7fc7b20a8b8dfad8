"""Issue 17 item 4: `authz serve --workers N` loads once and forks; memory and throughput of N=1 and N=2.

Memory is the sum of PSS (proportional set size: a page shared by k processes counts 1/k
in each) over the supervisor and its workers, so pages the workers share copy-on-write
count once; RSS, which counts a shared page in every process, is reported beside it.
Both right after start-up and again after the throughput run (requests touch reference
counts, and a touched page becomes the worker's own).
"""

from pathlib import Path
from typing import Any

import orjson

from bench import server, wrk
from bench.dataset import Dataset
from bench.http import create_service_key
from bench.report import Figure, Report
from bench.requests_mix import questions

CONNECTIONS = 16


def pss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run(report: Report, database_url: str, dataset: Dataset, workdir: Path, *, quick: bool) -> None:
    size = f"{dataset.shape.memberships:,} memberships, {dataset.shape.resources:,} resources"
    seconds = 5.0 if quick else 10.0
    key = create_service_key(database_url, "workers")
    headers = {"Content-Type": "application/json", "Authorization": "Bearer " + key}
    single = wrk.write_script(workdir / "workers-check.lua",
                              [orjson.dumps(q.body()) for q in questions(dataset, 1000, seed=23)], headers)
    found: dict[int, dict[str, Any]] = {}
    for workers in (1, 2):
        with server.authz_serve(database_url, server.free_port(), workdir / f"authz-workers-{workers}.log",
                                workers=workers) as authz:
            pids = authz.pids()
            memory = {"pss_mb": sum(pss_mb(p) for p in pids), "rss_mb": authz.rss_mb(), "processes": len(pids),
                      "ready_s": authz.ready_after}
            wrk.run_wrk(authz.url + "/v1/check", single, connections=CONNECTIONS, seconds=2)  # warm-up
            result = wrk.run_wrk(authz.url + "/v1/check", single, connections=CONNECTIONS, seconds=seconds)
            memory["pss_after_mb"] = sum(pss_mb(p) for p in authz.pids())
            memory["rss_after_mb"] = authz.rss_mb()
            found[workers] = {**memory, **result.as_json()}
    one, two = found[1], found[2]
    note = f"{size}; RSS {two['rss_mb']:.0f} MB vs {one['rss_mb']:.0f} MB (shared pages counted in each process)"
    report.add(Figure("--workers 2 total PSS after start-up", two["pss_mb"], "MB", one["pss_mb"],
                      "--workers 1 PSS", limit=1.3, note=note))
    report.add(Figure("--workers 2 total PSS after the throughput run", two["pss_after_mb"], "MB",
                      one["pss_after_mb"], "--workers 1 PSS after the same", note="reported: touched pages are copied"))
    report.add(Figure("--workers 2 /v1/check throughput", two["requests_per_s"], "req/s", one["requests_per_s"],
                      "--workers 1", note=f"{CONNECTIONS} connections, {seconds:.0f} s; the machine has "
                                          "2 cores shared with wrk and others"))
    report.add(Figure("--workers 2 start-up to /readyz 200", two["ready_s"] or float("nan"), "s",
                      one["ready_s"] or float("nan"), "--workers 1"))
    report.sections["workers"] = {str(n): values for n, values in found.items()}
