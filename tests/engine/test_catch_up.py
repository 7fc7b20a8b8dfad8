"""Replica.catch_up: from any revision to the same state as a fresh load, and gaps in the changelog.

On SQLite and PostgreSQL (the `runtime` fixture runs each test on both).
"""

import logging
from typing import Any

import pytest

from authz.domain.principal import Principal
from authz.engine import replica as replica_module
from authz.engine.replica import Replica
from authz.services.members import change_role, remove_member
from authz.services.organizations import create_organization, delete_organization
from authz.services.resources import delete_resource, register_resource, set_resource_role
from authz.services.runtime import Runtime
from authz.store.tables import CasbinRule, ChangelogEntry, RevisionCounter
from tests.conftest import BILLING, add_member

USERS = ("alice", "bob", "carol", "dave")
ACTIONS = ("read", "create", "delete", "share")


def user(name: str) -> Principal:
    return Principal(kind="user", id=name, email=f"{name}@example.com", email_verified=True)


def answers(replica: Replica, orgs: list[str], resources: list[str]) -> dict[str, Any]:
    """Everything a client could observe about these users, orgs and algorithms."""
    index = replica.snapshot.index
    return {
        "revision": replica.revision,
        "contexts": {u: index.contexts_of(u) for u in USERS},
        "type_level": [index.check(u, a, "algorithm", None, o) for u in USERS for a in ACTIONS for o in orgs],
        "resources": [index.check(u, a, "algorithm", r, None) for u in USERS for a in ACTIONS for r in resources],
        "listed": [index.list_resources(u, "read", "algorithm", o) for u in USERS for o in orgs],
        "subjects": [sorted(index.list_subjects("read", "algorithm", r)) for r in resources],
    }


def test_catch_up_from_any_revision_reaches_the_state_of_a_fresh_load(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replica_module, "CATCH_UP_BATCH", 3)  # several batches per catch-up
    behind: list[Replica] = []

    def snapshot() -> None:
        replica = Replica()
        replica.load(runtime.database)
        behind.append(replica)

    snapshot()
    first = create_organization(runtime, user("alice"), "First", BILLING).value.id
    second = create_organization(runtime, user("bob"), "Second", BILLING).value.id
    snapshot()
    add_member(runtime, first, "bob", "viewer")
    add_member(runtime, first, "carol", "maintainer")
    for n in range(4):
        register_resource(runtime, user("alice"), first, "algorithm", f"alg-{n}")
    snapshot()
    set_resource_role(runtime, user("alice"), "algorithm", "alg-1", "dave", "owner")
    change_role(runtime, user("alice"), first, "bob", "maintainer")
    register_resource(runtime, user("bob"), second, "algorithm", "alg-second")
    snapshot()
    remove_member(runtime, user("alice"), first, "carol")
    delete_resource(runtime, user("alice"), "algorithm", "alg-2")
    add_member(runtime, second, "dave", "viewer")
    delete_organization(runtime, user("bob"), second)

    fresh = Replica()
    fresh.load(runtime.database)
    orgs, resources = [first, second], [f"alg-{n}" for n in range(4)] + ["alg-second"]
    expected = answers(fresh, orgs, resources)
    assert [r.revision for r in behind] == sorted({r.revision for r in behind})  # four different starts
    for replica in behind:
        assert replica.catch_up(runtime.database) > 0
        assert answers(replica, orgs, resources) == expected
    assert answers(runtime.replica, orgs, resources) == expected  # the writer's own, caught up after each commit


def _append(runtime: Runtime, revision: int, rule: tuple[str, ...], *, with_rule_row: bool = False) -> None:
    """A changelog row written behind the services' back (as a damaged or odd history would be)."""
    with runtime.database.session() as session:
        session.add(ChangelogEntry(revision=revision, created_at=runtime.clock(),
                                   delta=[{"op": "add_rule", "rule": list(rule)}]))
        if with_rule_row:
            session.add(CasbinRule(ptype=rule[0], v0=rule[1], v1=rule[2], v2=rule[3]))
        counter = session.get(RevisionCounter, 1)
        assert counter is not None
        counter.value = max(counter.value, revision)
        session.commit()


def test_a_gap_is_detected_logged_and_filled_by_reading_the_missing_rows(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    org = create_organization(runtime, user("alice"), "Gap", BILLING).value.id
    replica = runtime.replica
    head = replica.revision
    caplog.set_level(logging.INFO, logger="authz.replica")

    _append(runtime, head + 2, ("g", "user:carol", "viewer", org))  # head + 1 is not there (yet)
    assert replica.catch_up(runtime.database) == 0
    assert replica.revision == head  # never applies past a missing revision
    assert any("gap" in r.message and str(head + 1) in r.message for r in caplog.records if r.levelname == "WARNING")
    assert replica.catch_up(runtime.database) == 0  # read again, still missing: still waiting

    _append(runtime, head + 1, ("g", "user:bob", "viewer", org))
    assert replica.catch_up(runtime.database) == 2
    assert replica.revision == head + 2
    assert (
        replica.snapshot.index.role_in("bob", org) == "viewer"
        and replica.snapshot.index.role_in("carol", org) == "viewer"
    )
    assert any("filled" in r.message for r in caplog.records)


def test_a_gap_that_never_fills_is_logged_and_the_state_reloaded(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    org = create_organization(runtime, user("alice"), "Lost", BILLING).value.id
    replica = runtime.replica
    head = replica.revision
    replica.gap_reload_after = 0.0
    caplog.set_level(logging.INFO, logger="authz.replica")

    _append(runtime, head + 2, ("g", "user:carol", "viewer", org), with_rule_row=True)
    replica.catch_up(runtime.database)  # sees the gap
    assert replica.revision == head
    replica.catch_up(runtime.database)  # still missing: logged, and the whole state read at a snapshot
    assert any(r.levelname == "ERROR" and "reloading" in r.message for r in caplog.records)
    assert replica.revision == head + 2
    assert replica.snapshot.index.role_in("carol", org) == "viewer"
    assert replica.catch_up(runtime.database) == 0  # and following goes on from there
