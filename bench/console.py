"""Console page render time at the bench's data size (1M memberships in the full run).

The app is the real one (`create_app`), on the bench's SQLite database, called in-process
through Starlette's TestClient (no network): what is measured is routing, the session,
the service calls, the decisions behind each button and the Jinja2 rendering. The user
is an org's owner (every button shown, every check made), signed in with a session
cookie made by the app's own codec. Each page is loaded in alternating rounds.
"""

import statistics
import time
from typing import Any

from fastapi.testclient import TestClient

from api.app import create_app
from authz.bootstrap import open_runtime
from authz.secrets import new_key
from authz.settings import Settings
from bench.bulk_load import ROOT
from bench.dataset import Dataset, org_id
from bench.report import Figure, Report

LIMIT_MS = 50.0  # issue 13: page render p95 at 1M memberships


def run(report: Report, database_url: str, dataset: Dataset, *, quick: bool) -> None:
    settings = Settings(
        _env_file=None, env="test", database_url=database_url, policy_dir=ROOT / "policies",
        policy_model=ROOT / "policy_model.conf", session_secret="bench-console-session", secret_keys=new_key(),
        mail_sender=False, log_level="WARNING",
    )
    runtime = open_runtime(settings, migrate=False)
    try:
        app = create_app(settings, runtime)
        org = 7 % dataset.shape.orgs
        owner = dataset.owner_of(org)
        oid = org_id(org)
        pages = ["/", f"/?context={oid}", "/orgs", f"/orgs/{oid}", f"/orgs/{oid}/members",
                 f"/orgs/{oid}/invitations", f"/tokens?context={oid}", f"/orgs/{oid}/audit"]
        rounds = 15 if quick else 40
        with TestClient(app, base_url="http://127.0.0.1:8000") as client:
            codec = app.state.console.codec
            session = codec.signed_in(owner, f"{owner}@example.com", True, "dev")
            client.cookies.set("authz_session", codec.dumps(session.to_json(), "authz-console-session"))
            samples: dict[str, list[float]] = {page: [] for page in pages}
            for page in pages:  # warm-up: templates compiled, caches filled
                _get(client, page)
            for _ in range(rounds):
                for page in pages:
                    started = time.perf_counter()
                    _get(client, page)
                    samples[page].append((time.perf_counter() - started) * 1000)
    finally:
        runtime.database.dispose()
    every = sorted(ms for values in samples.values() for ms in values)
    p95 = every[int(len(every) * 0.95)]
    per_page = {page: round(_p95(values), 2) for page, values in samples.items()}
    slowest = max(per_page, key=lambda page: per_page[page])
    report.add(Figure("console page render p95", p95, "ms", limit=LIMIT_MS,
                      note=f"{len(pages)} pages × {rounds} rounds as an org owner at "
                           f"{dataset.shape.memberships:,} memberships; slowest {slowest} {per_page[slowest]:.1f} ms"))
    report.sections["console"] = {"p95_ms": p95, "p50_ms": statistics.median(every), "per_page_p95_ms": per_page}


def _get(client: TestClient, page: str) -> Any:
    response = client.get(page)
    if response.status_code != 200:
        raise RuntimeError(f"GET {page}: {response.status_code}")
    return response


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[int(len(ordered) * 0.95)]
