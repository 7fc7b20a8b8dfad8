"""The change feed's throughput: changes per second delivered over server-sent events.

Two figures, on SQLite, against a real `authz serve`:
- catch-up: a consumer connects at revision 0 to a changelog of N revisions (each a
  membership delta, as the services write them) and reads them all over SSE;
- live: a consumer follows the head while a writer commits memberships through the
  services as fast as it can; reported as delivered changes/s and the delay from commit
  to receipt (which includes the replica noticing the commit: SQLite has no NOTIFY, so
  up to AUTHZ_SYNC_POLL_INTERVAL, set to 0.05 s here).
`python -m bench.change_feed [--quick]` runs it alone.
"""

import argparse
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import insert, update

from authz.bootstrap import open_runtime
from authz.domain.principal import Principal, cli_principal
from authz.services.members import add_member
from authz.services.organizations import create_organization
from authz.services.service_keys import create_service_key
from authz.settings import Settings
from authz.store.tables import ChangelogEntry, RevisionCounter
from bench import server
from bench.report import Figure, Report

BILLING = {"line1": "1 Qubit Way", "postal_code": "10115", "city": "Berlin", "country": "DE"}


def _settings(database_url: str) -> Settings:
    return Settings(_env_file=None, env="test", database_url=database_url,
                    policy_dir=server.ROOT / "policies", policy_model=server.ROOT / "policy_model.conf",
                    jwt_secret=server.JWT_SECRET, mail_sender=False)


def _fill_changelog(database_url: str, count: int) -> tuple[str, str, int]:
    """An org, `count` membership revisions written straight into the changelog, a feed key: (org, key, head)."""
    runtime = open_runtime(_settings(database_url))
    try:
        owner = Principal(kind="user", id="bench-owner")
        org = create_organization(runtime, owner, "Feed Lab", BILLING).value.id
        now = datetime.now(UTC)
        with runtime.database.session() as session, session.begin():
            first = runtime.replica.revision + 1
            rows = [{"revision": first + n, "created_at": now,
                     "delta": [{"op": "add_rule", "rule": ["g", f"user:u{n}", "viewer", org]}]} for n in range(count)]
            for start in range(0, count, 5000):
                session.execute(insert(ChangelogEntry), rows[start:start + 5000])
            session.execute(update(RevisionCounter).where(RevisionCounter.id == 1).values(value=first + count - 1))
        runtime.replica.catch_up(runtime.database)
        written = create_service_key(runtime, cli_principal(), "bench-feed", ["changes:read"])
        assert written.revision is not None
        return org, written.value, written.revision
    finally:
        runtime.database.dispose()


def _read_events(url: str, key: str, after: int, until: int, received: dict[int, float] | None = None) -> int:
    """Read SSE change events after `after` until revision `until`; returns how many."""
    headers = {"Authorization": f"Bearer {key}", "Accept": "text/event-stream", "Last-Event-ID": str(after)}
    count = 0
    with httpx.stream("GET", url + "/v1/changes", params={"limit": 1000}, headers=headers,
                      timeout=httpx.Timeout(10, read=60)) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line.startswith("id: "):
                revision = int(line[4:])
                count += 1
                if received is not None:
                    received[revision] = time.perf_counter()
                if revision >= until:
                    return count
    return count


def run(report: Report, workdir: Path, *, quick: bool) -> None:
    count = 20_000 if quick else 100_000
    database_url = f"sqlite:///{workdir / 'feed.db'}"
    org, key, head = _fill_changelog(database_url, count)
    port = server.free_port()
    with server.authz_serve(database_url, port, workdir / "authz-feed.log", AUTHZ_SYNC_POLL_INTERVAL="0.05") as authz:
        _read_events(authz.url, key, head - 10, head)  # warm-up
        started = time.perf_counter()
        delivered = _read_events(authz.url, key, 0, head)
        elapsed = time.perf_counter() - started
        report.add(Figure("change feed over SSE: catch-up", delivered / elapsed, "changes/s",
                          note=f"{delivered:,} revisions from 0, one consumer, SQLite"))
        live = _live(authz.url, database_url, org, key, head, 150 if quick else 500)
        report.add(Figure("change feed over SSE: live", live["rate"], "changes/s",
                          note=f"{live['n']} memberships committed through the services as fast as one writer can; "
                               f"commit→event p50 {live['p50_ms']:.0f} ms, p99 {live['p99_ms']:.0f} ms"))
    report.sections["change_feed"] = {"catch_up": {"revisions": delivered, "seconds": round(elapsed, 3)}, "live": live}


def _live(url: str, database_url: str, org: str, key: str, head: int, writes: int) -> dict[str, float]:
    runtime = open_runtime(_settings(database_url), migrate=False)
    received: dict[int, float] = {}
    committed: dict[int, float] = {}
    reader = threading.Thread(target=_read_events, args=(url, key, head, head + writes, received), daemon=True)
    reader.start()
    time.sleep(0.5)  # connected and waiting at the head
    actor = Principal(kind="cli", id="bench")
    started = time.perf_counter()
    try:
        for n in range(writes):
            with runtime.unit_of_work(actor) as uow:
                uow.lock_context(org)
                add_member(uow, org, f"live{n}", None, "viewer")
                revision = uow.commit()
            assert revision is not None
            committed[revision] = time.perf_counter()
        reader.join(timeout=60)
    finally:
        runtime.database.dispose()
    elapsed = max(received.values(), default=started) - started
    delays = sorted((received[r] - committed[r]) * 1000 for r in committed if r in received)
    return {"n": len(received), "rate": len(received) / elapsed if elapsed > 0 else 0.0,
            "p50_ms": statistics.median(delays) if delays else float("nan"),
            "p99_ms": delays[int(len(delays) * 0.99) - 1] if delays else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    report = Report(quick=args.quick)
    with tempfile.TemporaryDirectory(prefix="authz-bench-feed-") as workdir:
        run(report, Path(workdir), quick=args.quick)
    for figure in report.figures:
        print(f"{figure.name}: {figure.value:,.0f} {figure.unit} ({figure.note})")


if __name__ == "__main__":
    main()
