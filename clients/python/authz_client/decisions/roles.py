"""What each role may do, compiled once per policy change from the `p` rules and the hierarchy.

The one answer to "may this role do this action on this type" for decisions, listings and
writes alike (the server asks it too); pycasbin (the server's `authz.policy.model`) evaluates
the same rules only as the oracle and for explanations. The hierarchy is `g, <role>,
<inherited role>, *`; the account holder (`ids.ACCOUNT_HOLDER`) inherits the role that owns a
context, so a personal account's permissions are that role's, whatever the policy calls it.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field

from authz_client.decisions import ids

Permission = tuple[str, str]  # (object type, action)


@dataclass(frozen=True)
class CompiledRoles:
    """Roles at one revision of the policy: direct grants, inheritance and effective permissions."""

    grants: Mapping[str, frozenset[Permission]] = field(default_factory=dict)  # role → direct permissions
    parents: Mapping[str, frozenset[str]] = field(default_factory=dict)  # role → directly inherited roles
    effective: Mapping[str, frozenset[Permission]] = field(default_factory=dict)  # after inheritance

    @classmethod
    def compile(
        cls, grants: Mapping[str, frozenset[Permission]], parents: Mapping[str, frozenset[str]]
    ) -> "CompiledRoles":
        """Each role's effective permissions after inheritance (a few dozen rules: cheap)."""
        effective: dict[str, frozenset[Permission]] = {}
        roles = set(grants) | set(parents) | {p for ps in parents.values() for p in ps}
        for role in roles:
            seen: set[str] = set()
            stack = [role]
            permissions: set[Permission] = set()
            while stack:
                current = stack.pop()
                if current in seen:
                    continue
                seen.add(current)
                permissions |= grants.get(current, frozenset())
                stack.extend(parents.get(current, ()))
            effective[role] = frozenset(permissions)
        return cls(dict(grants), dict(parents), effective)

    def allows(self, role: str, object_type: str, action: str) -> bool:
        """Does `role`, with everything it inherits, have `action` on `object_type`?"""
        return (object_type, action) in self.effective.get(role, ())

    @property
    def context_owner(self) -> str | None:
        """The role that owns a context: an org's creator gets it, its last holder cannot go, a
        personal account's holder acts as it. None when the rules name none (no policy yet)."""
        owners = self.parents.get(ids.ACCOUNT_HOLDER, frozenset())
        return min(owners) if owners else None  # authz writes exactly one

    def inherited(self, role: str) -> frozenset[str]:
        """The roles `role` inherits directly."""
        return self.parents.get(role, frozenset())
