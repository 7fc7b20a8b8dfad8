"""The change feed against real `authz serve` processes: SSE resume, and a consumer that rebuilds
memberships from the feed across a server restart, compared with the database afterwards."""

import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from authz.bootstrap import open_runtime
from authz.client import AuthzClient, Change
from authz.client._protocol import Backoff
from authz.domain import ids
from authz.services.runtime import Runtime
from authz.store.tables import CasbinRule
from tests.conftest import BILLING, add_member, auth, make_settings
from tests.processes import ServerProcess, create_service_key, start_authz, wait_for_revision

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    started = start_authz(tmp_path / "feed")
    try:
        yield started
    finally:
        started.stop()


def _events(url: str, key: str, last_event_id: int | None, count: int) -> list[int]:
    """The ids of the first `count` change events of a new SSE connection."""
    headers = {"Authorization": f"Bearer {key}", "Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    found: list[int] = []
    with httpx.stream("GET", url + "/v1/changes", headers=headers, timeout=10) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("id: "):
                found.append(int(line[4:]))
                if len(found) == count:
                    return found
    return found


def _restart(server: ServerProcess, tmp_path: Path) -> ServerProcess:
    server.stop()
    return start_authz(tmp_path, {"AUTHZ_DATABASE_URL": server.database_url}, port=server.port)


def test_sse_resumes_after_the_last_event_id_across_a_restart(server: ServerProcess, tmp_path: Path) -> None:
    key, revision = create_service_key(server, "changes:read")
    wait_for_revision(server, revision)
    first = _events(server.url, key, None, revision)
    assert first == list(range(1, revision + 1))
    assert _events(server.url, key, 1, revision - 1) == list(range(2, revision + 1))
    restarted = _restart(server, tmp_path / "feed")
    try:
        runtime = open_runtime(make_settings(restarted.database_url), migrate=False)
        try:
            for user in ("bob", "carol"):
                org = _create_org(restarted, "alice")
                add_member(runtime, org, user, "viewer")
        finally:
            runtime.database.dispose()
        head = runtime.replica.revision
        wait_for_revision(restarted, head)
        assert _events(restarted.url, key, revision, head - revision) == list(range(revision + 1, head + 1))
    finally:
        restarted.stop()


def _create_org(server: ServerProcess, owner: str) -> str:
    created = httpx.post(server.url + "/v1/organizations", json={"name": "Lab", "billing_address": BILLING},
                         headers=auth(owner), timeout=10)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


class Consumer(threading.Thread):
    """Follows the feed with the client and keeps {(org, user): role} for org memberships."""

    def __init__(self, url: str, key: str) -> None:
        super().__init__(daemon=True)
        self.client = AuthzClient(url, key)
        self.memberships: dict[tuple[str, str], str] = {}
        self.revision = 0
        self.revisions: list[int] = []
        self.failure: BaseException | None = None
        self.stopping = threading.Event()

    def run(self) -> None:
        try:
            for change in self.client.follow_changes(0, backoff=Backoff(first=0.05, longest=0.5)):
                self.apply(change)
                if self.stopping.is_set():
                    return
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.failure = exc

    def apply(self, change: Change) -> None:
        self.revisions.append(change.revision)
        for op in change.ops:
            if op["op"] not in ("add_rule", "remove_rule"):
                continue
            ptype, subject, role, domain = op["rule"][:4]
            if ptype != "g" or not subject.startswith("user:") or not ids.is_org_id(domain):
                continue
            key = (domain, ids.user_of(subject))
            if op["op"] == "add_rule":
                self.memberships[key] = role
            elif self.memberships.get(key) == role:
                del self.memberships[key]
        self.revision = change.revision


def _database_memberships(runtime: Runtime) -> dict[tuple[str, str], str]:
    with runtime.database.session() as session:
        rows = session.execute(select(CasbinRule.v0, CasbinRule.v1, CasbinRule.v2).where(CasbinRule.ptype == "g"))
        return {(org, ids.user_of(subject)): role for subject, role, org in rows
                if subject and role and org and subject.startswith("user:") and ids.is_org_id(org)}


def _random_history(server: ServerProcess, runtime: Runtime, rng: random.Random, steps: int,
                    orgs: list[str]) -> None:
    users = [f"user{n}" for n in range(8)]
    with httpx.Client(base_url=server.url, timeout=10) as http:
        for _ in range(steps):
            move = rng.random()
            if move < 0.15 or not orgs:
                orgs.append(_create_org(server, "alice"))
                continue
            org = rng.choice(orgs)
            user = rng.choice(users)
            current = _database_memberships(runtime).get((org, user))
            if current is None:
                add_member(runtime, org, user, rng.choice(["viewer", "maintainer", "owner"]))
            elif move < 0.6:
                role = rng.choice(["viewer", "maintainer", "owner"])
                http.patch(f"/v1/organizations/{org}/members/{user}", json={"role": role}, headers=auth("alice"))
            else:
                http.delete(f"/v1/organizations/{org}/members/{user}", headers=auth("alice"))


def _until(condition: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.05)


@pytest.mark.parametrize("seed", [1, 2])
def test_a_consumer_rebuilds_memberships_from_the_feed_across_a_restart(
    server: ServerProcess, tmp_path: Path, seed: int,
) -> None:
    key, revision = create_service_key(server, "changes:read")
    wait_for_revision(server, revision)
    consumer = Consumer(server.url, key)
    consumer.start()
    runtime = open_runtime(make_settings(server.database_url), migrate=False)
    rng = random.Random(seed)
    orgs: list[str] = []
    current = server
    try:
        _random_history(current, runtime, rng, 25, orgs)
        current = _restart(current, tmp_path / "feed")  # the consumer's stream breaks; it must resume
        _random_history(current, runtime, rng, 25, orgs)
        runtime.replica.catch_up(runtime.database)
        head = runtime.replica.revision
        _until(lambda: consumer.revision >= head or consumer.failure is not None, 30)
        assert consumer.failure is None, consumer.failure
        assert consumer.revisions == list(range(1, head + 1))  # every revision once, in order
        assert consumer.memberships == _database_memberships(runtime)
        assert len(consumer.memberships) > 5
    finally:
        consumer.stopping.set()
        current.stop()
        runtime.database.dispose()
