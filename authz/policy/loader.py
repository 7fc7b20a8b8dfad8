"""Loading and validating `policies/*.yaml` into a PolicyDocument, with file and line for every error."""

from pathlib import Path

import yaml

from authz.domain import ids
from authz.domain.errors import Invalid
from authz.policy.document import ObjectType, PolicyDocument, Role
from authz.policy.yaml_nodes import NodeReader, PolicyError, PolicyInvalid

# Files in the policy directory that are not role/permission files.
ROUTES_FILE = "routes.yaml"
RESERVED_TYPE_NAMES = frozenset({"user"})  # "user:<id>" is the personal context


def policy_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.yaml") if p.name != ROUTES_FILE)


def _valid_name(reader: NodeReader, node: yaml.Node, value: str, what: str) -> bool:
    try:
        ids.name(value, what)
    except Invalid as exc:
        reader.error(node, f"{what} {value!r}: {exc.detail}")
        return False
    return True


class _Collector:
    """Gathers roles and types from every file, then checks references across files."""

    def __init__(self) -> None:
        self.roles: dict[str, Role] = {}
        self.role_nodes: dict[str, tuple[NodeReader, yaml.Node]] = {}
        self.role_refs: list[tuple[NodeReader, yaml.Node, str, str]] = []  # (reader, node, role, where)
        self.types: dict[str, ObjectType] = {}
        self.context_owner: tuple[NodeReader, yaml.Node, str] | None = None
        self.first_roles: tuple[NodeReader, yaml.Node] | None = None  # where `context_owner` belongs
        self.errors: list[PolicyError] = []

    def read_file(self, reader: NodeReader, root: yaml.Node | None) -> None:
        if root is None:
            return
        for key, key_node, value in reader.mapping(root, "the file"):
            if key == "roles":
                self.first_roles = self.first_roles or (reader, key_node)
                self._read_roles(reader, value)
            elif key == "types":
                self._read_types(reader, value)
            elif key == "context_owner":
                self._read_context_owner(reader, key_node, value)
            else:
                reader.error(key_node, f"unknown section {key!r} (expected context_owner, roles or types)")

    def _read_context_owner(self, reader: NodeReader, key_node: yaml.Node, value: yaml.Node) -> None:
        if self.context_owner is not None:
            reader.error(key_node, f"context_owner is defined twice (first in {self.context_owner[0].file})")
            return
        role = reader.string(value, "context_owner")
        if role is not None:
            self.context_owner = (reader, value, role)

    def _read_roles(self, reader: NodeReader, node: yaml.Node) -> None:
        for name, key_node, spec in reader.mapping(node, "roles"):
            if not _valid_name(reader, key_node, name, "role"):
                continue
            if name in self.roles:
                reader.error(key_node, f"role {name!r} is defined twice")
                continue
            inherits: list[str] = []
            description = ""
            if not (isinstance(spec, yaml.ScalarNode) and spec.value in ("", "~", "null")):
                for field, field_node, value in reader.mapping(spec, f"role {name!r}"):
                    if field == "inherits":
                        for parent, parent_node in reader.string_list(value, f"inherits of {name!r}"):
                            inherits.append(parent)
                            self.role_refs.append((reader, parent_node, parent, f"inherits of role {name!r}"))
                    elif field == "description":
                        description = reader.string(value, "description") or ""
                    else:
                        reader.error(field_node, f"unknown key {field!r} in role {name!r}")
            self.roles[name] = Role(name, tuple(inherits), description)
            self.role_nodes[name] = (reader, key_node)

    def _read_types(self, reader: NodeReader, node: yaml.Node) -> None:
        for name, key_node, spec in reader.mapping(node, "types"):
            if not _valid_name(reader, key_node, name, "object type"):
                continue
            if name in RESERVED_TYPE_NAMES:
                reader.error(key_node, f"object type {name!r} is reserved")
                continue
            if name in self.types:
                reader.error(key_node, f"object type {name!r} is defined twice")
                continue
            content = False
            actions: dict[str, tuple[str, ...]] = {}
            for field, field_node, value in reader.mapping(spec, f"type {name!r}"):
                if field == "content":
                    content = bool(reader.boolean(value, f"content of {name!r}"))
                elif field == "actions":
                    for action, action_node, roles in reader.mapping(value, f"actions of {name!r}"):
                        if not _valid_name(reader, action_node, action, "action"):
                            continue
                        granted = reader.string_list(roles, f"roles of {name}.{action}")
                        for role, role_node in granted:
                            self.role_refs.append((reader, role_node, role, f"{name}.{action}"))
                        actions[action] = tuple(role for role, _ in granted)
                else:
                    reader.error(field_node, f"unknown key {field!r} in type {name!r} (expected content, actions)")
            if not actions:
                reader.error(key_node, f"object type {name!r} has no actions")
            self.types[name] = ObjectType(name, actions, content)

    def check_references(self) -> None:
        for reader, node, role, where in self.role_refs:
            if role not in self.roles:
                reader.error(node, f"unknown role {role!r} in {where}")
        self._check_context_owner()
        self._check_cycles()

    def _check_context_owner(self) -> None:
        """The policy names the role that owns a context, and it is one of its roles."""
        if self.context_owner is not None:
            reader, node, role = self.context_owner
            if role not in self.roles:
                reader.error(node, f"context_owner {role!r} is not a declared role "
                                   f"(roles: {', '.join(sorted(self.roles)) or 'none'})")
        elif self.first_roles is not None:
            reader, node = self.first_roles
            reader.error(node, "context_owner is missing: name the role that owns a context beside roles "
                               "(e.g. `context_owner: owner`)")

    def _check_cycles(self) -> None:
        """Report each inheritance cycle once, at the role where the search meets it again."""
        done: set[str] = set()
        for start in self.roles:
            self._visit(start, [], done)

    def _visit(self, role: str, path: list[str], done: set[str]) -> None:
        """Depth-first through `inherits`; `path` is the chain of roles that led to `role`."""
        if role in path:
            cycle = " → ".join(path[path.index(role) :] + [role])
            reader, node = self.role_nodes[role]
            reader.error(node, f"inheritance cycle: {cycle}")
            return
        if role in done or role not in self.roles:
            return
        path.append(role)
        for parent in self.roles[role].inherits:
            self._visit(parent, path, done)
        path.pop()
        done.add(role)


def load_policy_dir(directory: Path) -> PolicyDocument:
    """Read and validate every policy file of a directory; raises PolicyInvalid listing all errors."""
    if not directory.is_dir():
        raise PolicyInvalid([PolicyError(str(directory), 1, "policy directory does not exist")])
    files = policy_files(directory)
    if not files:
        raise PolicyInvalid([PolicyError(str(directory), 1, "no *.yaml policy files")])
    collector = _Collector()
    readers: list[NodeReader] = []
    unreadable = False
    for path in files:
        reader = NodeReader(path, str(path))
        readers.append(reader)
        root = reader.compose()
        unreadable = unreadable or root is None
        collector.read_file(reader, root)
    if not unreadable:  # references into a file that failed to parse would only add noise
        collector.check_references()
    errors = [error for reader in readers for error in reader.errors]
    if not collector.roles and not errors:
        errors.append(PolicyError(str(directory), 1, "no roles are defined"))
    if not collector.types and not errors:
        errors.append(PolicyError(str(directory), 1, "no object types are defined"))
    if errors:
        raise PolicyInvalid(sorted(errors, key=lambda e: (e.file, e.line)))
    assert collector.context_owner is not None, "checked by _check_context_owner"
    return PolicyDocument(collector.roles, collector.types, collector.context_owner[2])
