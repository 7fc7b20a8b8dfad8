"""Policy test suites (`policies/tests/*_test.yaml`), run offline against the real Casbin model.

A suite names principals and their roles, then for each object type lists the actions
each principal may do; every other action of that type is expected to be denied.

    suite: shipped roles
    principals: {olivia: owner, vic: viewer, stranger: null}
    resources: {"algorithm:shared": {stranger: viewer}}   # optional roles on one resource
    tests:
      - types: [algorithm]
        context: organization        # or personal (each principal in its own account)
        resource: algorithm:shared   # optional: ask about this registered resource
        allowed:
          olivia: [read, create, update, execute, delete, share]
          vic: [read]
          stranger: []
"""

from dataclasses import dataclass
from pathlib import Path

import yaml

from authz.domain import ids
from authz.policy.document import PolicyDocument, Rule
from authz.policy.model import build_enforcer, casbin_request
from authz.policy.yaml_nodes import NodeReader, PolicyError, PolicyInvalid

SUITE_ORG = "org_" + "5" * 24  # the organization every suite's principals belong to


@dataclass(frozen=True)
class CaseResult:
    file: str
    line: int
    principal: str
    object_type: str
    action: str
    context: str
    expected: bool
    actual: bool

    @property
    def passed(self) -> bool:
        return self.expected == self.actual

    def __str__(self) -> str:
        want = "allow" if self.expected else "deny"
        got = "allowed" if self.actual else "denied"
        return f"{self.file}:{self.line}: {self.principal} {self.action} {self.object_type} ({self.context}): expected {want}, {got}"


@dataclass(frozen=True)
class _Case:
    line: int
    principal: str
    object_type: str
    action: str
    context: str  # "organization" or "personal"
    resource: str  # "" or "type:id"
    expected: bool


@dataclass(frozen=True)
class _Suite:
    file: str
    principals: dict[str, str | None]
    resource_roles: dict[str, dict[str, str]]
    cases: list[_Case]


def suite_files(directory: Path) -> list[Path]:
    return sorted((directory / "tests").glob("*_test.yaml"))


def _read_suite(path: Path, document: PolicyDocument) -> tuple[_Suite | None, list[PolicyError]]:
    reader = NodeReader(path, str(path))
    root = reader.compose()
    if root is None:
        return None, reader.errors
    principals: dict[str, str | None] = {}
    resource_roles: dict[str, dict[str, str]] = {}
    cases: list[_Case] = []
    tests_node: yaml.Node | None = None
    for key, key_node, value in reader.mapping(root, "the suite"):
        if key == "suite":
            reader.string(value, "suite")
        elif key == "principals":
            for name, _, role_node in reader.mapping(value, "principals"):
                role = None if isinstance(role_node, yaml.ScalarNode) and role_node.tag.endswith("null") else reader.string(role_node, "role")
                if role is not None and role not in document.roles:
                    reader.error(role_node, f"unknown role {role!r} for principal {name!r}")
                principals[name] = role
        elif key == "resources":
            for scope, scope_node, roles_node in reader.mapping(value, "resources"):
                type_name, _, resource = scope.partition(":")
                if type_name not in document.types or not resource:
                    reader.error(scope_node, f"resource {scope!r} must be <type>:<id> with a known type")
                roles: dict[str, str] = {}
                for name, _, role_node in reader.mapping(roles_node, f"roles on {scope}"):
                    role = reader.string(role_node, "role")
                    if role is not None and role not in document.roles:
                        reader.error(role_node, f"unknown role {role!r}")
                    elif role is not None:
                        roles[name] = role
                resource_roles[scope] = roles
        elif key == "tests":
            tests_node = value
        else:
            reader.error(key_node, f"unknown key {key!r} (expected suite, principals, resources, tests)")
    if tests_node is None:
        reader.error(root, "the suite has no tests")
    elif not isinstance(tests_node, yaml.SequenceNode):
        reader.error(tests_node, "tests must be a list")
    else:
        for test in tests_node.value:
            cases.extend(_read_test(reader, test, document, principals, resource_roles))
    for scope, roles in resource_roles.items():
        for name in roles:
            if name not in principals:
                reader.error(root, f"unknown principal {name!r} in roles on {scope}")
    return _Suite(str(path), principals, resource_roles, cases), reader.errors


