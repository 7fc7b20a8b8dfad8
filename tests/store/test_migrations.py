"""Data migrations: a database written by an older authz decides the same after the upgrade."""

import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select, text

from authz.bootstrap import open_replica, open_runtime
from authz.domain.ids import ACCOUNT_HOLDER
from authz.domain.principal import Principal
from authz.policy.loader import load_policy_dir
from authz.policy.routes import load_routes
from authz.services import policy_admin, resources
from authz.services.policy_admin import reload_policy
from authz.services.runtime import Runtime
from authz.settings import Settings
from authz.store.migrate import upgrade
from authz.store.tables import AuditEntry, CasbinRule, ChangelogEntry, PolicyState
from tests.conftest import POLICY_DIR, make_settings
from tests.postgres import own_database

ALICE = Principal(kind="user", id="alice")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no schema yet (the shared templates are already at the head revision)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
    else:
        with own_database("authz_migration") as url:
            yield url


def test_personal_accounts_stay_owned_across_the_upgrade_that_made_the_owning_role_data(empty_url: str) -> None:
    upgrade(empty_url, "0004")
    settings = make_settings(empty_url)
    writer = open_runtime(settings, migrate=False)
    resources.register_resource(writer, ALICE, "user:alice", "algorithm", "grover")
    # What authz before migration 0005 left behind: no account-holder rule, a document without context_owner.
    with writer.database.session() as session, session.begin():
        session.execute(delete(CasbinRule).where(CasbinRule.v0 == ACCOUNT_HOLDER))
        state = session.get(PolicyState, 1)
        assert state is not None
        state.document = {key: value for key, value in state.document.items() if key != "context_owner"}
    writer.database.dispose()
    before = open_runtime(settings, migrate=False)  # a replica running when the upgrade happens
    assert not before.replica.snapshot.index.check("alice", "delete", "algorithm", "grover", None)  # unmigrated
    revision = before.replica.revision

    upgrade(empty_url)

    before.replica.catch_up(before.database)  # the migration is one revision of the changelog
    assert before.replica.revision == revision + 1
    assert before.replica.snapshot.index.check("alice", "delete", "algorithm", "grover", None)
    assert before.replica.snapshot.policy is not None and before.replica.snapshot.policy.context_owner == "owner"
    fresh = open_runtime(settings, migrate=False)  # a replica started after it
    try:
        index = fresh.replica.snapshot.index
        assert index.check("alice", "delete", "algorithm", "grover", None)
        assert index.role_in("alice", "user:alice") == "owner"
        with fresh.database.session() as session:
            delta = session.scalar(select(ChangelogEntry.delta).where(ChangelogEntry.revision == revision + 1))
            assert delta is not None
            audited = session.scalar(select(AuditEntry.action).where(AuditEntry.revision == revision + 1))
        assert {"op": "add_rule", "rule": ["g", ACCOUNT_HOLDER, "owner", "*"]} in delta and audited == "policy.migrate"
        assert reload_policy(fresh, Principal(kind="cli", id="test")).revision is None  # policies/ says the same
    finally:
        before.database.dispose()
        fresh.database.dispose()


def _as_before_routes_were_policy(settings: Settings) -> None:
    """A database as authz left it before the routes were part of the policy: no "routes" in the document."""
    writer = open_runtime(settings, migrate=False)
    with writer.database.session() as session, session.begin():
        state = session.get(PolicyState, 1)
        assert state is not None and "routes" in state.document
        state.document = {key: value for key, value in state.document.items() if key != "routes"}
    writer.database.dispose()


