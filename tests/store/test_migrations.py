"""Data migrations: a database written by an older authz decides the same after the upgrade."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete, select

from authz.bootstrap import open_runtime
from authz.domain.ids import ACCOUNT_HOLDER
from authz.domain.principal import Principal
from authz.services import resources
from authz.services.policy_admin import reload_policy
from authz.store.migrate import upgrade
from authz.store.tables import AuditEntry, CasbinRule, ChangelogEntry, PolicyState
from tests.conftest import make_settings
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
