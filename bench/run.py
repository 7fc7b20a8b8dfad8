"""`python -m bench.run [--quick]`: every figure of issue 8, each with its baseline and ratio.

Builds the data (deterministic, seeded) with the bulk loader into a SQLite file and a
PostgreSQL database of its own (created on 127.0.0.1:5432 and dropped at the end), runs
the figures in order, prints `figure, baseline, ratio` lines as it goes, and writes
bench/results/latest.json and bench/results/latest.md.
"""

import argparse
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from bench import app_cost, change_feed, console, embedded, http, inproc, memory, sidecar, startup, workers, writes
from bench.bulk_load import bulk_load
from bench.dataset import FULL, QUICK, Dataset
from bench.postgres import postgres_database
from bench.report import Figure, Report

T = TypeVar("T")
FIGURES = ("inproc", "http", "writes", "memory", "feed", "sidecar", "embedded", "workers", "postgres", "console")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smaller data set and shorter runs (< 2 minutes)")
    parser.add_argument("--only", default=",".join(FIGURES), help=f"comma-separated subset of {','.join(FIGURES)}")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (databases, server logs)")
    args = parser.parse_args()
    only = set(args.only.split(","))
    shape = QUICK if args.quick else FULL
    dataset = Dataset(shape)
    report = Report(quick=args.quick)
    workdir = Path(tempfile.mkdtemp(prefix="authz-bench-"))
    print(f"authz bench ({'quick' if args.quick else 'full'}): {shape.label()}, seed {shape.seed}; work dir {workdir}",
          flush=True)
    try:
        sqlite_url = f"sqlite:///{workdir / 'authz.db'}"
        loaded = _timed(lambda: bulk_load(sqlite_url, dataset))
        report.sections["data_sqlite"] = {"bulk_load_s": round(loaded[1], 1), "revisions": loaded[0].revisions}
        print(f"SQLite data loaded in {loaded[1]:.0f} s", flush=True)
        if "inproc" in only:
            _guard(report, "in-process", lambda: inproc.run(report, sqlite_url, dataset, quick=args.quick))
        if "http" in only:
            _guard(report, "http", lambda: http.run(report, sqlite_url, dataset, workdir, quick=args.quick))
            _guard(report, "http in process", lambda: app_cost.run(report, sqlite_url, dataset, workdir,
                                                                    quick=args.quick))
        if "writes" in only:
            _guard(report, "writes sqlite", lambda: writes.run(report, "SQLite", sqlite_url, dataset, workdir,
                                                               quick=args.quick))
        if "memory" in only:
            _guard(report, "memory per 100k", lambda: memory.per_100k(report, workdir, shape))
            _guard(report, "memory growth", lambda: memory.growth(report, sqlite_url, dataset, workdir,
                                                                  quick=args.quick))
        if "feed" in only:
            _guard(report, "change feed", lambda: change_feed.run(report, workdir, quick=args.quick))
        if "sidecar" in only:
            _guard(report, "sidecar", lambda: sidecar.run(report, sqlite_url, dataset, workdir, quick=args.quick))
        if "embedded" in only:
            _guard(report, "embedded", lambda: embedded.run(report, sqlite_url, dataset, workdir, quick=args.quick))
        if "workers" in only:
            _guard(report, "workers", lambda: workers.run(report, sqlite_url, dataset, workdir, quick=args.quick))
        if "console" in only:
            _guard(report, "console pages", lambda: console.run(report, sqlite_url, dataset, quick=args.quick))
        if "postgres" in only:
            _guard(report, "postgres", lambda: _postgres(report, dataset, workdir, quick=args.quick))
    finally:
        json_path, md_path = report.write()
        print(f"\nwrote {json_path} and {md_path} ({time.time() - report.started:.0f} s)")
        print(md_path.read_text(encoding="utf-8"))
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _postgres(report: Report, dataset: Dataset, workdir: Path, *, quick: bool) -> None:
    with postgres_database() as url:
        if url is None:
            report.add(Figure("PostgreSQL figures", float("nan"), "", note="skipped: no server at 127.0.0.1:5432"))
            return
        loaded = _timed(lambda: bulk_load(url, dataset))
        report.sections["data_postgres"] = {"bulk_load_s": round(loaded[1], 1), "revisions": loaded[0].revisions}
        print(f"PostgreSQL data loaded in {loaded[1]:.0f} s", flush=True)
        _guard(report, "start-up", lambda: startup.run(report, url, dataset, workdir))
        _guard(report, "writes postgres", lambda: writes.run(report, "PostgreSQL", url, dataset, workdir, quick=quick))


def _timed(fn: Callable[[], T]) -> tuple[T, float]:
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def _guard(report: Report, name: str, fn: Callable[[], object]) -> None:
    """A failing figure is reported as failed; the others still run."""
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - the bench reports every figure it can
        traceback.print_exc()
        report.add(Figure(f"{name} (failed)", float("nan"), "", note=f"{type(exc).__name__}: {exc}"[:300]))


if __name__ == "__main__":
    main()
