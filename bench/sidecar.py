"""Issue 17: the snapshot, the sidecar, and its replication lag, at the bench's data set (1M + 1M).

    .venv/bin/python -m bench.run --only sidecar [--quick]

- `GET /v1/snapshot` from a real `authz serve`: seconds to stream it whole, and its size;
- loading that stream into a `Snapshot` (`authz.engine.transfer.load`), in this process;
- `authz sidecar`: spawn → /readyz 200 (snapshot over HTTP included), and its RSS;
- `/v1/check` through the sidecar vs through the central service: wrk, same questions,
  same connections, same run (ratios);
- replication lag: writes through the central service at 100/s, each followed by a check
  at the sidecar with `min_revision` = the write's revision; the lag is from the write's
  response to that check's answer (what read-your-writes through a sidecar costs).
"""

import os
import queue
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from authz.engine import transfer
from authz_client.decisions import stream
from bench import server, wrk
from bench.clients import percentile, user_headers
from bench.dataset import Dataset
from bench.report import Figure, Report
from bench.requests_mix import questions

CONNECTIONS = 16
WRITES_PER_S = 100
WRITERS = 4  # threads sending the paced writes


def create_feed_key(database_url: str) -> str:
    command = [str(server.ROOT / ".venv/bin/authz"), "service-key", "create", "sidecar", "--scope", "check",
               "--scope", "changes:read"]
    done = subprocess.run(command, env=server.authz_env(database_url), cwd=server.ROOT,
                          capture_output=True, text=True, check=True)
    return done.stdout.strip().splitlines()[-1]


def sidecar_serve(upstream: str, key_file: Path, port: int, log_path: Path, **env: str) -> Any:
    command = [sys.executable, "-m", "authz.cli", "sidecar", "--upstream", upstream, "--key-file", str(key_file),
               "--host", "127.0.0.1", "--port", str(port)]
    values = server.authz_env("postgresql+psycopg://nobody@127.0.0.1:1/none", **env)  # no database: never used
    return server.serve(command, values, port, log_path)


def run(report: Report, database_url: str, dataset: Dataset, workdir: Path, *, quick: bool) -> None:
    size = f"{dataset.shape.memberships:,} memberships, {dataset.shape.resources:,} resources"
    seconds = 5.0 if quick else 10.0
    key = create_feed_key(database_url)
    key_file = workdir / "sidecar.key"
    key_file.write_text(key + "\n")
    headers = {"Content-Type": "application/json", "Authorization": "Bearer " + key}
    asked = questions(dataset, 1000, seed=21)
    single = wrk.write_script(workdir / "sidecar-check.lua", [orjson.dumps(q.body()) for q in asked], headers)
    results: dict[str, Any] = {}
    with server.authz_serve(database_url, server.free_port(), workdir / "authz-central.log",
                            AUTHZ_CHANGES_KEEPALIVE="1") as central:
        # 1. the snapshot over HTTP, twice (the second is reported: the first warms the page cache)
        for _ in range(2):
            started = time.perf_counter()
            body = bytearray()
            with httpx.stream("GET", central.url + "/v1/snapshot", headers=headers, timeout=60) as response:
                response.raise_for_status()
                for chunk in response.iter_bytes():
                    body += chunk
            streamed = time.perf_counter() - started
        report.add(Figure("GET /v1/snapshot streamed whole", streamed, "s", limit=5,
                          note=f"{size}; {len(body) / 1e6:.0f} MB"))
        started = time.perf_counter()
        loaded = transfer.load(stream.lines_of([bytes(body)]))
        load_s = time.perf_counter() - started
        counts = loaded.index.counts()
        del loaded, body
        report.add(Figure("snapshot loaded into an index", load_s, "s", limit=10,
                          note=f"{counts['memberships']:,} memberships, {counts['resources']:,} resources"))
        # 2. a sidecar beside it
        with sidecar_serve(central.url, key_file, server.free_port(), workdir / "sidecar.log") as sidecar:
            ready = sidecar.ready_after or float("nan")
            rss = sidecar.rss_mb()
            report.add(Figure("sidecar spawn → /readyz 200 (snapshot over HTTP)", ready, "s", limit=15, note=size))
            report.add(Figure("sidecar RSS", rss, "MB", limit=450, note=size))
            for target in (central, sidecar):
                wrk.run_wrk(target.url + "/v1/check", single, connections=CONNECTIONS, seconds=2)  # warm-up
            # Alternated, twice each, averaged: a drift of the shared machine falls on both sides.
            runs: dict[str, list[wrk.WrkResult]] = {"central": [], "sidecar": []}
            for name, target in [("central", central), ("sidecar", sidecar), ("sidecar", sidecar),
                                 ("central", central)]:
                runs[name].append(wrk.run_wrk(target.url + "/v1/check", single, connections=CONNECTIONS,
                                              seconds=seconds / 2))
            for name, pair in runs.items():
                results[name] = wrk.WrkResult(
                    statistics.fmean(r.requests_per_s for r in pair), statistics.fmean(r.p50_ms for r in pair),
                    statistics.fmean(r.p99_ms for r in pair), sum(r.requests for r in pair),
                    sum(r.errors for r in pair))
            results["lag"] = _lag(central.url, sidecar.url, count=300 if quick else 1000)
    c, s = results["central"], results["sidecar"]
    note = f"{CONNECTIONS} connections, {seconds:.0f} s each; errors: {c.errors + s.errors}"
    report.add(Figure("sidecar /v1/check p50", s.p50_ms, "ms", c.p50_ms, "central /v1/check p50", limit=1.0,
                      note=note))
    report.add(Figure("sidecar /v1/check p99", s.p99_ms, "ms", c.p99_ms, "central /v1/check p99", limit=1.0,
                      note=note))
    report.add(Figure("sidecar /v1/check throughput", s.requests_per_s, "req/s", c.requests_per_s,
                      "central /v1/check", note=note))
    lag = results["lag"]
    report.add(Figure(f"replication lag central write → sidecar decision p99 at {WRITES_PER_S} writes/s",
                      lag["p99_ms"], "ms", limit=100,
                      note=f"p50 {lag['p50_ms']:.1f} ms, max {lag['max_ms']:.1f} ms, {lag['writes']} writes, "
                           f"achieved {lag['writes_per_s']:.0f}/s"))
    report.sections["sidecar"] = {"snapshot_stream_s": streamed, "snapshot_load_s": load_s, "sidecar_ready_s": ready,
                                  "sidecar_rss_mb": rss, "central": c.as_json(), "sidecar": s.as_json(), "lag": lag}