def test_the_start_after_the_upgrade_adds_the_route_file_to_the_stored_policy_as_one_revision(empty_url: str) -> None:
    upgrade(empty_url)
    settings = make_settings(empty_url)
    _as_before_routes_were_policy(settings)
    running = open_replica(settings)  # a replica running when the upgraded server starts
    assert running.replica.snapshot.policy is not None and running.replica.snapshot.policy.routes.source is None
    revision = running.replica.revision

    started = open_runtime(settings, migrate=False)
    restarted = None
    try:
        assert started.replica.revision == revision + 1
        running.replica.catch_up(running.database)  # the routes come as one changelog revision
        assert running.replica.revision == revision + 1
        policy = running.replica.snapshot.policy
        assert policy is not None and policy == started.replica.snapshot.policy
        found = policy.routes.match("DELETE", "/algorithms/grover")
        assert found is not None and (found.resource_type, found.action, found.resource_id) == (
            "algorithm", "delete", "grover")
        with started.database.session() as session:
            delta = session.scalar(select(ChangelogEntry.delta).where(ChangelogEntry.revision == revision + 1))
            audited = session.scalar(select(AuditEntry.action).where(AuditEntry.revision == revision + 1))
        assert delta is not None and delta[0]["op"] == "policy" and "DELETE /algorithms/{id}" in delta[0]["document"][
            "routes"]
        assert audited == "policy.apply"
        restarted = open_runtime(settings, migrate=False)  # once only: a second start changes nothing
        assert restarted.replica.revision == revision + 1
        assert reload_policy(restarted, Principal(kind="cli", id="test")).revision is None  # policies/ says the same
    finally:
        running.database.dispose()
        started.database.dispose()
        if restarted is not None:
            restarted.database.dispose()


def test_an_upgrade_without_route_file_stores_no_routes_once(empty_url: str, tmp_path: Path) -> None:
    upgrade(empty_url)
    _as_before_routes_were_policy(make_settings(empty_url))
    policies = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, policies)
    (policies / "routes.yaml").unlink()
    settings = make_settings(empty_url, policy_dir=policies)
    started = open_runtime(settings, migrate=False)
    try:
        revision = started.replica.revision
        with started.database.session() as session:
            state = session.get(PolicyState, 1)
            assert state is not None and state.document["routes"] is None  # forward-auth denies every request
        again = open_runtime(settings, migrate=False)
        assert again.replica.revision == revision
        again.database.dispose()
    finally:
        started.database.dispose()


@pytest.mark.postgres
def test_a_policy_applied_while_the_upgrade_adds_the_routes_is_not_undone(monkeypatch: pytest.MonkeyPatch) -> None:
    """The start's upgrade reads the stored policy, adds the routes, writes it back. A `policy apply` by
    another process that commits in between must survive: the read is under the lock the write takes.

    The other apply is made to happen in that window (while the upgrade reads routes.yaml), in a real
    thread on its own PostgreSQL connection."""
    with own_database("authz_upgrade_race") as url:
        upgrade(url)
        settings = make_settings(url)
        _as_before_routes_were_policy(settings)
        starting, other = open_replica(settings), open_replica(settings)
        shipped = load_policy_dir(POLICY_DIR)
        algorithm = shipped.types["algorithm"]
        granted = {**algorithm.actions, "update": (*algorithm.actions["update"], "viewer")}
        changed = replace(shipped, types={**shipped.types, "algorithm": replace(algorithm, actions=granted)})
        applied: list[int | None] = []
        applier = threading.Thread(target=lambda: applied.append(
            policy_admin.apply_policy(other, Principal(kind="cli", id="other"), changed).revision))
        read_routes = load_routes

        def routes_while_another_applies(*args: Any) -> Any:
            applier.start()
            deadline = time.monotonic() + 10
            while applier.is_alive() and not _waits_for_a_lock(other) and time.monotonic() < deadline:
                time.sleep(0.01)
            return read_routes(*args)

        monkeypatch.setattr(policy_admin, "load_routes", routes_while_another_applies)
        try:
            policy_admin.ensure_policy(starting, Principal(kind="cli", id="startup"))
            applier.join(timeout=10)
            assert applied and applied[0] is not None
            with starting.database.session() as session:
                stored = session.scalar(select(PolicyState.document))
            assert stored is not None and "viewer" in stored["types"]["algorithm"]["actions"]["update"], \
                "the upgrade wrote back the policy it had read, undoing the apply that committed meanwhile"
            assert stored["routes"] is not None and "DELETE /algorithms/{id}" in stored["routes"]
        finally:
            starting.database.dispose()
            other.database.dispose()


def _waits_for_a_lock(runtime: Runtime) -> bool:
    with runtime.database.session() as session:
        return bool(session.scalar(text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")))
