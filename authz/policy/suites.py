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
from typing import Literal

from pydantic import AliasChoices, Field

from authz.domain import ids
from authz.policy.document import PolicyDocument, Rule
from authz.policy.model import build_enforcer, casbin_request
from authz.policy.yaml_nodes import ANY, Loc, Names, Places, PolicyModel, Report, YamlFile, load

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
        return (f"{self.file}:{self.line}: {self.principal} {self.action} {self.object_type} ({self.context}): "
                f"expected {want}, {got}")


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


class TestSpec(PolicyModel):
    """One test: for each type, the actions each principal may do; every other action is denied."""

    __test__ = False  # not a pytest class, despite its name

    types: Names = Field(default=[], validation_alias=AliasChoices("types", "type"))
    context: Literal["organization", "personal"] = "organization"
    resource: str = ""  # "" or a "type:id" declared under `resources`
    allowed: dict[str, Names] = {}  # principal → actions


class SuiteFile(PolicyModel):
    suite: str = ""
    principals: dict[str, str | None] = {}  # name → role in the suite's organization
    resources: dict[str, dict[str, str]] = {}  # "type:id" → principal → role on that resource
    tests: list[TestSpec]


PLACES = Places(
    root="the suite",
    root_model=SuiteFile,
    names={
        ("principals", ANY): ("the role of {1!r}", None),
        ("resources", ANY): ("roles on {1}", None),
        ("resources", ANY, ANY): ("the role of {2!r} on {1}", None),
        ("tests", ANY): ("a test", TestSpec),
        ("tests", ANY, "allowed", ANY): ("actions of {3}", None),
    },
)


def _read_suite(path: Path, document: PolicyDocument, report: Report) -> _Suite | None:
    """The suite of one file, every name in it checked against `document` and its own declarations."""
    loaded = load(path, PLACES, SuiteFile, report)
    if loaded is None:
        return None
    source, suite = loaded.source, loaded.model
    declared = set(suite.principals) | {str(loc[1]) for loc in loaded.dropped if loc[:1] == ("principals",)}
    for name, role in suite.principals.items():
        if role is not None and role not in document.roles:
            report.at(source, ("principals", name), f"unknown role {role!r} for principal {name!r}")
    for scope, roles in suite.resources.items():
        type_name, _, resource = scope.partition(":")
        if type_name not in document.types or not resource:
            report.at(source, ("resources", scope), f"resource {scope!r} must be <type>:<id> with a known type",
                      of_key=True)
        for name, role in roles.items():
            if name not in declared:
                report.at(source, ("resources", scope, name), f"unknown principal {name!r} in roles on {scope}",
                          of_key=True)
            if role not in document.roles:
                report.at(source, ("resources", scope, name), f"unknown role {role!r}")
    cases = [
        case
        for index, test in enumerate(suite.tests)
        for case in _cases(source, ("tests", index), test, document, suite, declared, report)
    ]
    return _Suite(source.file, suite.principals, suite.resources, cases)


def _cases(
    source: YamlFile,
    loc: Loc,
    test: TestSpec,
    document: PolicyDocument,
    suite: SuiteFile,
    declared: set[str],
    report: Report,
) -> list[_Case]:
    """Every (principal, type, action) of one test, allowed or not; reports the names it does not know."""
    if test.resource and test.resource not in suite.resources:
        report.at(source, (*loc, "resource"), f"resource {test.resource!r} is not declared under resources")
    for name in test.allowed:
        if name not in declared:
            report.at(source, (*loc, "allowed", name), f"unknown principal {name!r}", of_key=True)
    cases: list[_Case] = []
    for index, type_name in enumerate(test.types):
        object_type = document.types.get(type_name)
        if object_type is None:
            report.at(source, (*loc, "types", index), f"unknown object type {type_name!r}")
            continue
        if test.resource and test.resource.partition(":")[0] != type_name:
            report.at(source, (*loc, "types", index), f"resource {test.resource!r} is not of type {type_name!r}")
            continue
        for principal, actions in test.allowed.items():
            for position, action in enumerate(actions):
                if action not in object_type.actions:
                    report.at(source, (*loc, "allowed", principal, position),
                              f"unknown action {action!r} for type {type_name!r}")
            line = source.line((*loc, "allowed", principal), of_key=True)
            cases.extend(
                _Case(line, principal, type_name, action, test.context, test.resource, action in actions)
                for action in object_type.actions
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
    report = Report()
    suites = [suite for path in suite_files(directory) if (suite := _read_suite(path, document, report)) is not None]
    report.raise_if_any()
    results: list[CaseResult] = []
    for suite in suites:
        enforcer = build_enforcer(model_path, _suite_rules(suite, document))
        for case in suite.cases:
            subject = ids.subject_of(case.principal)
            domain = subject if case.context == "personal" else SUITE_ORG
            actual = enforcer.enforce(*casbin_request(subject, domain, case.object_type, case.resource, case.action))
            results.append(CaseResult(suite.file, case.line, case.principal, case.object_type, case.action,
                                      case.context, case.expected, actual))
    return results