def _lag(central: str, sidecar: str, *, count: int) -> dict[str, float]:
    """Writes through the central service at WRITES_PER_S (a resource registered in a personal
    context each), and for each, from another thread, a check of it at the sidecar with the
    write's revision as `min_revision`: the lag is from the write's response to that answer."""
    interval = 1.0 / WRITES_PER_S
    headers = user_headers("lag-writer")
    tag = os.getpid()
    written: queue.Queue[tuple[int, int, float] | None] = queue.Queue()
    lags: list[float] = []
    failures: list[str] = []

    def check() -> None:
        with httpx.Client(base_url=sidecar, timeout=10) as local:
            while (item := written.get()) is not None:
                n, revision, at = item
                body = {"action": "read", "resource": {"type": "algorithm", "id": f"lag-{tag}-{n}"},
                        "min_revision": revision}
                answer = local.post("/v1/check", json=body, headers=headers)
                if answer.status_code != 200 or answer.json()["allowed"] is not True:
                    failures.append(f"revision {revision}: {answer.status_code} {answer.text[:200]}")
                lags.append((time.perf_counter() - at) * 1000)

    checkers = [threading.Thread(target=check, daemon=True) for _ in range(4)]
    for thread in checkers:
        thread.start()
    started = time.perf_counter()
    errors: list[str] = []

    def write(first: int) -> None:
        # Writer `first` of WRITERS sends writes first, first + WRITERS, ... each at its slot of the schedule,
        # so a slow write (~20 ms on the loaded machine) does not hold up the pace.
        with httpx.Client(base_url=central, timeout=10) as up:
            for n in range(first, count, WRITERS):
                pause = started + n * interval - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                response = up.post("/v1/resources", json={"type": "algorithm", "id": f"lag-{tag}-{n}"},
                                   headers=headers)
                if response.status_code != 201:
                    errors.append(f"write failed: {response.status_code} {response.text[:200]}")
                    return
                written.put((n, int(response.headers["X-Authz-Revision"]), time.perf_counter()))

    writers = [threading.Thread(target=write, args=(k,), daemon=True) for k in range(WRITERS)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    if errors:
        raise RuntimeError(errors[0])
    elapsed = time.perf_counter() - started
    for _ in checkers:
        written.put(None)
    for thread in checkers:
        thread.join(timeout=30)
    if failures:
        raise RuntimeError(f"the sidecar missed {len(failures)} writes: {failures[:3]}")
    return {"writes": count, "writes_per_s": count / elapsed, "p50_ms": percentile(lags, 0.5),
            "p99_ms": percentile(lags, 0.99), "max_ms": max(lags), "mean_ms": statistics.fmean(lags)}
