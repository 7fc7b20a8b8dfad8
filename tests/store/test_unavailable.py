"""The database gone: every write (and every read that needs it) is `Unavailable`, nothing half-written.

The runtime reaches PostgreSQL through a proxy the test cuts, so connections fail the way a
dead server's do: at connect, on a pooled connection, or in the middle of a transaction.
"""

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from authz.bootstrap import open_runtime
from authz.domain.errors import Unavailable
from authz.domain.principal import Principal, cli_principal
from authz.services.audit import audit_page
from authz.services.backend_tokens import set_backend_token
from authz.services.changes import read_changes
from authz.services.invitations import create_invitation, invitations_page
from authz.services.members import change_role, list_members, members_page, remove_member
from authz.services.organizations import create_organization, delete_organization, get_organization, update_organization
from authz.services.policy_admin import reload_policy
from authz.services.resources import register_resource, set_resource_role
from authz.services.runtime import Runtime
from authz.services.service_keys import create_service_key
from authz.store.tables import AuditEntry, RevisionCounter
from tests.conftest import BILLING, add_member, make_settings
from tests.replicas.cluster import via
from tests.replicas.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.postgres, pytest.mark.parametrize("database_url", ["postgres"], indirect=True)]


def alice() -> Principal:
    return Principal(kind="user", id="alice", email="alice@example.com", email_verified=True)


@pytest.fixture
def proxy(database_url: str) -> Iterator[TcpProxy]:
    upstream = make_url(database_url)
    with TcpProxy(upstream.host or "127.0.0.1", upstream.port or 5432) as tcp_proxy:
        yield tcp_proxy


@pytest.fixture
def proxied(database_url: str, proxy: TcpProxy) -> Iterator[Runtime]:
    runtime = open_runtime(make_settings(via(database_url, "127.0.0.1", proxy.port)), migrate=False)
    yield runtime
    runtime.database.dispose()


def _state(runtime: Runtime) -> tuple[int, int]:
    with runtime.database.session() as session:
        revision = session.scalar(select(RevisionCounter.value))
        audits = session.scalar(select(func.count()).select_from(AuditEntry))
    return int(revision or 0), int(audits or 0)


def test_every_write_is_unavailable_and_leaves_nothing_behind(
    runtime: Runtime, proxied: Runtime, proxy: TcpProxy
) -> None:
    org = create_organization(proxied, alice(), "Cut", BILLING).value.id
    add_member(proxied, org, "bob", "viewer")
    register_resource(proxied, alice(), org, "algorithm", "alg-cut")
    before = _state(runtime)

    proxy.cut()
    writes: list[Callable[[], Any]] = [
        lambda: create_organization(proxied, alice(), "Never", BILLING),
        lambda: update_organization(proxied, alice(), org, name="Renamed"),
        lambda: delete_organization(proxied, alice(), org),
        lambda: change_role(proxied, alice(), org, "bob", "maintainer"),
        lambda: remove_member(proxied, alice(), org, "bob"),
        lambda: register_resource(proxied, alice(), org, "algorithm", "alg-never"),
        lambda: set_resource_role(proxied, alice(), "algorithm", "alg-cut", "bob", "owner"),
        lambda: create_invitation(proxied, alice(), org, "carol@example.com", "viewer"),
        lambda: set_backend_token(proxied, alice(), org, "ibm", "secret-token-1234"),
        lambda: create_service_key(proxied, cli_principal(), "never", ["check"]),
        lambda: reload_policy(proxied, cli_principal()),
    ]
    reads: list[Callable[[], Any]] = [
        lambda: get_organization(proxied, alice(), org),
        lambda: list_members(proxied, alice(), org),
        lambda: members_page(proxied, alice(), org, limit=10),
        lambda: invitations_page(proxied, alice(), org, limit=10),
        lambda: audit_page(proxied, alice(), org, limit=10),
        lambda: read_changes(proxied, 0),
    ]
    for call in writes + reads:
        with pytest.raises(Unavailable):
            call()
    with pytest.raises(Unavailable), proxied.database.session() as session:
        session.execute(text("SELECT 1"))

    assert _state(runtime) == before  # read directly, not through the proxy: nothing was written
    proxy.restore()
    assert update_organization(proxied, alice(), org, name="Renamed").value.name == "Renamed"  # back, no restart
