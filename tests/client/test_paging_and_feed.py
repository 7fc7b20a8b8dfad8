"""The client's paging iterators and change feed against a real server (sync and async)."""

import asyncio

import httpx
import pytest

from authz.client import AsyncAuthzClient, AuthzClient, Forbidden
from authz.client._protocol import Backoff
from tests.client.conftest import Org, bearer
from tests.conftest import auth
from tests.processes import ServerProcess, create_service_key, wait_for_revision


def _register(server: ServerProcess, org: Org, count: int) -> list[str]:
    names = [f"{org.algorithm}-{n:02d}" for n in range(count)]
    with httpx.Client(base_url=server.url, timeout=10) as api:
        for name in names:
            created = api.post("/v1/resources", json={"type": "algorithm", "id": name},
                               headers=auth(org.owner, context=org.id))
            assert created.status_code == 201, created.text
    return sorted([org.algorithm, *names])


def test_iter_resources_walks_every_page(server: ServerProcess, org: Org) -> None:
    expected = _register(server, org, 7)
    with AuthzClient(server.url, bearer(org.viewer)) as client:
        first = client.list_resources("read", "algorithm", context=org.id, limit=3)
        assert list(first.resources) == expected[:3] and first.next_cursor
        assert list(client.iter_resources("read", "algorithm", context=org.id, page_size=3)) == expected
        assert list(client.iter_subjects("read", ("algorithm", org.algorithm), page_size=1)) == sorted(
            [org.owner, org.maintainer, org.viewer])


def test_async_iter_resources_walks_every_page(server: ServerProcess, org: Org) -> None:
    expected = _register(server, org, 5)

    async def scenario() -> list[str]:
        async with AsyncAuthzClient(server.url, bearer(org.viewer)) as client:
            return [r async for r in client.iter_resources("read", "algorithm", context=org.id, page_size=2)]

    assert asyncio.run(scenario()) == expected


def test_follow_changes_sync_and_async_and_a_key_without_the_scope(server: ServerProcess, org: Org) -> None:
    key, revision = create_service_key(server, "changes:read")
    wait_for_revision(server, revision)
    with AuthzClient(server.url, key) as client:
        changes = client.follow_changes(revision - 3)
        got = [next(changes).revision for _ in range(3)]
        changes.close()
    assert got == [revision - 2, revision - 1, revision]

    async def scenario() -> list[int]:
        async with AsyncAuthzClient(server.url, key) as client:
            seen = []
            async for change in client.follow_changes(revision - 2, backoff=Backoff(first=0.05)):
                seen.append(change.revision)
                if len(seen) == 2:
                    break
            return seen

    assert asyncio.run(scenario()) == [revision - 1, revision]
    check_only, created = create_service_key(server, "check")
    wait_for_revision(server, created)
    with AuthzClient(server.url, check_only) as client, pytest.raises(Forbidden):
        next(client.follow_changes())
