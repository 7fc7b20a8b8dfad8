"""`authz orgs list|show|archive|restore|purge` as an operator runs them, with and without --json."""

import json

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from authz.cli import app
from authz.services.runtime import Runtime
from tests.cli.test_policy_commands import env_for
from tests.conftest import add_member, auth, create_org

runner = CliRunner()


def orgs(database_url: str, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["orgs", *args], env=env_for(database_url))
    return result.exit_code, result.output


def read_allowed(client: TestClient, user: str, resource_id: str) -> bool:
    response = client.post("/v1/check", json={"action": "read", "resource": {"type": "algorithm", "id": resource_id}},
                           headers=auth(user))
    return bool(response.json()["allowed"])


def test_list_show_archive_restore_and_purge(database_url: str, client: TestClient, runtime: Runtime) -> None:
    org = create_org(client, "alice")
    add_member(runtime, org, "bob", "viewer")
    assert client.post("/v1/resources", json={"type": "algorithm", "id": "grover"},
                       headers=auth("alice", context=org)).status_code == 201
    other = create_org(client, "carol", "Other Lab")

    code, out = orgs(database_url, "list", "--json")
    assert code == 0, out
    listed = {o["id"]: o for o in json.loads(out)}
    assert set(listed) == {org, other}
    assert (listed[org]["state"], listed[org]["members"], listed[org]["resources"]) == ("active", 2, 1)

    code, out = orgs(database_url, "archive", org, "--json")
    assert code == 0, out
    assert json.loads(out)["action"] == "archive"
    runtime.replica.catch_up(runtime.database)
    assert not read_allowed(client, "bob", "grover")
    code, out = orgs(database_url, "show", org, "--json")
    shown = json.loads(out)
    assert (shown["state"], shown["owners"], shown["members"]) == ("archived", ["alice"], 2)
    assert shown["archived_by"] == "cli:admin" and shown["purge_after"] > shown["archived_at"]
    code, out = orgs(database_url, "list", "--archived")
    assert code == 0 and org in out and other not in out and "archived" in out

    code, out = orgs(database_url, "restore", org)
    assert code == 0 and f"restored {org}" in out, out
    runtime.replica.catch_up(runtime.database)
    assert read_allowed(client, "bob", "grover")

    code, out = orgs(database_url, "purge", org, "--now")
    assert code == 1 and "not archived" in out  # purge only what is archived
    assert orgs(database_url, "archive", org)[0] == 0
    code, out = orgs(database_url, "purge", org)
    assert code == 1 and "--now" in out  # within the retention
    code, out = orgs(database_url, "purge", org, "--now", "--json")
    assert code == 0, out
    assert json.loads(out)["action"] == "purge"
    code, out = orgs(database_url, "show", org)
    assert code == 1 and "not found" in out
    code, out = orgs(database_url, "list")
    assert org not in out and other in out
    code, out = orgs(database_url, "purge")
    assert code == 0 and "nothing to purge" in out


def test_commands_name_a_bad_or_unknown_id(database_url: str, runtime: Runtime) -> None:
    for command in ("show", "archive", "restore"):
        code, out = orgs(database_url, command, "not-an-org")
        assert code == 1 and "organization id" in out, (command, out)
        code, out = orgs(database_url, command, "org_" + "0" * 24)
        assert code == 1 and "not found" in out, (command, out)
