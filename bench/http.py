"""Figure 2: `POST /v1/check` and `/v1/check/batch` through a real `authz serve`, driven by wrk.

The baseline is the no-op FastAPI endpoint of `bench.noop_app`, served by the same
uvicorn settings (`authz.cli.UVICORN_OPTIONS`) in the same run, at the same 16
connections; the no-op runs before and after authz and its mean is the baseline, so a
drift of the shared machine during the run falls on both sides.
"""

import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench import server, wrk
from bench.dataset import Dataset
from bench.report import Figure, Report
from bench.requests_mix import questions

CONNECTIONS = 16
BATCH = 100
WAITING = 500


def create_service_key(database_url: str, name: str = "bench") -> str:
    """A `check` key made by the admin's command line (the service path, audited)."""
    command = [str(server.ROOT / ".venv/bin/authz"), "service-key", "create", name, "--scope", "check"]
    done = subprocess.run(command, env=server.authz_env(database_url), cwd=server.ROOT,
                          capture_output=True, text=True, check=True)
    return done.stdout.strip().splitlines()[-1]


def run(report: Report, database_url: str, dataset: Dataset, workdir: Path, *, quick: bool) -> None:
    seconds = 5.0 if quick else 10.0
    key = create_service_key(database_url)
    headers = {"Content-Type": "application/json", "Authorization": "Bearer " + key}
    asked = questions(dataset, 1000, seed=21)
    single = wrk.write_script(workdir / "check.lua", [orjson.dumps(q.body()) for q in asked], headers)
    batches = [orjson.dumps({"checks": [q.body() for q in asked[n:n + BATCH]]}) for n in range(0, len(asked), BATCH)]
    batch = wrk.write_script(workdir / "batch.lua", batches, headers)

    results: dict[str, Any] = {}
    port = server.free_port()
    with server.noop_serve(port, workdir / "noop.log") as noop:
        wrk.run_wrk(noop.url + "/v1/check", single, connections=CONNECTIONS, seconds=1)  # warm-up
        results["noop_before"] = wrk.run_wrk(noop.url + "/v1/check", single, connections=CONNECTIONS, seconds=seconds)
        results["noop_floor"] = wrk.run_wrk(noop.url + "/v1/check-floor", single, connections=CONNECTIONS,
                                            seconds=seconds)
    port = server.free_port()
    # Waits long enough that the waiting checks stay parked while the other endpoint is timed.
    with server.authz_serve(database_url, port, workdir / "authz-http.log", AUTHZ_MIN_REVISION_WAIT="30") as authz:
        _sanity(authz.url, headers, asked)
        wrk.run_wrk(authz.url + "/v1/check", single, connections=CONNECTIONS, seconds=2)  # warm-up
        results["check"] = wrk.run_wrk(authz.url + "/v1/check", single, connections=CONNECTIONS, seconds=seconds)
        results["batch"] = wrk.run_wrk(authz.url + "/v1/check/batch", batch, connections=CONNECTIONS, seconds=seconds)
        results["decisions_metric"] = _decisions_counted(authz.url)
        results["waiting"] = _while_waiting(authz.url, headers, quick=quick)
    port = server.free_port()
    with server.noop_serve(port, workdir / "noop.log") as noop:
        wrk.run_wrk(noop.url + "/v1/check", single, connections=CONNECTIONS, seconds=1)
        results["noop_after"] = wrk.run_wrk(noop.url + "/v1/check", single, connections=CONNECTIONS, seconds=seconds)

    noop_rps = (results["noop_before"].requests_per_s + results["noop_after"].requests_per_s) / 2
    noop_p99 = (results["noop_before"].p99_ms + results["noop_after"].p99_ms) / 2
    check = results["check"]
    errors = sum(r.errors for r in results.values() if isinstance(r, wrk.WrkResult))
    note = f"{CONNECTIONS} connections, {seconds:.0f} s each; non-2xx or socket errors: {errors}"
    report.add(Figure("HTTP /v1/check throughput", check.requests_per_s, "req/s", noop_rps,
                      "no-op FastAPI endpoint", limit=0.85, at_least=True, note=note))
    report.add(Figure("HTTP /v1/check p99", check.p99_ms, "ms", noop_p99, "no-op FastAPI endpoint p99", limit=1.2))
    floor = results["noop_floor"]
    report.add(Figure("HTTP /v1/check throughput vs pre-serialized no-op", check.requests_per_s, "req/s",
                      floor.requests_per_s, "no-op returning bytes",
                      note="reported: the floor under any FastAPI route"))
    report.add(Figure("HTTP /v1/check/batch decisions/s", results["batch"].requests_per_s * BATCH, "decisions/s",
                      limit=100_000, at_least=True, note=f"{BATCH} checks per request"))
    waiting = results["waiting"]
    report.add(Figure(f"HTTP /v1/list-subjects p50 while {WAITING} checks wait for a revision",
                      waiting["during_p50_ms"], "ms", waiting["alone_p50_ms"], "the same alone", limit=1.5,
                      note=f"{waiting['requests']} requests each way; checks still waiting at the end: "
                           f"{waiting['still_waiting']}"))
    report.sections["http"] = {name: r.as_json() if isinstance(r, wrk.WrkResult) else r for name, r in results.items()}


