"""The policy in force: roles with inheritance and, per object type, the roles granted each action."""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from authz_client.decisions.ids import Rule as Rule  # the decision index's rule type

from authz.domain.ids import ALL_DOMAINS


@dataclass(frozen=True)
class Role:
    name: str
    inherits: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class ObjectType:
    name: str
    actions: dict[str, tuple[str, ...]]  # action → roles granted it directly
    content: bool = False


@dataclass(frozen=True)
class PolicyDocument:
    """A validated policy. Build it with `authz.policy.loader.load_policy_dir`."""

    roles: dict[str, Role]
    types: dict[str, ObjectType]

    def permission_rules(self) -> list[Rule]:
        """`p, <role>, *, <type>, <action>` for every direct grant, in a stable order."""
        rules = {
            ("p", role, ALL_DOMAINS, type_.name, action)
            for type_ in self.types.values()
            for action, roles in type_.actions.items()
            for role in roles
        }
        return sorted(rules)

    def hierarchy_rules(self) -> list[Rule]:
        """`g, <role>, <inherited role>, *`: the hierarchy, once for every domain."""
        return sorted(
            {("g", role.name, parent, ALL_DOMAINS) for role in self.roles.values() for parent in role.inherits}
        )

    def rules(self) -> list[Rule]:
        return self.permission_rules() + self.hierarchy_rules()

    def content_types(self) -> frozenset[str]:
        return frozenset(name for name, type_ in self.types.items() if type_.content)

    def effective_roles(self, role: str) -> Iterator[str]:
        """The role itself and every role it inherits, transitively."""
        seen: set[str] = set()
        stack = [role]
        while stack:
            current = stack.pop()
            if current in seen or current not in self.roles:
                continue
            seen.add(current)
            yield current
            stack.extend(self.roles[current].inherits)

    def to_json(self) -> dict[str, Any]:
        return {
            "roles": {
                r.name: {"inherits": list(r.inherits), "description": r.description} for r in self.roles.values()
            },
            "types": {
                t.name: {"content": t.content, "actions": {a: list(rs) for a, rs in t.actions.items()}}
                for t in self.types.values()
            },
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "PolicyDocument":
        roles = {
            name: Role(name, tuple(spec["inherits"]), spec.get("description", ""))
            for name, spec in data["roles"].items()
        }
        types = {
            name: ObjectType(name, {a: tuple(rs) for a, rs in spec["actions"].items()}, bool(spec["content"]))
            for name, spec in data["types"].items()
        }
        return cls(roles, types)
