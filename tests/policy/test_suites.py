"""The policy test suites: the shipped table passes, and a wrong expectation is reported."""

import shutil
from pathlib import Path

import pytest

from authz.policy.loader import load_policy_dir
from authz.policy.suites import run_suites
from authz.policy.yaml_nodes import PolicyInvalid
from tests.conftest import POLICY_DIR, POLICY_MODEL


def test_shipped_suites_pass_and_cover_every_type() -> None:
    document = load_policy_dir(POLICY_DIR)
    results = run_suites(POLICY_DIR, document, POLICY_MODEL)
    assert [str(r) for r in results if not r.passed] == []
    covered = {r.object_type for r in results}
    assert covered == set(document.types)
    # every role of the table appears with both outcomes
    assert {(r.principal, r.actual) for r in results} >= {
        ("olivia", True),
        ("vic", True),
        ("vic", False),
        ("stranger", False),
    }


def test_a_policy_change_that_breaks_the_table_fails_its_case(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, policies)
    permissions = policies / "permissions.yaml"
    permissions.write_text(
        permissions.read_text().replace("      delete: [owner]\n      share", "      delete: [maintainer]\n      share")
    )
    results = run_suites(policies, load_policy_dir(policies), POLICY_MODEL)
    failed = [r for r in results if not r.passed]
    assert all(r.action == "delete" and r.actual and not r.expected for r in failed)
    # max (maintainer in the org) on every content type; vic, maintainer on algorithm:shared only
    assert {(r.principal, r.object_type) for r in failed} == {
        ("max", t) for t in ("algorithm", "implementation", "service", "application", "job", "data_pool")
    } | {("vic", "algorithm")}


def test_a_suite_naming_an_unknown_action_is_invalid(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, policies)
    suite = policies / "tests" / "extra_test.yaml"
    suite.write_text("suite: x\nprincipals: {a: owner}\ntests:\n  - types: [job]\n    allowed:\n      a: [launch]\n")
    with pytest.raises(PolicyInvalid) as caught:
        run_suites(policies, load_policy_dir(policies), POLICY_MODEL)
    assert [str(e) for e in caught.value.errors] == [f"{suite}:6: unknown action 'launch' for type 'job'"]


def test_a_broken_test_does_not_hide_the_mistakes_of_the_tests_after_it(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, policies)
    suite = policies / "tests" / "extra_test.yaml"
    suite.write_text("principals: {a: owner}\ntests:\n  - types: 5\n"
                     "  - types: [job]\n    allowed:\n      a: [launch]\n")
    with pytest.raises(PolicyInvalid) as caught:
        run_suites(policies, load_policy_dir(policies), POLICY_MODEL)
    assert [str(e) for e in caught.value.errors] == [
        f"{suite}:3: types must be a list",
        f"{suite}:6: unknown action 'launch' for type 'job'",
    ]