def _sanity(url: str, headers: dict[str, str], asked: list[Any]) -> None:
    """The server answers the bench's questions with 200 and the documented shape."""
    response = httpx.post(url + "/v1/check", content=orjson.dumps(asked[0].body()), headers=headers)
    body = response.json()
    if response.status_code != 200 or set(body) != {"allowed", "revision"}:
        raise RuntimeError(f"unexpected /v1/check answer: {response.status_code} {body}")


def _decisions_counted(url: str) -> dict[str, float]:
    """authz_decisions_total by outcome, from /metrics (the counts must survive the fast path)."""
    text = httpx.get(url + "/metrics").text
    counted = {}
    for line in text.splitlines():
        if line.startswith("authz_decisions_total{"):
            outcome = line.split('outcome="', 1)[1].split('"', 1)[0]
            counted[outcome] = float(line.rsplit(" ", 1)[1])
    return counted


def _while_waiting(url: str, headers: dict[str, str], *, quick: bool) -> dict[str, Any]:
    """Latency of another endpoint alone, then while WAITING checks wait for a revision that never comes.

    The waits park futures on the server's event loop (no thread each): the other endpoint
    should not notice them. They come from a process of their own (`bench.waiters`); the
    server waits up to 30 s (AUTHZ_MIN_REVISION_WAIT), longer than the timing takes.
    """
    count = 100 if quick else 300
    other = orjson.dumps({"action": "read", "resource": {"type": "algorithm", "id": "x"}})

    def timed() -> list[float]:
        samples = []
        with httpx.Client(base_url=url, headers=headers) as http:
            for _ in range(count):
                started = time.perf_counter()
                response = http.post("/v1/list-subjects", content=other)
                samples.append((time.perf_counter() - started) * 1000)
                if response.status_code != 200:
                    raise RuntimeError(f"list-subjects answered {response.status_code}: {response.text}")
        return samples

    alone = timed()
    key = headers["Authorization"].removeprefix("Bearer ")
    waiters = subprocess.Popen([sys.executable, "-m", "bench.waiters", url, key, str(WAITING)], cwd=server.ROOT)
    try:
        _wait_for_parked(url, WAITING)
        during = timed()
        parked_at_end = _parked(url)
    finally:
        waiters.kill()
        waiters.wait()
    return {"requests": count, "alone_p50_ms": statistics.median(alone), "during_p50_ms": statistics.median(during),
            "still_waiting": parked_at_end}


def _parked(url: str) -> int:
    """authz_revision_waiters from /metrics."""
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith("authz_revision_waiters "):
            return int(float(line.split()[1]))
    return -1


def _wait_for_parked(url: str, count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while _parked(url) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {_parked(url)} of {count} checks are waiting")
        time.sleep(0.2)
