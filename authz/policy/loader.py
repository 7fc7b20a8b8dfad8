"""Loading and validating `policies/*.yaml` into a PolicyDocument, with file and line for every error.

    context_owner: owner          # the role that owns a context (exactly one file says it)
    roles:
      viewer: {description: Sees the context's content.}
      owner: {inherits: [viewer]}
    types:
      algorithm:
        content: true             # may be registered as a resource
        actions: {read: [viewer], delete: owner}

The files' shapes are the models below; what spans entries and files (each name defined
once, references to declared roles, no inheritance cycle, the context owner) is the one
semantic pass `_Policy`.
"""

from dataclasses import replace
from pathlib import Path
from typing import Annotated, TypeVar

from pydantic import AfterValidator, Field, model_validator

from authz.domain import ids
from authz.domain.errors import Invalid
from authz.policy.document import ObjectType, PolicyDocument, Role
from authz.policy.routes import ROUTES_FILE, load_routes
from authz.policy.yaml_nodes import (
    ANY,
    Loaded,
    Loc,
    Names,
    Places,
    PolicyError,
    PolicyInvalid,
    PolicyModel,
    Report,
    YamlFile,
    load,
    refuse,
)

RESERVED_TYPE_NAMES = frozenset({"user"})  # "user:<id>" is the personal context


def policy_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.yaml") if p.name != ROUTES_FILE)


def _name(what: str) -> AfterValidator:
    """A policy name (lowercase snake_case) for `what`, as a validator of keys."""

    def check(value: str) -> str:
        try:
            return ids.name(value, f"{what} {value!r}")
        except Invalid as exc:
            raise refuse(exc.detail) from None

    return AfterValidator(check)


def _not_reserved(value: str) -> str:
    if value in RESERVED_TYPE_NAMES:
        raise refuse(f"object type {value!r} is reserved")
    return value


RoleName = Annotated[str, _name("role")]
TypeName = Annotated[str, _name("object type"), AfterValidator(_not_reserved)]
ActionName = Annotated[str, _name("action")]


class RoleSpec(PolicyModel):
    inherits: Names = []
    description: str = ""

    @model_validator(mode="before")
    @classmethod
    def _empty_role(cls, data: object) -> object:
        """`viewer:` with nothing under it is a role with no parents and no description."""
        return {} if data is None else data


class TypeSpec(PolicyModel):
    content: bool = False
    actions: Annotated[dict[ActionName, Names], Field(min_length=1)]  # action → roles granted it directly


class PolicyFile(PolicyModel):
    """One file of the policy directory; roles and types may be spread over several files."""

    context_owner: str | None = None
    roles: dict[RoleName, RoleSpec] = {}
    types: dict[TypeName, TypeSpec] = {}


PLACES = Places(
    root="the file",
    root_model=PolicyFile,
    names={
        ("roles", ANY): ("role {1!r}", RoleSpec),
        ("roles", ANY, "inherits"): ("inherits of {1!r}", None),
        ("types", ANY): ("type {1!r}", TypeSpec),
        ("types", ANY, "content"): ("content of {1!r}", None),
        ("types", ANY, "actions"): ("actions of {1!r}", None),
        ("types", ANY, "actions", ANY): ("roles of {1}.{3}", None),
    },
)


Spec = TypeVar("Spec", RoleSpec, TypeSpec)


