"""Decisions compiled from the Casbin rules of `policy_model.conf`.

The meaning is Casbin's (see `authz.policy.model`); this index answers the same question
with a few dict and set lookups. `tests/engine/test_oracle.py` compares the two on random
data, so a difference between them is a bug here.

Rule shapes (all written by authz itself):
- `p, <role>, *, <type>, <action>`   permission, written once for every domain
- `g, <role>, <role>, *`             role hierarchy
- `g, user:<id>, <role>, <org_id>`   membership
- `g, user:<id>, <role>, <type>:<id>`  a role on one resource
"""

import bisect
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from authz.domain import ids
from authz.policy.document import ALL_DOMAINS, Rule

Permission = tuple[str, str]  # (object type, action)
GROUP_SEPARATOR = "\x1f"  # joins the values of one bulk-loaded group; no id, role or name may contain it


@dataclass(frozen=True)
class Decision:
    """A decision with the facts that explain it."""

    allowed: bool
    context: str | None
    role: str | None  # the role that allowed it (or the caller's role in the context when denied)
    via: str  # "membership", "personal", "resource", or why not: "unknown_resource", "no_role", "not_granted"


class DecisionIndex:
    """Memberships, resources and role permissions as dicts; every update is O(1) but policy changes.

    Compact on purpose (1M memberships and 1M resources must fit in a few hundred MB):
    a resource is keyed by its scope string "type:id" (the same string names its own
    roles), contexts of a resource are one dict used as an ordered set, and the bulk
    loader shares one string object per subject, role and context.
    """

    def __init__(self) -> None:
        self._grants: dict[str, set[Permission]] = defaultdict(set)  # role → direct permissions
        self._parents: dict[str, set[str]] = defaultdict(set)  # role → inherited roles
        self._effective: dict[str, frozenset[Permission]] = {}
        self._members: dict[str, dict[str, str]] = {}  # context → subject → role
        self._contexts_of: dict[str, dict[str, str]] = {}  # subject → context → role
        self._resources: dict[str, str] = {}  # "type:id" → context
        self._resources_in: dict[str, dict[str, None]] = {}  # context → {"type:id"} (insertion-ordered set)
        self._resource_roles: dict[str, dict[str, str]] = {}  # "type:id" → subject → role
        self._resource_roles_of: dict[str, dict[str, str]] = {}  # subject → "type:id" → role

    # ---- updates -------------------------------------------------------------------------

    def add_rule(self, rule: Rule) -> None:
        ptype, *values = rule
        if ptype == "p":
            role, domain, object_type, action = values[:4]
            if domain == ALL_DOMAINS:
                self._grants[role].add((object_type, action))
                self._recompile()
        elif ptype == "g":
            member, role, domain = values[:3]
            if domain == ALL_DOMAINS:
                self._parents[member].add(role)
                self._recompile()
            elif _is_resource_scope(domain):
                self._resource_roles.setdefault(domain, {})[member] = role
                self._resource_roles_of.setdefault(member, {})[domain] = role
            else:
                self._members.setdefault(domain, {})[member] = role
                self._contexts_of.setdefault(member, {})[domain] = role

    def remove_rule(self, rule: Rule) -> None:
        ptype, *values = rule
        if ptype == "p":
            role, domain, object_type, action = values[:4]
            if domain == ALL_DOMAINS:
                self._grants[role].discard((object_type, action))
                self._recompile()
        elif ptype == "g":
            member, role, domain = values[:3]
            if domain == ALL_DOMAINS:
                self._parents[member].discard(role)
                self._recompile()
            elif _is_resource_scope(domain):
                _discard(self._resource_roles, domain, member, role)
                _discard(self._resource_roles_of, member, domain, role)
            else:
                _discard(self._members, domain, member, role)
                _discard(self._contexts_of, member, domain, role)

    def add_resource(self, resource_type: str, resource_id: str, context: str) -> None:
        scope = resource_type + ":" + resource_id
        self._resources[scope] = context
        self._resources_in.setdefault(context, {})[scope] = None

    def remove_resource(self, resource_type: str, resource_id: str) -> None:
        scope = resource_type + ":" + resource_id
        context = self._resources.pop(scope, None)
        if context is None:
            return
        scopes = self._resources_in.get(context)
        if scopes is not None:
            scopes.pop(scope, None)
            if not scopes:
                del self._resources_in[context]

    # ---- bulk loading (start-up) ----------------------------------------------------------

    def load_grouped_rules(self, groups: Iterable[tuple[str, str]]) -> int:
        """Add the `g` rules of whole domains, as `add_rule` would; returns how many rules.

        Each group is (domain, "subject␟role␟subject␟role…") with ␟ = GROUP_SEPARATOR,
        the form `authz.engine.snapshot` reads (a million rules arrive as ~100k strings,
        split in C). One string object per subject, role and domain is shared by every
        dict that holds it.
        """
        members, contexts_of = self._members, self._contexts_of
        scoped_roles, scoped_of = self._resource_roles, self._resource_roles_of
        pool: dict[str, str] = {}
        share = pool.setdefault
        count = 0
        for domain, packed in groups:
            parts = packed.split(GROUP_SEPARATOR)
            if len(parts) % 2:
                raise ValueError(f"malformed rule group for domain {domain!r}")
            subjects, roles = parts[0::2], parts[1::2]
            domain = share(domain, domain)
            pairs = dict(zip(map(share, subjects, subjects), map(share, roles, roles), strict=True))
            count += len(subjects)
            if _is_resource_scope(domain):
                target, reverse = scoped_roles, scoped_of
            else:
                target, reverse = members, contexts_of
            existing = target.get(domain)
            if existing is None:
                target[domain] = pairs
            else:
                existing.update(pairs)
            for member, role in pairs.items():
                of = reverse.get(member)
                if of is None:
                    reverse[member] = {domain: role}
                else:
                    of[domain] = role
        return count

    def load_grouped_resources(self, groups: Iterable[tuple[str, str]]) -> int:
        """Add resources as `add_resource` would, from (context, "type:id␟type:id…") groups; returns how many."""
        resources, resources_in = self._resources, self._resources_in
        count = 0
        for context, packed in groups:
            scopes = dict.fromkeys(packed.split(GROUP_SEPARATOR))
            count += len(scopes)
            existing = resources_in.get(context)
            if existing is None:
                resources_in[context] = scopes
            else:
                context = resources[next(iter(existing))]
                existing.update(scopes)
            resources.update(dict.fromkeys(scopes, context))
        return count

    def _recompile(self) -> None:
        """Each role's effective permissions after inheritance (a few dozen rules: cheap)."""
        effective: dict[str, frozenset[Permission]] = {}
        roles = set(self._grants) | set(self._parents) | {p for ps in self._parents.values() for p in ps}
        for role in roles:
            seen: set[str] = set()
            stack = [role]
            permissions: set[Permission] = set()
            while stack:
                current = stack.pop()
                if current in seen:
                    continue
                seen.add(current)
                permissions |= self._grants.get(current, set())
                stack.extend(self._parents.get(current, ()))
            effective[role] = frozenset(permissions)
        self._effective = effective

    # ---- decisions -----------------------------------------------------------------------

    def check(self, user: str, action: str, resource_type: str, resource_id: str | None, context: str | None) -> bool:
        """The hot path: may `user` do `action` on the resource (or on its type in `context`)?"""
        subject = "user:" + user
        if resource_id is not None:
            scope = resource_type + ":" + resource_id
            context = self._resources.get(scope)
            if context is None:
                return False
            scoped = self._resource_roles.get(scope)
            if scoped is not None:
                role = scoped.get(subject)
                if role is not None and (resource_type, action) in self._effective.get(role, ()):
                    return True
        elif context is None:
            return False
        if context == subject:
            role = "owner"
        else:
            members = self._members.get(context)
            if members is None:
                return False
            role = members.get(subject)
            if role is None:
                return False
        return (resource_type, action) in self._effective.get(role, ())

    def decide(self, user: str, action: str, resource_type: str, resource_id: str | None, context: str | None) -> Decision:
        """The same decision as `check`, with the role and path that led to it."""
        subject = ids.subject_of(user)
        permission = (resource_type, action)
        scoped_role: str | None = None
        if resource_id is not None:
            context = self._resources.get(ids.resource_scope(resource_type, resource_id))
            if context is None:
                return Decision(False, None, None, "unknown_resource")
            scoped_role = self._resource_roles.get(ids.resource_scope(resource_type, resource_id), {}).get(subject)
        context_role = self.role_in(user, context) if context is not None else None
        via = "personal" if context is not None and context == subject else "membership"
        if context_role is not None and permission in self._effective.get(context_role, ()):
            return Decision(True, context, context_role, via)
        if scoped_role is not None and permission in self._effective.get(scoped_role, ()):
            return Decision(True, context, scoped_role, "resource")
        if context_role is None and scoped_role is None:
            return Decision(False, context, None, "no_role")
        return Decision(False, context, context_role or scoped_role, "not_granted")

    def role_in(self, user: str, context: str) -> str | None:
        """The user's role in a context: "owner" of its personal account, else its membership role."""
        subject = ids.subject_of(user)
        if context == subject:
            return "owner"
        return self._members.get(context, {}).get(subject)

    def resource_role(self, user: str, resource_type: str, resource_id: str) -> str | None:
        return self._resource_roles.get(ids.resource_scope(resource_type, resource_id), {}).get(ids.subject_of(user))

    def role_allows(self, role: str, resource_type: str, action: str) -> bool:
        return (resource_type, action) in self._effective.get(role, ())

    def context_of(self, resource_type: str, resource_id: str) -> str | None:
        return self._resources.get(ids.resource_scope(resource_type, resource_id))

    def contexts_of(self, user: str) -> dict[str, str]:
        """The org contexts a user is a member of, with the role (personal not included)."""
        return dict(self._contexts_of.get(ids.subject_of(user), {}))

    def list_resources(
        self, user: str, action: str, resource_type: str, context: str | None,
        after: str | None = None, limit: int | None = None,
    ) -> list[str]:
        """Ids of the resources the user may do `action` on: sorted, greater than `after`, at most `limit`."""
        subject = ids.subject_of(user)
        permission = (resource_type, action)
        prefix = resource_type + ":"
        found: set[str] = set()
        contexts = dict(self._contexts_of.get(subject, {}))
        contexts[subject] = "owner"
        for ctx, role in contexts.items():
            if context is not None and ctx != context:
                continue
            if permission in self._effective.get(role, ()):
                found.update(s for s in self._resources_in.get(ctx, ()) if s.startswith(prefix))
        for scope, role in self._resource_roles_of.get(subject, {}).items():
            if not scope.startswith(prefix) or not self.role_allows(role, resource_type, action):
                continue
            if context is None or self._resources.get(scope) == context:
                found.add(scope)
        return _page(sorted(s[len(prefix):] for s in found if s in self._resources), after, limit)

    def list_subjects(
        self, action: str, resource_type: str, resource_id: str, after: str | None = None, limit: int | None = None,
    ) -> list[str]:
        """User ids that may do `action` on the resource: sorted, greater than `after`, at most `limit`."""
        context = self._resources.get(ids.resource_scope(resource_type, resource_id))
        if context is None:
            return []
        permission = (resource_type, action)
        found: set[str] = set()
        for subject, role in self._members.get(context, {}).items():
            if permission in self._effective.get(role, ()):
                found.add(subject)
        if ids.is_personal_context(context) and permission in self._effective.get("owner", ()):
            found.add(context)
        for subject, role in self._resource_roles.get(ids.resource_scope(resource_type, resource_id), {}).items():
            if permission in self._effective.get(role, ()):
                found.add(subject)
        return _page(sorted(ids.user_of(s) for s in found), after, limit)

    def counts(self) -> dict[str, int]:
        return {
            "memberships": sum(len(m) for m in self._members.values()),
            "resources": len(self._resources),
            "resource_roles": sum(len(m) for m in self._resource_roles.values()),
        }


def _page(ordered: list[str], after: str | None, limit: int | None) -> list[str]:
    """The keyset page of a sorted list: the ids after `after`, at most `limit` of them."""
    start = bisect.bisect_right(ordered, after) if after is not None else 0
    return ordered[start:] if limit is None else ordered[start:start + limit]


def _is_resource_scope(domain: str) -> bool:
    """Org ids and personal contexts never look like "<type>:<id>" with a policy type name."""
    return ":" in domain and not ids.is_personal_context(domain)


def _discard(table: dict[str, dict[str, str]], outer: str, inner: str, role: str) -> None:
    entries = table.get(outer)
    if entries is not None and entries.get(inner) == role:
        del entries[inner]
        if not entries:
            del table[outer]
