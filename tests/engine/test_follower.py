"""The follower is woken by PostgreSQL notifications, and its listener survives a lost connection."""

import asyncio
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy.engine import make_url

from authz.engine.follower import Follower
from authz.engine.replica import Replica
from authz.services.organizations import create_organization
from authz.services.runtime import Runtime
from authz.store.database import Database
from authz.store.notifications import ChangelogListener
from tests.conftest import BILLING
from tests.engine.test_catch_up import user
from tests.replicas.cluster import via, wait_until
from tests.replicas.tcp_proxy import TcpProxy

pytestmark = pytest.mark.postgres
POSTGRES_ONLY = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


@pytest.fixture
def proxy(database_url: str) -> Iterator[TcpProxy]:
    upstream = make_url(database_url)
    with TcpProxy(upstream.host or "127.0.0.1", upstream.port or 5432) as tcp_proxy:
        yield tcp_proxy


@POSTGRES_ONLY
def test_a_notification_wakes_a_follower_long_before_its_next_poll(runtime: Runtime) -> None:
    database = Database(runtime.settings.database_url)
    replica = Replica()
    replica.load(database)
    follower = Follower(replica, database, interval=60)  # polling alone would take a minute
    follower.start()
    try:
        assert follower.listener is not None
        assert follower.listener.connected.wait(5)
        written = create_organization(runtime, user("alice"), "Woken", BILLING)
        assert written.revision is not None
        assert asyncio.run(replica.reached(written.revision, timeout=5)) is not None
        assert replica.snapshot.index.role_in("alice", written.value.id) == "owner"
    finally:
        follower.stop()
        database.dispose()


@POSTGRES_ONLY
def test_the_listener_reconnects_after_the_connection_drops(runtime: Runtime, proxy: TcpProxy) -> None:
    woken = threading.Semaphore(0)
    listener = ChangelogListener(via(runtime.settings.database_url, "127.0.0.1", proxy.port), woken.release,
                                 max_backoff=0.5)
    listener.start()
    try:
        assert listener.connected.wait(5)
        assert woken.acquire(timeout=5)  # the wake-up that follows every (re)connection
        proxy.cut()
        wait_until(lambda: not listener.connected.is_set(), 5, what="the listener to notice the cut")
        proxy.restore()
        assert listener.connected.wait(5)
        assert listener.reconnects == 1
        assert woken.acquire(timeout=5)  # woken after reconnecting: notifications may have been missed
        create_organization(runtime, user("alice"), "Heard", BILLING)
        assert woken.acquire(timeout=5)  # and notifications arrive again
    finally:
        listener.stop()
