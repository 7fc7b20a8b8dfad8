"""What `authz policy validate` accepts, `apply` applies and a server serves (issue 12, class 8).

For random valid policy documents (role hierarchies with several parents, types, grants)
and a suite whose expectations follow from the document: validate ⇒ test passes ⇒ apply
⇒ a server starts with it ⇒ the server's decisions agree with the suite.
"""

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from api.app import create_app
from authz.bootstrap import open_runtime
from authz.cli import app as cli
from authz.domain.principal import Principal, cli_principal
from authz.services.organizations import create_organization
from authz.services.service_keys import create_service_key
from tests.app_client import AppClient
from tests.conftest import BILLING, JWT_SECRET, POLICY_DIR, add_member, auth, make_settings
from tests.hypothesis_budget import examples

ROLE_NAMES = ["owner", "maintainer", "viewer", "auditor", "billing_admin", "guest"]
TYPE_NAMES = ["algorithm", "job", "report", "billing"]
ACTIONS = ["read", "run", "update", "delete", "share"]


@st.composite
def policies(draw: st.DrawFn) -> dict[str, Any]:
    """roles.yaml and permissions.yaml contents: an acyclic hierarchy (several parents allowed) and grants."""
    roles = draw(st.lists(st.sampled_from(ROLE_NAMES), min_size=1, max_size=5, unique=True))
    hierarchy: dict[str, list[str]] = {}
    for position, role in enumerate(roles):  # a role inherits only roles listed before it: no cycle
        hierarchy[role] = draw(st.lists(st.sampled_from(roles[:position]), max_size=3, unique=True)) if position else []
    types: dict[str, Any] = {}
    for name in draw(st.lists(st.sampled_from(TYPE_NAMES), min_size=1, max_size=3, unique=True)):
        actions = draw(st.lists(st.sampled_from(ACTIONS), min_size=1, max_size=4, unique=True))
        types[name] = {"content": draw(st.booleans()),
                       "actions": {a: draw(st.lists(st.sampled_from(roles), max_size=3, unique=True)) for a in actions}}
    return {"context_owner": draw(st.sampled_from(roles)),  # often not "owner": the owning role is data
            "roles": {r: ({"inherits": p} if p else {"description": f"role {r}"}) for r, p in hierarchy.items()},
            "types": types}


def effective(document: dict[str, Any], role: str) -> set[str]:
    seen, stack = set(), [role]
    while stack:
        current = stack.pop()
        if current not in seen and current in document["roles"]:
            seen.add(current)
            stack.extend(document["roles"][current].get("inherits", []))
    return seen


def allowed(document: dict[str, Any], role: str | None, type_name: str) -> list[str]:
    if role is None:
        return []
    roles = effective(document, role)
    return [a for a, granted in document["types"][type_name]["actions"].items() if roles & set(granted)]


def write_policy(document: dict[str, Any]) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="authz-prop-"))
    (folder / "roles.yaml").write_text(yaml.safe_dump({"context_owner": document["context_owner"],
                                                       "roles": document["roles"]}))
    (folder / "permissions.yaml").write_text(yaml.safe_dump({"types": document["types"]}))
    principals = {f"p_{role}": role for role in document["roles"]} | {"stranger": None}
    tests = [{"types": [t], "allowed": {p: allowed(document, r, t) for p, r in principals.items()}}
             for t in document["types"]]
    owner = document["context_owner"]  # every user acts as it in their personal account
    tests += [{"types": [t], "context": "personal", "allowed": {p: allowed(document, owner, t) for p in principals}}
              for t in document["types"]]
    (folder / "tests").mkdir()
    (folder / "tests" / "generated_test.yaml").write_text(
        yaml.safe_dump({"suite": "generated", "principals": principals, "tests": tests}))
    return folder


def cli_env(database_url: str, policy_dir: Path) -> dict[str, str]:
    return {**os.environ, "AUTHZ_DATABASE_URL": database_url, "AUTHZ_JWT_SECRET": JWT_SECRET, "AUTHZ_ENV": "test",
            "AUTHZ_POLICY_DIR": str(policy_dir)}