def _read_test(
    reader: NodeReader,
    node: yaml.Node,
    document: PolicyDocument,
    principals: dict[str, str | None],
    resource_roles: dict[str, dict[str, str]],
) -> list[_Case]:
    types: list[tuple[str, yaml.Node]] = []
    context = "organization"
    resource = ""
    allowed: list[tuple[str, yaml.Node, list[tuple[str, yaml.Node]]]] = []
    for key, key_node, value in reader.mapping(node, "a test"):
        if key in ("type", "types"):
            types = reader.string_list(value, key)
        elif key == "context":
            context = reader.string(value, "context") or context
            if context not in ("organization", "personal"):
                reader.error(value, "context must be organization or personal")
        elif key == "resource":
            resource = reader.string(value, "resource") or ""
            if resource not in resource_roles:
                reader.error(value, f"resource {resource!r} is not declared under resources")
        elif key == "allowed":
            for name, name_node, actions in reader.mapping(value, "allowed"):
                if name not in principals:
                    reader.error(name_node, f"unknown principal {name!r}")
                    continue
                allowed.append((name, name_node, reader.string_list(actions, f"actions of {name}")))
        else:
            reader.error(key_node, f"unknown key {key!r} in a test (expected types, context, resource, allowed)")
    cases: list[_Case] = []
    for type_name, type_node in types:
        object_type = document.types.get(type_name)
        if object_type is None:
            reader.error(type_node, f"unknown object type {type_name!r}")
            continue
        if resource and resource.partition(":")[0] != type_name:
            reader.error(type_node, f"resource {resource!r} is not of type {type_name!r}")
            continue
        for principal, name_node, actions in allowed:
            names = {a for a, _ in actions}
            for action, action_node in actions:
                if action not in object_type.actions:
                    reader.error(action_node, f"unknown action {action!r} for type {type_name!r}")
            for action in object_type.actions:
                cases.append(
                    _Case(name_node.start_mark.line + 1, principal, type_name, action, context, resource, action in names)
                )
    return cases


def _suite_rules(suite: _Suite, document: PolicyDocument) -> list[Rule]:
    rules: list[Rule] = list(document.rules())
    for name, role in suite.principals.items():
        if role is not None:
            rules.append(("g", ids.subject_of(name), role, SUITE_ORG))
    for scope, roles in suite.resource_roles.items():
        for name, role in roles.items():
            rules.append(("g", ids.subject_of(name), role, scope))
    return rules


def run_suites(directory: Path, document: PolicyDocument, model_path: Path) -> list[CaseResult]:
    """Every case of every suite; raises PolicyInvalid when a suite file itself is wrong."""
    suites: list[_Suite] = []
    errors: list[PolicyError] = []
    for path in suite_files(directory):
        suite, suite_errors = _read_suite(path, document)
        errors.extend(suite_errors)
        if suite is not None:
            suites.append(suite)
    if errors:
        raise PolicyInvalid(errors)
    results: list[CaseResult] = []
    for suite in suites:
        enforcer = build_enforcer(model_path, _suite_rules(suite, document))
        for case in suite.cases:
            subject = ids.subject_of(case.principal)
            domain = subject if case.context == "personal" else SUITE_ORG
            actual = enforcer.enforce(*casbin_request(subject, domain, case.object_type, case.resource, case.action))
            results.append(
                CaseResult(suite.file, case.line, case.principal, case.object_type, case.action, case.context, case.expected, actual)
            )
    return results
