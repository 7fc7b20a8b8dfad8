"""Replication lag between two real replicas: a write on A until B answers at that revision.

    .venv/bin/python -m bench.replication_lag [--changes 1000]

Starts two `authz serve` processes on a fresh PostgreSQL database (default settings: poll
every 1 s, so a lag well under that is LISTEN/NOTIFY's doing). Each change is a role
change on A (PATCH .../members/bob); its lag is the time from A's response to B's answer
to a check with `min_revision` = the revision A returned, i.e. what a client doing
read-your-writes across replicas waits. A plain check on B is timed too, as the floor.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from authz.bootstrap import open_runtime
from tests.conftest import BILLING, add_member, auth, make_settings
from tests.postgres import create_database, drop_database
from tests.replicas.cluster import Cluster


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def describe(name: str, seconds: list[float]) -> str:
    ms = [s * 1000 for s in seconds]
    return (f"{name}: n={len(ms)} p50={percentile(ms, 50):.2f} ms p99={percentile(ms, 99):.2f} ms "
            f"max={max(ms):.2f} ms mean={statistics.fmean(ms):.2f} ms")


def run(changes: int) -> None:
    url = create_database("authz_bench_lag")
    try:
        with tempfile.TemporaryDirectory() as workdir, Cluster(url, Path(workdir)) as cluster:
            a = cluster.start("a")
            a.wait_ready(60)
            b = cluster.start("b")
            b.wait_ready(60)
            direct = open_runtime(make_settings(url, secret_keys=cluster.secret_keys), migrate=False)
            response = a.http.post("/v1/organizations", json={"name": "Lag", "billing_address": BILLING},
                                   headers=auth("alice"))
            org = response.json()["id"]
            add_member(direct, org, "bob", "viewer")
            direct.database.dispose()
            question = {"action": "read", "resource": {"type": "organization"}, "context": org}

            lags: list[float] = []
            floor: list[float] = []
            roles = ("maintainer", "viewer")
            for n in range(changes):
                write = a.http.patch(f"/v1/organizations/{org}/members/bob", json={"role": roles[n % 2]},
                                     headers=auth("alice"))
                written_at = time.perf_counter()
                assert write.status_code == 200, write.text
                revision = int(write.headers["X-Authz-Revision"])
                answer = b.http.post("/v1/check", json={**question, "min_revision": revision}, headers=auth("bob"))
                lags.append(time.perf_counter() - written_at)
                assert answer.status_code == 200 and answer.json()["revision"] >= revision, answer.text
                started = time.perf_counter()
                b.http.post("/v1/check", json=question, headers=auth("bob"))
                floor.append(time.perf_counter() - started)
            print(describe("replication lag (write on A -> check on B with min_revision)", lags))
            print(describe("plain check on B (HTTP floor)", floor))
    finally:
        drop_database(url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=1000)
    run(parser.parse_args().changes)


if __name__ == "__main__":
    main()
