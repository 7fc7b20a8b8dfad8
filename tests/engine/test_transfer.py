"""A snapshot stream (authz.engine.transfer) plus the change feed after it rebuilds the replica.

Seeded through the real write paths on SQLite and PostgreSQL: memberships, resources, a
per-resource role, grants that expire, service keys. The state loaded from `dump` must
equal the replica's, and applying the feed's public changes after the snapshot's revision
must equal a replica that read the database (the same index, the same keys and policy).
"""

import threading

import pytest

from authz.domain.principal import cli_principal
from authz.engine import transfer
from authz.engine.replica import Replica, Snapshot
from authz.services import changes
from authz.services.runtime import Runtime
from authz.services.service_keys import create_service_key, revoke_service_key
from authz_client.decisions import stream
from tests.conftest import add_member
from tests.engine.test_snapshot_load import ORG, OTHER, _seed, _state


def _expiring(runtime: Runtime, user: str, role: str, domain: str, expiry: str) -> None:
    with runtime.unit_of_work(cli_principal()) as uow:
        if ":" in domain:
            uow.lock_resource(*domain.split(":"))
        else:
            uow.lock_context(domain)
        uow.add_rule(("g", f"user:{user}", role, domain, expiry))
        uow.commit()


def _same(a: Snapshot, b: Snapshot) -> None:
    assert a.revision == b.revision
    assert _state(a.index) == _state(b.index)
    assert list(a.index.policy_rules()) == list(b.index.policy_rules())
    assert a.policy == b.policy
    assert dict(a.service_keys) == dict(b.service_keys)


def _roundtrip(snapshot: Snapshot, chunk: int = 7) -> Snapshot:
    """Through bytes cut at arbitrary places, as an HTTP body arrives."""
    body = b"".join(transfer.dump(snapshot))
    pieces = [body[i:i + chunk] for i in range(0, len(body), chunk)]
    return transfer.load(stream.lines_of(pieces))


def test_snapshot_then_feed_equals_the_replica(runtime: Runtime) -> None:
    _seed(runtime)
    _expiring(runtime, "frank", "maintainer", ORG, "2099-01-01T00:00:00Z")
    _expiring(runtime, "gina", "viewer", "algorithm:a0", "2000-01-01T00:00:00Z")  # already over
    create_service_key(runtime, cli_principal(), "sidecar", ["changes:read", "check"])
    runtime.replica.catch_up(runtime.database)

    follower = Replica()
    follower.install(_roundtrip(runtime.replica.snapshot))
    _same(follower.snapshot, runtime.replica.snapshot)
    index = follower.snapshot.index
    assert index.check("frank", "update", "algorithm", "a0", None)
    assert not index.check("gina", "read", "algorithm", "a1", None)
    assert index.list_resources("bob", "read", "algorithm", None) == ["a0", "a1", "a2"]

    # More history after the snapshot: removals, a revoked key, a new expiring grant.
    start = follower.revision
    add_member(runtime, OTHER, "harry", "viewer")
    second = create_service_key(runtime, cli_principal(), "second", ["check"])
    revoke_service_key(runtime, cli_principal(), second.value.split("_")[1])
    _expiring(runtime, "ivy", "owner", OTHER, "2098-05-05T10:00:00Z")
    with runtime.unit_of_work(cli_principal()) as uow:
        uow.lock_resource("algorithm", "a2")
        uow.lock_resource("job", "j1")
        uow.remove_rule(("g", "user:erin", "viewer", "algorithm:a2"))
        uow.record({"op": "remove_resource", "type": "job", "id": "j1"})
        uow.commit()
    runtime.replica.catch_up(runtime.database)
    page = changes.read_changes(runtime, start, 1000)
    assert page.changes and page.changes[0].revision == start + 1
    keys_read = 0

    def read_keys() -> dict[str, object]:
        nonlocal keys_read
        keys_read += 1
        return dict(runtime.replica.snapshot.service_keys)  # what the upstream's /v1/snapshot?part= answers

    for change in page.changes:
        assert follower.apply_feed(change.revision, change.to_json()["ops"], read_keys)  # type: ignore[arg-type]
    assert keys_read == 2
    _same(follower.snapshot, runtime.replica.snapshot)
    assert follower.snapshot.index.check("ivy", "delete", "job", None, OTHER)
    assert not follower.snapshot.index.check("erin", "read", "algorithm", "a2", None)
    # Replayed or out of order: the old one is skipped, a gap is refused (the follower reloads).
    assert not follower.apply_feed(start + 1, [], read_keys)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="skipped"):
        follower.apply_feed(follower.revision + 2, [], read_keys)  # type: ignore[arg-type]


def test_the_stream_and_a_catch_up_applying_the_same_feed_at_once_apply_each_revision_once(runtime: Runtime) -> None:
    """The sidecar's follower and its catch-up for an unknown key (api.sidecar.FeedKeyCache) may
    hand the replica the same revisions at the same moment, from two threads."""
    _seed(runtime)
    follower = Replica()
    follower.install(_roundtrip(runtime.replica.snapshot))
    start = follower.revision
    for n in range(40):
        add_member(runtime, OTHER, f"user{n}", "viewer")
        if n % 10 == 0:
            created = create_service_key(runtime, cli_principal(), f"key{n}", ["check"])
            if n % 20 == 0:
                revoke_service_key(runtime, cli_principal(), created.value.split("_")[1])
    runtime.replica.catch_up(runtime.database)
    page = changes.read_changes(runtime, start, 1000)
    applied = [0, 0]
    together = threading.Barrier(2)

    def apply(applier: int) -> None:
        together.wait()
        for change in page.changes:
            if follower.apply_feed(change.revision, change.to_json()["ops"],
                                   lambda: dict(runtime.replica.snapshot.service_keys)):
                applied[applier] += 1

    threads = [threading.Thread(target=apply, args=(applier,)) for applier in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(applied) == len(page.changes) == 40 + 4 + 2
    _same(follower.snapshot, runtime.replica.snapshot)


def test_a_cut_or_foreign_stream_is_refused(runtime: Runtime) -> None:
    _seed(runtime)
    body = b"".join(transfer.dump(runtime.replica.snapshot))
    lines = body.split(b"\n")
    with pytest.raises(stream.SnapshotInvalid, match="cut short"):
        transfer.load(iter(lines[:-2]))  # the end line missing
    with pytest.raises(stream.SnapshotInvalid, match="cut short"):
        transfer.load(iter(lines[:2]))
    with pytest.raises(stream.SnapshotInvalid, match="not an"):
        transfer.load(iter([b'{"format": "other", "revision": 1}']))


def test_lines_come_whole_however_the_body_is_cut() -> None:
    body = b'{"a":1}\n["g","x","' + b"y" * 100_000 + b'"]\n\n{"end":1}'
    for size in (1, 3, 4096, len(body)):
        pieces = [body[i:i + size] for i in range(0, len(body), size)]
        assert list(stream.lines_of(pieces)) == [line for line in body.split(b"\n") if line]
