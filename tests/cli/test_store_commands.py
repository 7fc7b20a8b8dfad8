"""The command line opens only what a command needs: row commands never migrate nor build the decision index."""

from collections.abc import Callable
from pathlib import Path

import alembic.command
import pytest
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient
from sqlalchemy import insert
from typer.testing import CliRunner, Result

from authz.cli import app
from authz.engine.replica import Replica
from authz.services.runtime import Runtime
from authz.store.migrate import alembic_config, upgrade
from authz.store.tables import CasbinRule
from tests.cli.test_policy_commands import env_for
from tests.conftest import POLICY_DIR, add_member, create_org

runner = CliRunner()
MEMBERS = 5_000  # enough rules that a needless index load would be the bulk of the command's work


class Forbidden(AssertionError):
    """Raised by whatever a row command must not call."""


def forbid(name: str) -> Callable[..., None]:
    def called(*_args: object, **_kwargs: object) -> None:
        raise Forbidden(f"{name} was called")

    return called


def invoke(database_url: str, *args: str) -> Result:
    return runner.invoke(app, list(args), env=env_for(database_url))


def test_row_commands_neither_migrate_nor_load_the_index(
    database_url: str, runtime: Runtime, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = create_org(client, "alice")
    add_member(runtime, org, "bob", "viewer")
    with runtime.database.session() as session:  # many memberships, as a busy production database has
        session.execute(insert(CasbinRule), [{"ptype": "g", "v0": f"user:u{n}", "v1": "viewer", "v2": org}
                                             for n in range(MEMBERS)])
        session.commit()
    monkeypatch.setattr(Replica, "load", forbid("Replica.load"))
    monkeypatch.setattr(Replica, "catch_up", forbid("Replica.catch_up"))
    monkeypatch.setattr(Replica, "apply_committed", forbid("Replica.apply_committed"))
    monkeypatch.setattr(alembic.command, "upgrade", forbid("alembic upgrade"))

    created = invoke(database_url, "service-key", "create", "billing", "--scope", "check")
    assert created.exit_code == 0, created.output
    key_id = created.stdout.strip().split("_")[1]
    listed = invoke(database_url, "service-key", "list")
    assert listed.exit_code == 0 and f"{key_id}  billing  check" in listed.output, listed.output
    revoked = invoke(database_url, "service-key", "revoke", key_id)
    assert revoked.exit_code == 0, revoked.output
    assert "revoked" in invoke(database_url, "service-key", "list").output

    assert invoke(database_url, "orgs", "show", org).exit_code == 0
    listed = invoke(database_url, "orgs", "list")
    assert listed.exit_code == 0 and f"members={MEMBERS + 2}" in listed.output, listed.output
    for command in ("archive", "restore"):
        done = invoke(database_url, "orgs", command, org)
        assert done.exit_code == 0, (command, done.output)
    applied = invoke(database_url, "policy", "apply", str(POLICY_DIR))
    assert applied.exit_code == 0 and "no rule changes" in applied.output, applied.output
    rotated = invoke(database_url, "secrets", "rotate")
    assert rotated.exit_code == 0, rotated.output

    # The control: the one command that needs decisions does reach the forbidden loader.
    checked = invoke(database_url, "check", "--subject", "bob", "--action", "read", "--resource", "algorithm",
                     "--context", org)
    assert isinstance(checked.exception, Forbidden) and "Replica.load" in str(checked.exception)


def test_check_answers_from_the_database_as_it_is(database_url: str, runtime: Runtime, client: TestClient) -> None:
    org = create_org(client, "alice")
    allowed = invoke(database_url, "check", "--subject", "alice", "--action", "delete", "--resource", "algorithm",
                     "--context", org)
    assert allowed.exit_code == 0 and allowed.output.startswith("allowed"), allowed.output


def test_check_without_a_policy_says_to_apply_one(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    upgrade(url)  # a schema, but no server has ever seeded the policy
    result = invoke(url, "check", "--subject", "bob", "--action", "read", "--resource", "algorithm")
    assert result.exit_code == 1
    assert result.output == "the database holds no policy yet: run `authz policy apply` (or start `authz serve`)\n"


ROW_COMMANDS = [
    ("service-key", "list"),
    ("service-key", "create", "billing", "--scope", "check"),
    ("orgs", "list"),
    ("policy", "apply", str(POLICY_DIR)),
    ("check", "--subject", "bob", "--action", "read", "--resource", "algorithm"),
]


@pytest.mark.parametrize("command", ROW_COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_an_unmigrated_database_says_to_run_db_upgrade(tmp_path: Path, command: tuple[str, ...]) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    result = invoke(url, *command)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)  # no traceback
    assert result.output == "cannot use the database: the database has no authz schema yet: run `authz db upgrade`\n"

    assert invoke(url, "db", "upgrade").exit_code == 0
    assert invoke(url, "service-key", "list").exit_code == 0


def test_an_older_schema_names_both_revisions(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    head = ScriptDirectory.from_config(alembic_config(url)).get_revision("head")
    assert head is not None and isinstance(head.down_revision, str)
    upgrade(url, head.down_revision)
    result = invoke(url, "service-key", "list")
    assert result.exit_code == 1
    assert result.output == (f"cannot use the database: the database schema is at revision {head.down_revision}, "
                             f"this version needs {head.revision}: run `authz db upgrade`\n")
