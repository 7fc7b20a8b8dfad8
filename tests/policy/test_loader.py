"""Validation of the policy files: every mistake is reported with its file, line and reason."""

import shutil
from pathlib import Path

import pytest

from authz.domain.ids import ACCOUNT_HOLDER
from authz.policy.loader import load_policy_dir
from authz.policy.yaml_nodes import PolicyInvalid
from authz_client.decisions.index import DecisionIndex
from tests.conftest import POLICY_DIR


@pytest.fixture
def policy_copy(tmp_path: Path) -> Path:
    target = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, target)
    return target


def errors_of(directory: Path) -> list[str]:
    with pytest.raises(PolicyInvalid) as caught:
        load_policy_dir(directory)
    return [str(e) for e in caught.value.errors]


def replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def line_of(path: Path, needle: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def test_shipped_policy_is_valid() -> None:
    document = load_policy_dir(POLICY_DIR)
    assert set(document.roles) == {"viewer", "maintainer", "owner"}
    assert document.content_types() == {"algorithm", "implementation", "service", "application", "job", "data_pool"}
    assert document.context_owner == "owner"
    assert ("p", "owner", "*", "backend_token", "set") in document.permission_rules()
    assert document.hierarchy_rules() == [("g", ACCOUNT_HOLDER, "owner", "*"), ("g", "maintainer", "viewer", "*"),
                                          ("g", "owner", "maintainer", "*")]
    editor = DecisionIndex.build()
    for rule in document.rules():
        editor.add_rule(rule)
    roles = editor.finish().roles  # what the rules compile to: owner > maintainer > viewer, the holder = owner
    assert roles.effective["owner"] > roles.effective["maintainer"] > roles.effective["viewer"]
    assert roles.effective[ACCOUNT_HOLDER] == roles.effective["owner"] and roles.context_owner == "owner"


def test_a_policy_must_name_its_context_owner(policy_copy: Path) -> None:
    roles = policy_copy / "roles.yaml"
    replace(roles, "context_owner: owner\n", "")
    assert errors_of(policy_copy) == [
        (f"{roles}:{line_of(roles, 'roles:')}: context_owner is missing: name the role that owns a context "
         "beside roles (e.g. `context_owner: owner`)")]


def test_the_context_owner_must_be_a_declared_role(policy_copy: Path) -> None:
    roles = policy_copy / "roles.yaml"
    replace(roles, "context_owner: owner\n", "context_owner: boss\n")
    assert errors_of(policy_copy) == [(f"{roles}:{line_of(roles, 'context_owner: boss')}: context_owner 'boss' is not "
                                       "a declared role (roles: maintainer, owner, viewer)")]


def test_the_context_owner_is_named_once(policy_copy: Path) -> None:
    roles = policy_copy / "roles.yaml"
    (policy_copy / "more.yaml").write_text("context_owner: viewer\n")  # read first (files go in name order)
    assert errors_of(policy_copy) == [(f"{roles}:{line_of(roles, 'context_owner: owner')}: context_owner is defined "
                                       f"twice (first in {policy_copy / 'more.yaml'})")]


def test_the_context_owner_is_a_name(policy_copy: Path) -> None:
    roles = policy_copy / "roles.yaml"
    replace(roles, "context_owner: owner\n", "context_owner: [owner]\n")
    assert f"{roles}:{line_of(roles, 'context_owner: [')}: context_owner must be a string" in errors_of(policy_copy)


def test_unknown_role_names_file_and_line(policy_copy: Path) -> None:
    permissions = policy_copy / "permissions.yaml"
    replace(permissions, "      set: [owner]", "      set: [ownr]")
    assert errors_of(policy_copy) == [
        f"{permissions}:{line_of(permissions, 'ownr')}: unknown role 'ownr' in backend_token.set"
    ]


def test_inheritance_cycle_is_reported(policy_copy: Path) -> None:
    roles = policy_copy / "roles.yaml"
    replace(roles, "  viewer:\n", "  viewer:\n    inherits: [owner]\n")
    errors = errors_of(policy_copy)
    assert len(errors) == 1
    assert errors[0].startswith(f"{roles}:")
    assert "inheritance cycle" in errors[0] and "owner" in errors[0]


def test_duplicate_key_is_reported_at_the_second_occurrence(policy_copy: Path) -> None:
    permissions = policy_copy / "permissions.yaml"
    replace(
        permissions,
        "      read: [owner]\n      update: [owner]\n",
        "      read: [owner]\n      read: [viewer]\n      update: [owner]\n",
    )
    errors = errors_of(policy_copy)
    assert errors == [f"{permissions}:{_second(permissions, 'read: [')}: duplicate key 'read' in actions of 'billing'"]


def _second(path: Path, needle: str) -> int:
    lines = [n for n, line in enumerate(path.read_text().splitlines(), 1) if needle in line]
    billing = line_of(path, "billing:")
    return [n for n in lines if n > billing][1]


def test_bad_yaml_is_reported_with_its_line(policy_copy: Path) -> None:
    roles = policy_copy / "roles.yaml"
    roles.write_text("roles:\n  viewer: {\n  owner: [\n")
    errors = errors_of(policy_copy)
    assert len(errors) == 1 and errors[0].startswith(f"{roles}:") and "bad YAML" in errors[0]


def test_typos_in_keys_and_names_are_reported(policy_copy: Path) -> None:
    permissions = policy_copy / "permissions.yaml"
    replace(permissions, "  billing:\n    actions:", "  billing:\n    actons:")
    replace(permissions, "      delete: [owner]\n  billing", "      Delete!: [owner]\n  billing")
    errors = errors_of(policy_copy)
    assert any("unknown key 'actons' in type 'billing'" in e for e in errors)
    assert any("action 'Delete!'" in e for e in errors)
    assert all(e.startswith(str(permissions)) for e in errors)


def test_reserved_type_user_is_rejected(policy_copy: Path) -> None:
    (policy_copy / "extra.yaml").write_text("types:\n  user:\n    actions:\n      read: [viewer]\n")
    assert errors_of(policy_copy) == [f"{policy_copy / 'extra.yaml'}:2: object type 'user' is reserved"]


def test_every_error_of_a_run_is_reported_at_once(policy_copy: Path) -> None:
    permissions = policy_copy / "permissions.yaml"
    replace(permissions, "use: [maintainer]", "use: [maintaner]")
    replace(permissions, "update: [owner]", "update: [boss]")
    assert len(errors_of(policy_copy)) == 2


def test_a_broken_entry_does_not_hide_the_mistakes_of_the_others(policy_copy: Path) -> None:
    permissions = policy_copy / "permissions.yaml"
    replace(permissions, "  billing:\n    actions:", "  billing:\n    colour: red\n    actions:")
    replace(permissions, "use: [maintainer]", "use: [maintaner]")
    assert errors_of(policy_copy) == [
        f"{permissions}:{line_of(permissions, 'colour')}: "
        "unknown key 'colour' in type 'billing' (expected content, actions)",
        f"{permissions}:{line_of(permissions, 'maintaner')}: unknown role 'maintaner' in backend_token.use",
    ]