@settings(max_examples=examples(8), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(document=policies())
def test_validate_implies_apply_implies_a_server_that_agrees_with_the_suites(database_url: str,
                                                                             document: dict[str, Any]) -> None:
    folder = write_policy(document)
    runner = CliRunner()
    env = cli_env(database_url, folder)
    try:
        validated = runner.invoke(cli, ["policy", "validate", str(folder)], env=env)
        assert validated.exit_code == 0, validated.output
        tested = runner.invoke(cli, ["policy", "test", str(folder)], env=env)
        assert tested.exit_code == 0 and " 0 failed" in tested.output, tested.output
        applied = runner.invoke(cli, ["policy", "apply", str(folder)], env=env)
        assert applied.exit_code == 0, applied.output

        app_settings = make_settings(database_url, policy_dir=folder)
        runtime = open_runtime(app_settings, migrate=False)  # what a fresh server does at start
        try:
            created = create_organization(runtime, Principal(kind="user", id="founder"), "Generated", BILLING).value
            assert created.role == document["context_owner"]  # the creator gets the owning role, whatever its name
            org = created.id
            runtime.replica.catch_up(runtime.database)
            for role in document["roles"]:
                add_member(runtime, org, f"p_{role}", role)
            key = {"Authorization": "Bearer " + create_service_key(runtime, cli_principal(), "prop", ["check"]).value}
            with AppClient(create_app(app_settings, runtime)) as client:
                assert client.get("/readyz").status_code == 200
                principals = {f"p_{role}": role for role in document["roles"]} | {"stranger": None}
                owner = document["context_owner"]
                for type_name, spec in document["types"].items():
                    for principal, role in principals.items():
                        for context, as_role in ((org, role), ("personal", owner)):
                            expected = allowed(document, as_role, type_name)
                            checks = [{"subject": principal, "action": action, "resource": {"type": type_name},
                                       "context": context} for action in spec["actions"]]
                            answer = client.post("/v1/check/batch", json={"checks": checks}, headers=key)
                            assert answer.status_code == 200, answer.text
                            got = [a for a, r in zip(spec["actions"], answer.json()["results"], strict=True)
                                   if r["allowed"]]
                            assert got == expected, (principal, context, type_name, document)
        finally:
            runtime.database.dispose()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def multi_parent_policy(tmp_path: Path) -> Path:
    folder = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, folder)
    roles = yaml.safe_load((folder / "roles.yaml").read_text())
    roles["roles"]["auditor"] = {"description": "reads the audit log"}
    roles["roles"]["owner"]["inherits"] = ["maintainer", "auditor"]
    (folder / "roles.yaml").write_text(yaml.safe_dump(roles))
    return folder


def test_a_role_inheriting_two_roles_reloads_over_http_and_a_fresh_server_starts(
        database_url: str, tmp_path: Path) -> None:
    from tests.conftest import create_org

    folder = multi_parent_policy(tmp_path)
    app_settings = make_settings(database_url, policy_dir=folder)
    runtime = open_runtime(make_settings(database_url), migrate=False)  # the shipped policy first
    runtime.settings = app_settings  # then the server's policy directory holds the new files
    try:
        admin = {"Authorization": "Bearer " + create_service_key(runtime, cli_principal(), "admin", ["admin"]).value}
        with AppClient(create_app(app_settings, runtime), raise_server_exceptions=False) as client:
            reloaded = client.post("/v1/policy/reload", headers=admin)
            assert reloaded.status_code == 200, reloaded.text
            assert ["g", "owner", "auditor", "*"] in reloaded.json()["added"]
            policy = client.get("/v1/policy", headers=admin).json()
            assert policy["roles"]["owner"]["inherits"] == ["maintainer", "auditor"]
            org = create_org(client, "alice")
            check = client.post(
                "/v1/check",
                json={"action": "delete", "resource": {"type": "algorithm"}, "context": org},
                headers=auth("alice"),
            )
            assert check.json()["allowed"] is True
    finally:
        runtime.database.dispose()
    fresh = open_runtime(app_settings, migrate=False)  # a new server with this policy in the database
    try:
        assert fresh.replica.snapshot.policy is not None and "auditor" in fresh.replica.snapshot.policy.roles
    finally:
        fresh.database.dispose()


def test_apply_dry_run_runs_the_writes_and_changes_nothing(database_url: str, tmp_path: Path) -> None:
    folder = multi_parent_policy(tmp_path)
    runtime = open_runtime(make_settings(database_url), migrate=False)
    revision = runtime.replica.revision
    runtime.database.dispose()
    result = CliRunner().invoke(cli, ["policy", "apply", "--dry-run", str(folder)], env=cli_env(database_url, folder))
    assert result.exit_code == 0, result.output
    assert "+ g, owner, auditor, *" in result.output and "dry run: nothing applied" in result.output
    again = open_runtime(make_settings(database_url), migrate=False)
    try:
        assert again.replica.revision == revision
        assert again.replica.snapshot.policy is not None and "auditor" not in again.replica.snapshot.policy.roles
    finally:
        again.database.dispose()


def test_validate_refuses_what_the_database_would_refuse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """If applying fails (here: a refusing database), validate says so with the directory, exit 1."""
    from sqlalchemy.exc import IntegrityError

    from authz.store import unit_of_work

    def refuse(self: Any) -> None:
        raise IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed: casbin_rule.v0, casbin_rule.v2"))

    monkeypatch.setattr(unit_of_work.UnitOfWork, "commit", refuse)
    folder = multi_parent_policy(tmp_path)
    result = CliRunner().invoke(
        cli, ["policy", "validate", str(folder)], env=cli_env(f"sqlite:///{tmp_path / 'x.db'}", folder)
    )
    assert result.exit_code == 1
    assert f"{folder}:1: cannot be applied" in result.output and "UNIQUE constraint" in result.output