class _Policy:
    """The semantic pass: names defined once across files, every reference declared, no cycle."""

    def __init__(self, report: Report) -> None:
        self.report = report
        self.roles: dict[str, tuple[YamlFile, RoleSpec]] = {}
        self.types: dict[str, tuple[YamlFile, TypeSpec]] = {}
        self.broken_roles: set[str] = set()  # declared, but left out for their own errors
        self.context_owner: tuple[YamlFile, str] | None = None

    def add(self, loaded: Loaded[PolicyFile]) -> None:
        source, file = loaded.source, loaded.model
        self.broken_roles |= {str(loc[1]) for loc in loaded.dropped if len(loc) == 2 and loc[0] == "roles"}
        for name, role in file.roles.items():
            self._define(self.roles, source, ("roles", name), role, f"role {name!r}")
        for name, type_ in file.types.items():
            self._define(self.types, source, ("types", name), type_, f"object type {name!r}")
        if file.context_owner is not None and self.context_owner is not None:
            twice = f"context_owner is defined twice (first in {self.context_owner[0].file})"
            self.report.at(source, ("context_owner",), twice, of_key=True)
        elif file.context_owner is not None:
            self.context_owner = (source, file.context_owner)

    def _define(self, defined: dict[str, tuple[YamlFile, Spec]], source: YamlFile, loc: Loc, spec: Spec,
                what: str) -> None:
        if str(loc[1]) in defined:
            self.report.at(source, loc, f"{what} is defined twice", of_key=True)
        else:
            defined[str(loc[1])] = (source, spec)

    def check_references(self) -> None:
        for name, (source, role) in self.roles.items():
            for index, parent in enumerate(role.inherits):
                self._known_role(source, ("roles", name, "inherits", index), parent, f"inherits of role {name!r}")
        for type_name, (source, type_) in self.types.items():
            for action, granted in type_.actions.items():
                for index, role_name in enumerate(granted):
                    loc = ("types", type_name, "actions", action, index)
                    self._known_role(source, loc, role_name, f"{type_name}.{action}")
        if self.context_owner is not None:
            source, owner = self.context_owner
            if owner not in self.roles and owner not in self.broken_roles:
                declared = ", ".join(sorted(self.roles)) or "none"
                self.report.at(source, ("context_owner",), f"context_owner {owner!r} is not a declared role "
                               f"(roles: {declared})")
        elif self.roles:
            source = next(iter(self.roles.values()))[0]
            self.report.at(source, ("roles",), "context_owner is missing: name the role that owns a context beside "
                           "roles (e.g. `context_owner: owner`)", of_key=True)
        self._check_cycles()

    def _known_role(self, source: YamlFile, loc: Loc, role: str, where: str) -> None:
        if role not in self.roles and role not in self.broken_roles:
            self.report.at(source, loc, f"unknown role {role!r} in {where}")

    def _check_cycles(self) -> None:
        """Report each inheritance cycle once, at the role where the search meets it again."""
        done: set[str] = set()
        for start in self.roles:
            self._visit(start, [], done)

    def _visit(self, role: str, path: list[str], done: set[str]) -> None:
        """Depth-first through `inherits`; `path` is the chain of roles that led to `role`."""
        if role in path:
            cycle = " → ".join(path[path.index(role) :] + [role])
            self.report.at(self.roles[role][0], ("roles", role), f"inheritance cycle: {cycle}", of_key=True)
            return
        if role in done or role not in self.roles:
            return
        path.append(role)
        for parent in self.roles[role][1].inherits:
            self._visit(parent, path, done)
        path.pop()
        done.add(role)

    def document(self) -> PolicyDocument:
        roles = {name: Role(name, tuple(spec.inherits), spec.description) for name, (_, spec) in self.roles.items()}
        types = {
            name: ObjectType(name, {action: tuple(granted) for action, granted in spec.actions.items()}, spec.content)
            for name, (_, spec) in self.types.items()
        }
        assert self.context_owner is not None, "check_references reports a missing context_owner"
        return PolicyDocument(roles, types, context_owner=self.context_owner[1])


def load_policy_dir(directory: Path) -> PolicyDocument:
    """Read and validate every policy file of a directory, routes.yaml included; raises PolicyInvalid
    listing all errors (the route file's once the roles and types it names are valid)."""
    if not directory.is_dir():
        raise PolicyInvalid([PolicyError(str(directory), 1, "policy directory does not exist")])
    files = policy_files(directory)
    if not files:
        raise PolicyInvalid([PolicyError(str(directory), 1, "no *.yaml policy files")])
    report = Report()
    policy = _Policy(report)
    whole = True  # references into a file or section that failed as a whole would only add noise
    for path in files:
        loaded = load(path, PLACES, PolicyFile, report)
        whole = whole and loaded is not None and all(len(loc) == 2 for loc in loaded.dropped)
        if loaded is not None:
            policy.add(loaded)
    if whole:
        policy.check_references()
    if not policy.roles and not report.errors:
        report.add(str(directory), 1, "no roles are defined")
    if not policy.types and not report.errors:
        report.add(str(directory), 1, "no object types are defined")
    report.raise_if_any()
    document = policy.document()
    return replace(document, routes=load_routes(directory, document))
