"""`authz policy validate|test|apply` and `authz check` as an admin runs them."""

import json
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from authz.cli import app
from authz.services.runtime import Runtime
from tests.conftest import JWT_SECRET, POLICY_DIR, POLICY_MODEL, add_member, create_org

runner = CliRunner()


def env_for(database_url: str) -> dict[str, str]:
    return {
        "AUTHZ_DATABASE_URL": database_url,
        "AUTHZ_POLICY_DIR": str(POLICY_DIR),
        "AUTHZ_POLICY_MODEL": str(POLICY_MODEL),
        "AUTHZ_JWT_SECRET": JWT_SECRET,
    }


def test_validate_accepts_the_shipped_policy() -> None:
    result = runner.invoke(app, ["policy", "validate", str(POLICY_DIR)])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output


def test_validate_exits_1_with_file_and_line(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, policies)
    roles = policies / "roles.yaml"
    roles.write_text(roles.read_text().replace("inherits: [viewer]", "inherits: [veiwer]"))
    result = runner.invoke(app, ["policy", "validate", str(policies)])
    assert result.exit_code == 1
    assert f"{roles}:7: unknown role 'veiwer' in inherits of role 'maintainer'" in result.output


def test_policy_test_prints_the_summary_line() -> None:
    result = runner.invoke(app, ["policy", "test", str(POLICY_DIR)], env={"AUTHZ_POLICY_MODEL": str(POLICY_MODEL)})
    assert result.exit_code == 0, result.output
    last = result.output.strip().splitlines()[-1]
    passed, failed = int(last.split()[0]), int(last.split()[2])
    assert passed > 200 and failed == 0 and last.endswith("failed")


def test_policy_test_reports_failures_and_exits_1(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, policies)
    permissions = policies / "permissions.yaml"
    permissions.write_text(permissions.read_text().replace("      read: [owner]\n      update: [owner]",
                                                           "      read: [viewer]\n      update: [owner]", 1))
    result = runner.invoke(app, ["policy", "test", str(policies)], env={"AUTHZ_POLICY_MODEL": str(POLICY_MODEL)})
    assert result.exit_code == 1
    assert "FAIL" in result.output and "vic read billing" in result.output
    assert result.output.strip().splitlines()[-1].endswith("2 failed")


def test_apply_prints_the_diff_and_dry_run_changes_nothing(database_url: str, runtime: Runtime, tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, policies)
    permissions = policies / "permissions.yaml"
    permissions.write_text(permissions.read_text().replace("      set: [owner]", "      set: [maintainer]"))
    env = env_for(database_url)
    before = runtime.replica.revision

    dry = runner.invoke(app, ["policy", "apply", str(policies), "--dry-run"], env=env)
    assert dry.exit_code == 0, dry.output
    assert "+ p, maintainer, *, backend_token, set" in dry.output
    assert "- p, owner, *, backend_token, set" in dry.output
    runtime.replica.catch_up(runtime.database)
    assert runtime.replica.revision == before

    applied = runner.invoke(app, ["policy", "apply", str(policies)], env=env)
    assert applied.exit_code == 0, applied.output
    assert f"applied as revision {before + 1}" in applied.output
    runtime.replica.catch_up(runtime.database)
    assert runtime.replica.snapshot.index.role_allows("maintainer", "backend_token", "set")

    again = runner.invoke(app, ["policy", "apply", str(policies)], env=env)
    assert "no rule changes" in again.output


def test_apply_of_a_route_edit_prints_it_and_writes_a_revision(database_url: str, runtime: Runtime,
                                                               tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, policies)
    routes = policies / "routes.yaml"
    shipped = "  DELETE /jobs/{id}:                {type: job, id: id, action: delete}\n"
    assert shipped in routes.read_text()
    renamed = "  DELETE /jobs/{job}: {type: job, id: job, action: delete}\n"
    added = "  GET /reports: {type: algorithm, action: read}\n"
    routes.write_text(routes.read_text().replace(shipped, renamed) + added)
    before = runtime.replica.revision
    applied = runner.invoke(app, ["policy", "apply", str(policies)], env=env_for(database_url))
    assert applied.exit_code == 0, applied.output
    lines = applied.output.splitlines()
    assert "+ route GET /reports" in lines and "+ route DELETE /jobs/{job}" in lines
    assert "- route DELETE /jobs/{id}" in lines and f"applied as revision {before + 1}" in lines
    runtime.replica.catch_up(runtime.database)
    policy = runtime.replica.snapshot.policy
    assert policy is not None and policy.routes.match("GET", "/reports") is not None


def test_check_with_explain(database_url: str, client: TestClient, runtime: Runtime) -> None:
    org_id = create_org(client, "alice")
    add_member(runtime, org_id, "max", "maintainer")
    env = env_for(database_url)
    allowed = runner.invoke(app, ["check", "--subject", "max", "--action", "create", "--resource", "algorithm",
                                  "--context", org_id, "--explain"], env=env)
    assert allowed.exit_code == 0, allowed.output
    explained = json.loads(allowed.output)
    assert explained["allowed"] is True
    assert explained["explanation"]["role"] == "maintainer"
    assert explained["explanation"]["rule"] == ["p", "maintainer", "*", "algorithm", "create"]

    denied = runner.invoke(app, ["check", "--subject", "max", "--action", "delete", "--resource", "algorithm",
                                 "--context", org_id], env=env)
    assert denied.exit_code == 2
    assert denied.output.startswith("denied")


@pytest.mark.parametrize("hostile", ["*", "..", "a,b", "x' OR '1'='1", "a" * 300, "bad\x00id"])
def test_check_rejects_hostile_subjects(database_url: str, runtime: Runtime, hostile: str) -> None:
    result = runner.invoke(app, ["check", "--subject", hostile, "--action", "read", "--resource", "algorithm",
                                 "--context", "personal"], env=env_for(database_url))
    assert result.exit_code == 1
    assert "invalid subject" in result.output
