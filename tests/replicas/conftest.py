"""Three real replicas on a database of their own, reached through a TCP proxy the tests own.

The cluster is shared by the module (starting processes is the slow part); tests that
need a process of their own (the one SIGKILLed, the late one) start it beside the three.
"""

import signal
from collections.abc import Generator, Iterator
from pathlib import Path
from types import FrameType

import pytest
from sqlalchemy.engine import make_url

from authz.bootstrap import open_runtime
from authz.services.runtime import Runtime
from tests.conftest import make_settings
from tests.postgres import own_database
from tests.replicas.cluster import Cluster, ReplicaProcess, via
from tests.replicas.tcp_proxy import TcpProxy

TEST_TIME_LIMIT = 45  # seconds; any single test that runs longer fails instead of hanging CI
POLL_INTERVAL = 0.2
MAX_STALENESS = 4.0
MIN_REVISION_WAIT = 1.0


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(autouse=True)
def _time_limit(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that overruns (SIGALRM in the main thread), then show the replicas' logs."""

    def overrun(_signum: int, _frame: FrameType | None) -> None:
        raise TimeoutError(f"test exceeded {TEST_TIME_LIMIT}s")

    previous = signal.signal(signal.SIGALRM, overrun)
    signal.alarm(TEST_TIME_LIMIT)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed and "cluster" in request.fixturenames:
        print(request.getfixturevalue("cluster").logs())


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    """A new, empty PostgreSQL database: the replicas create the schema themselves."""
    with own_database("authz_replicas") as url:
        yield url


@pytest.fixture(scope="module")
def proxy(database: str) -> Iterator[TcpProxy]:
    upstream = make_url(database)
    with TcpProxy(upstream.host or "127.0.0.1", upstream.port or 5432) as tcp_proxy:
        yield tcp_proxy


@pytest.fixture(scope="module")
def cluster(database: str, proxy: TcpProxy, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Replicas a, b, c, started together on the empty database (they take turns migrating)."""
    workdir: Path = tmp_path_factory.mktemp("replicas")
    with Cluster(
        via(database, "127.0.0.1", proxy.port), workdir,
        sync_poll_interval=str(POLL_INTERVAL), max_staleness=str(MAX_STALENESS),
        min_revision_wait=str(MIN_REVISION_WAIT),
    ) as started:
        try:
            started.start_ready("a", "b", "c", timeout=60)
        except BaseException:
            print(started.logs())
            raise
        yield started


@pytest.fixture(scope="module")
def replicas(cluster: Cluster) -> tuple[ReplicaProcess, ReplicaProcess, ReplicaProcess]:
    a, b, c = cluster.replicas[:3]
    return a, b, c


@pytest.fixture(scope="module")
def direct(database: str, cluster: Cluster) -> Iterator[Runtime]:
    """The core, in this process, straight on the database (not through the proxy): another writer."""
    runtime = open_runtime(make_settings(database, secret_keys=cluster.secret_keys), migrate=False)
    yield runtime
    runtime.database.dispose()


@pytest.fixture(autouse=True)
def _proxy_restored(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that cuts the database gives it back, whatever happens."""
    yield
    if "proxy" in request.fixturenames:
        tcp_proxy: TcpProxy = request.getfixturevalue("proxy")
        tcp_proxy.restore()


def head_revision(runtime: Runtime) -> int:
    from sqlalchemy import select

    from authz.store.tables import RevisionCounter

    with runtime.database.session() as session:
        return int(session.scalar(select(RevisionCounter.value).where(RevisionCounter.id == 1)) or 0)
