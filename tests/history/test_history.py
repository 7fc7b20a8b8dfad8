"""The history checker (DESIGN.md, "Tests"): random concurrent clients against replicas on PostgreSQL.

A bounded run is part of the suite (`HISTORY_SECONDS`, default 25); `make soak` runs it
for `SOAK_SECONDS`. The replicas reach the database through a TCP proxy that the workload
cuts and restores; afterwards `tests.history.verify` checks the database and every answer.
"""

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from authz.bootstrap import open_runtime
from authz.domain.principal import Principal, cli_principal
from authz.services import lifecycle
from authz.services.service_keys import create_service_key
from tests.conftest import make_settings
from tests.history.verify import verify
from tests.history.workload import Workload
from tests.postgres import own_database
from tests.replicas.cluster import Cluster, via
from tests.replicas.tcp_proxy import TcpProxy
from tests.sidecar.process import start_sidecar
from tests.smtp_server import SmtpServer

SECONDS = float(os.environ.get("HISTORY_SECONDS", "25"))
CLIENTS = int(os.environ.get("HISTORY_CLIENTS", "6"))
REPLICAS = ("a", "b")
INVITATIONS_PER_DAY = int(os.environ.get("HISTORY_INVITATIONS_PER_DAY", "40"))  # a soak reaches it: 429s
# Seconds: short enough that the replicas' purgers race the restores within a run, long enough
# that archived orgs are asked about before they go (with 4 s, a sabotaged archive that left
# shared roles in force went unnoticed in a 15 s run; with 8 s it gave 5 violations).
RETENTION = os.environ.get("HISTORY_ORG_RETENTION", "8")


@pytest.fixture
def database() -> Iterator[str]:
    with own_database("authz_history") as url:
        yield url


@pytest.mark.postgres
@pytest.mark.e2e
def test_random_concurrent_history_keeps_every_invariant(database: str, tmp_path: Path) -> None:
    seed = int(os.environ.get("HISTORY_SEED", random.randrange(1 << 30)))
    upstream = make_url(database)
    smtp = SmtpServer().start()
    with TcpProxy(upstream.host or "127.0.0.1", upstream.port or 5432) as proxy, \
            Cluster(via(database, "127.0.0.1", proxy.port), tmp_path, sync_poll_interval="0.2",
                    max_staleness="5", min_revision_wait="1", smtp_host="127.0.0.1", smtp_port=str(smtp.port),
                    mail_poll_interval="0.2", expiry_sweep_interval="2", org_retention=RETENTION,
                    purge_interval="1", invitations_per_day=str(INVITATIONS_PER_DAY)) as cluster:
        replicas = cluster.start_ready(*REPLICAS, timeout=60)
        # The operator, straight on the database: a resolver key for the jobs, and `authz orgs purge --now`.
        direct = open_runtime(make_settings(database, secret_keys=cluster.secret_keys), migrate=False)
        resolver = create_service_key(direct, cli_principal(), "history-jobs", ["tokens:resolve"]).value
        feed_key = create_service_key(direct, cli_principal(), "history-sidecar", ["changes:read", "check"]).value

        def purge(org: str, request_id: str) -> None:
            operator = Principal(kind="cli", id="admin", request_id=request_id)
            lifecycle.purge_organization(direct, operator, org, now=True)

        # A sidecar following replica a (snapshot + change feed, no database) answers decisions too:
        # each of its answers is checked against the oracle at the revision it reported, like the others.
        sidecar = start_sidecar(tmp_path / "sidecar", replicas[0].url, feed_key,
                                {"AUTHZ_MAX_STALENESS": "5", "AUTHZ_MIN_REVISION_WAIT": "1"})
        workload = Workload({r.name: r.url for r in replicas}, smtp.inbox, proxy, seed, resolver_key=resolver,
                            purge=purge, readers={"sidecar": sidecar.url})
        try:
            workload.run(SECONDS, CLIENTS)
        finally:
            sidecar.stop()
            direct.database.dispose()
        logs = cluster.logs()
    smtp.stop()
    verdict = verify(database, workload.events, workload.restore_attempts, INVITATIONS_PER_DAY)
    print(f"seed {seed}; {SECONDS:.0f}s, {CLIENTS} clients, {len(REPLICAS)} replicas, "
          f"{workload.cuts} database cuts; {verdict.summary()}; "
          f"the sidecar answered {sum(e.replica == 'sidecar' and e.ok for e in workload.events)}")
    assert len(workload.events) > 50, "the workload did almost nothing: " + logs
    assert any(e.replica == "sidecar" and e.ok for e in workload.events), "the sidecar answered nothing"
    assert not verdict.violations, "\n".join(verdict.violations[:40])

