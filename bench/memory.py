"""Figure 5: memory per 100k memberships, and no growth over a mixed read/write run.

Per 100k: a fresh process loads only the index (bench.memory_probe) from a database with
only memberships, and the RSS it adds is divided out. Growth: a real `authz serve` on the
full database takes wrk's checks and, at the same time, member writes through the API;
its RSS at the end is compared with its RSS after a warm-up of the same mix.
"""

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson

from bench import server, wrk
from bench.bulk_load import bulk_load
from bench.dataset import Dataset, Shape
from bench.http import create_service_key
from bench.report import Figure, Report
from bench.requests_mix import questions
from bench.writes import measure, member_rounds


def per_100k(report: Report, workdir: Path, shape: Shape) -> None:
    memberships_only = Shape(orgs=shape.orgs, members_per_org=shape.members_per_org, resources=0,
                             resource_roles=0, seed=shape.seed)
    url = f"sqlite:///{workdir / 'memberships-only.db'}"
    bulk_load(url, Dataset(memberships_only))
    probe = subprocess.run([sys.executable, "-m", "bench.memory_probe", url], cwd=server.ROOT,
                           capture_output=True, text=True, check=True)
    found = json.loads(probe.stdout.strip().splitlines()[-1])
    added = found["after_mb"] - found["before_mb"]
    value = added / (found["memberships"] / 100_000)
    report.add(Figure("RSS per 100k memberships (index only)", value, "MB",
                      note=f"{found['memberships']:,} memberships added {added:.0f} MB to a fresh process"))
    report.sections["memory_per_100k"] = found


def growth(report: Report, database_url: str, dataset: Dataset, workdir: Path, *, quick: bool) -> None:
    seconds = 15 if quick else 60
    key = create_service_key(database_url, "bench-memory")
    headers = {"Content-Type": "application/json", "Authorization": "Bearer " + key}
    script = wrk.write_script(workdir / "memory.lua", [orjson.dumps(q.body()) for q in questions(dataset, 1000, 5)],
                              headers)
    rounds = member_rounds(dataset, 10_000, seed=7)
    port = server.free_port()
    with server.authz_serve(database_url, port, workdir / "authz-memory.log") as authz:
        _mixed(authz.url, database_url, script, rounds[:50], 5)  # warm-up: every code path once
        start = authz.rss_mb()
        samples, writes = _mixed(authz.url, database_url, script, rounds[50:], seconds, authz)
        end = authz.rss_mb()
    grown = (end - start) / start
    report.add(Figure("RSS growth over a mixed run", grown * 100, "%", limit=5,
                      note=f"{seconds} s of wrk checks (8 connections) with {writes} member writes; "
                           f"{start:.0f} → {end:.0f} MB"))
    report.sections["memory_growth"] = {"seconds": seconds, "start_mb": start, "end_mb": end,
                                        "samples_mb": samples, "writes": writes}


def _mixed(url: str, database_url: str, script: Path, rounds: list[tuple[str, str, str]], seconds: float,
           authz: server.Server | None = None) -> tuple[list[float], int]:
    """wrk checks for `seconds` while a thread removes and re-adds members; returns RSS samples and writes."""
    stop = threading.Event()
    done = [0]

    def write() -> None:
        n = 0
        while not stop.is_set() and n < len(rounds):
            measure(url, database_url, rounds[n:n + 6])  # 5 warm + 1 timed per call, all real writes
            n += 6
            done[0] += 12
    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    samples: list[float] = []
    sampler_stop = threading.Event()

    def sample() -> None:
        while not sampler_stop.wait(1.0):
            if authz is not None:
                samples.append(round(authz.rss_mb(), 1))
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    wrk.run_wrk(url + "/v1/check", script, connections=8, seconds=seconds)
    stop.set()
    thread.join(timeout=60)
    sampler_stop.set()
    sampler.join()
    time.sleep(0.5)
    return samples, done[0]
