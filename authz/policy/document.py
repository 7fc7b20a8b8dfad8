"""The policy in force: roles with inheritance, the role that owns a context, per object
type the roles granted each action, and the forward-auth routes (`policies/routes.yaml`)."""

from dataclasses import dataclass, field
from typing import Any

from authz.domain.ids import ACCOUNT_HOLDER, ALL_DOMAINS
from authz.policy.route_table import RouteTable
from authz_client.decisions.ids import Rule as Rule  # the decision index's rule type

# The role every context had before policies named it (personal accounts acted as "owner"):
# a document stored by an older authz, without `context_owner`, means this one.
LEGACY_CONTEXT_OWNER = "owner"


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
    context_owner: str  # the role that owns a context: an org's creator gets it, a personal account's holder has it
    # What a proxied request needs (forward-auth), applied, stored and replicated with the rest,
    # so every replica maps a request the same way at the same revision.
    routes: RouteTable = field(default_factory=RouteTable)

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
        """`g, <role>, <inherited role>, *`: the hierarchy, once for every domain, and
        `g, account-holder, <context owner>, *`: the role of a personal account's holder."""
        return sorted(
            {("g", role.name, parent, ALL_DOMAINS) for role in self.roles.values() for parent in role.inherits}
            | {("g", ACCOUNT_HOLDER, self.context_owner, ALL_DOMAINS)}
        )

    def rules(self) -> list[Rule]:
        return self.permission_rules() + self.hierarchy_rules()

    def content_types(self) -> frozenset[str]:
        return frozenset(name for name, type_ in self.types.items() if type_.content)

    def to_json(self) -> dict[str, Any]:
        return {
            "context_owner": self.context_owner,
            "roles": {
                r.name: {"inherits": list(r.inherits), "description": r.description} for r in self.roles.values()
            },
            "types": {
                t.name: {"content": t.content, "actions": {a: list(rs) for a, rs in t.actions.items()}}
                for t in self.types.values()
            },
            "routes": self.routes.to_json(),
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
        # A document stored before routes were part of the policy has no "routes": no routes
        # until the next start adds them from routes.yaml (authz.services.policy_admin.ensure_policy).
        routes = RouteTable.from_json(data.get("routes"))
        return cls(roles, types, data.get("context_owner", LEGACY_CONTEXT_OWNER), routes)
