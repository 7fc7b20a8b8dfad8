"""Roles are data: a policy that calls its roles `admin`, `editor` and `reader` works end to end.

The shipped policy's names appear nowhere in the code that decides: the creator of an org
gets the policy's `context_owner`, the last one cannot leave or step down, a user acts as
it in their personal account (index, pycasbin's explanation, listings), a transfer leaves
the previous one with the role the owning role inherits, and the API and console show it.
"""

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.app import create_app
from authz.cli import app as cli
from authz.services.runtime import Runtime
from authz.settings import Settings
from tests.app_client import AppClient
from tests.conftest import (
    POLICY_DIR,
    add_member,
    auth,
    create_org,
    make_settings,
    service_key,
)
from tests.console.conftest import BASE, csrf_of, sign_in
from tests.policy.test_validate_apply import cli_env

RENAMED = {"owner": "admin", "maintainer": "editor", "viewer": "reader"}


def renamed_policy(target: Path) -> Path:
    """The shipped policy with every role name replaced (context_owner: admin), suites included."""
    shutil.copytree(POLICY_DIR, target)
    for path in [*target.glob("*.yaml"), *target.glob("tests/*.yaml")]:
        text = path.read_text()
        for old, new in RENAMED.items():
            text = re.sub(rf"\b{old}\b", new, text)
        path.write_text(text)
    assert "context_owner: admin" in (target / "roles.yaml").read_text()
    return target


@pytest.fixture
def database_url(tmp_path: Path, sqlite_template: Path) -> str:
    """SQLite: what changes here is the policy, not the database (the services run on both elsewhere)."""
    path = tmp_path / "authz.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, policy_dir=renamed_policy(tmp_path / "policies"), dev_login=True,
                         admin_users="root", public_url=BASE, session_secret="console-test-session-secret")


@pytest.fixture
def client(settings: Settings, runtime: Runtime) -> Iterator[TestClient]:
    with AppClient(create_app(settings, runtime), base_url=BASE, raise_server_exceptions=False,
                    follow_redirects=False) as test_client:
        yield test_client


def test_the_renamed_policy_validates_and_its_suites_pass(settings: Settings, database_url: str) -> None:
    env = cli_env(database_url, settings.policy_dir)
    validated = CliRunner().invoke(cli, ["policy", "validate", str(settings.policy_dir)], env=env)
    assert validated.exit_code == 0, validated.output
    tested = CliRunner().invoke(cli, ["policy", "test", str(settings.policy_dir)], env=env)
    assert tested.exit_code == 0 and " 0 failed" in tested.output, tested.output


@pytest.mark.parametrize(("owner_line", "reason"), [
    ("", "context_owner is missing: name the role that owns a context beside roles"),
    ("context_owner: owner\n", "context_owner 'owner' is not a declared role (roles: admin, editor, reader)"),
])
def test_validate_refuses_a_policy_that_names_no_declared_context_owner(
        settings: Settings, database_url: str, owner_line: str, reason: str) -> None:
    roles = settings.policy_dir / "roles.yaml"
    roles.write_text(roles.read_text().replace("context_owner: admin\n", owner_line))
    result = CliRunner().invoke(cli, ["policy", "validate", str(settings.policy_dir)],
                                env=cli_env(database_url, settings.policy_dir))
    line = next(n for n, text in enumerate(roles.read_text().splitlines(), 1)
                if text.startswith(owner_line.strip() or "roles:"))
    assert result.exit_code == 1
    assert f"{roles}:{line}: {reason}" in result.output


def test_the_creator_is_admin_and_the_last_admin_stays(client: TestClient, runtime: Runtime) -> None:
    org = create_org(client, "alice")
    listed = client.get("/v1/organizations", headers=auth("alice")).json()
    assert [(o["id"], o["role"]) for o in listed] == [(org, "admin")]
    members = client.get(f"/v1/organizations/{org}/members", headers=auth("alice")).json()
    assert [(m["user_id"], m["role"]) for m in members] == [("alice", "admin")]

    demote = client.patch(f"/v1/organizations/{org}/members/alice", json={"role": "editor"}, headers=auth("alice"))
    assert demote.status_code == 409 and "at least one admin" in demote.json()["detail"]
    leave = client.delete(f"/v1/organizations/{org}/members/alice", headers=auth("alice"))
    assert leave.status_code == 409
    assert runtime.replica.snapshot.index.role_in("alice", org) == "admin"

    add_member(runtime, org, "bob", "editor")
    runtime.replica.catch_up(runtime.database)
    transfer = client.post(f"/v1/organizations/{org}/transfer", json={"to_user_id": "bob"}, headers=auth("alice"))
    assert transfer.status_code == 200, transfer.text
    index = runtime.replica.snapshot.index
    assert (index.role_in("bob", org), index.role_in("alice", org)) == ("admin", "editor")
    assert client.delete(f"/v1/organizations/{org}/members/bob", headers=auth("bob")).status_code == 409
    assert client.delete(f"/v1/organizations/{org}/members/alice", headers=auth("alice")).status_code == 204


def test_a_user_acts_as_admin_in_their_personal_account(client: TestClient, runtime: Runtime) -> None:
    registered = client.post("/v1/resources", json={"type": "algorithm", "id": "grover"}, headers=auth("alice"))
    assert registered.status_code == 201, registered.text
    explained = client.post("/v1/check?explain=true", headers=auth("alice"),
                            json={"action": "delete", "resource": {"type": "algorithm", "id": "grover"}}).json()
    assert explained["allowed"] is True  # the index and pycasbin agree, or explain raises
    assert (explained["explanation"]["role"], explained["explanation"]["via"]) == ("admin", "personal")
    listed = client.post("/v1/list-resources", json={"action": "delete", "type": "algorithm"}, headers=auth("alice"))
    assert listed.json()["resources"] == ["grover"]
    who = client.post("/v1/list-subjects", json={"action": "delete", "resource": {"type": "algorithm", "id": "grover"}},
                      headers=service_key(runtime, "check"))
    assert who.json()["subjects"] == ["alice"]
    token = client.put("/v1/me/backend-tokens/ionq", json={"token": "secret-token-1234"}, headers=auth("alice"))
    assert token.status_code == 200, token.text  # backend_token: set is admin's, so the personal account's
    policy = client.get("/v1/policy", headers=service_key(runtime, "admin")).json()
    assert policy["context_owner"] == "admin" and ["account-holder", "admin", "*"] in policy["hierarchy"]


def test_the_console_shows_the_renamed_roles(client: TestClient, runtime: Runtime) -> None:
    sign_in(client, "alice")
    page = client.get("/orgs")
    created = client.post("/orgs", data={
        "csrf": csrf_of(page.text), "name": "Quantum Lab", "billing_address.line1": "1 Qubit Way",
        "billing_address.postal_code": "10115", "billing_address.city": "Berlin", "billing_address.country": "DE",
    })
    assert created.status_code == 303, created.text
    org = str(created.headers["location"]).rsplit("/", 1)[1]
    members = client.get(f"/orgs/{org}/members")
    assert "always keeps at least one admin: make another member admin" in members.text
    assert 'value="admin" selected' in members.text
    assert "Quantum Lab · admin" in client.get("/").text  # the account context drop-down
    assert 'value="reader" selected' in client.get(f"/orgs/{org}/invitations").text  # the least role first
    sign_in(client, "root")
    policy = client.get("/admin/policy")
    assert policy.status_code == 200
    assert re.search(r'data-testid="context-owner">Owns a context: <span class="role role-admin">admin</span>',
                     policy.text)
