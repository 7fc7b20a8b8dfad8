"""Decisions compiled from the Casbin rules of `policy_model.conf`, as immutable snapshots.

The meaning is Casbin's (see `authz.policy.model`); this index answers the same question
with a few dict and set lookups. `tests/engine/test_oracle.py` compares the two on random
data, so a difference between them is a bug here.

Rule shapes (all written by authz itself):
- `p, <role>, *, <type>, <action>`   permission, written once for every domain
- `g, <role>, <role>, *`             role hierarchy
- `g, account-holder, <role>, *`    the role of a personal account's holder (`ids.ACCOUNT_HOLDER`)
- `g, user:<id>, <role>, <org_id>`   membership
- `g, user:<id>, <role>, <type>:<id>`  a role on one resource
- either `g` rule may carry a fourth value, its expiry (`authz_client.decisions.grants`): from then on
  it counts in no decision. The inner dicts then hold `(role, expiry as POSIX time)` instead
  of the role, and a decision that meets one compares it with its clock (`time.time` unless
  the caller passes another); a grant without expiry costs the hot path one type test.

A `DecisionIndex` never changes once built (DESIGN.md invariant 4): a replica publishes a
new one per change, and a request that holds one sees one revision throughout. Changes
go through an `IndexEditor`, which copies only what they touch: each big map is split
into `SHARDS` dicts by the key's hash, so a change copies one shard (about a thousand
entries at 1M) and the inner dict or sorted set of the one context it changes; every
other shard is shared with the previous index.
"""

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from heapq import merge
from itertools import islice, takewhile
from typing import Any, cast

from authz_client.decisions import ids
from authz_client.decisions.grants import expiry_epoch
from authz_client.decisions.ids import ACCOUNT_HOLDER, ALL_DOMAINS, Rule
from authz_client.decisions.roles import CompiledRoles, Permission
from authz_client.decisions.sorted_ids import SortedIds

GROUP_SEPARATOR = "\x1f"  # joins the values of one bulk-loaded group; no id, role or name may contain it
SHARDS = 1024  # a power of two: a key's shard is hash(key) & MASK
MASK = SHARDS - 1
assert MASK == 1023, "check() writes the mask as a literal"
Shards = tuple[dict[str, Any], ...]
Op = dict[str, Any]
Grant = str | tuple[str, float]  # a role, or (role, expiry) for a grant that ends
Clock = Callable[[], float]


def active_role(grant: Grant | None, clock: Clock) -> str | None:
    """The role a grant gives now: None once it has expired."""
    if grant is None or grant.__class__ is str:  # not isinstance: every check passes here
        return grant
    role, expires = cast(tuple[str, float], grant)  # only grants that end get this far
    return role if clock() < expires else None


def grant_of(role: str, expiry: str | None) -> Grant:
    return role if not expiry else (role, expiry_epoch(expiry))


@dataclass(frozen=True)
class Decision:
    """A decision with the facts that explain it."""

    allowed: bool
    context: str | None
    role: str | None  # the role that allowed it (or the caller's role in the context when denied)
    via: str  # "membership", "personal", "resource", or why not: "unknown_resource", "no_role", "not_granted"


# Every shard of an empty index is this one dict, which no editor ever writes to (`IndexEditor._shard`
# copies it first): an empty index costs six tuples instead of 6,144 dicts, and indexes are built
# empty often (each replica starts with one, each bulk load starts from one). Never change it.
_EMPTY_SHARD: dict[str, Any] = {}


def _empty_shards() -> Shards:
    return (_EMPTY_SHARD,) * SHARDS


class DecisionIndex:
    """Memberships, resources and role permissions at one revision; read-only.

    Compact on purpose (1M memberships and 1M resources must fit in a few hundred MB):
    a resource is keyed by its scope string "type:id" (the same string names its own
    roles), and the bulk loader shares one string object per subject, role and context.
    Maps keyed by the same string (a scope, a context, a subject) use the same shard.
    """

    __slots__ = ("_roles", "_effective", "_members", "_contexts_of", "_resources",
                 "_resources_in", "_resource_roles", "_resource_roles_of")

    def __init__(self) -> None:
        self._roles = CompiledRoles()
        self._effective: Mapping[str, frozenset[Permission]] = {}  # self._roles.effective, one lookup less
        self._members: Shards = _empty_shards()  # context → {subject: role}
        self._contexts_of: Shards = _empty_shards()  # subject → {context: role}
        self._resources: Shards = _empty_shards()  # "type:id" → context
        self._resources_in: Shards = _empty_shards()  # context → SortedIds of "type:id"
        self._resource_roles: Shards = _empty_shards()  # "type:id" → {subject: role}
        self._resource_roles_of: Shards = _empty_shards()  # subject → {"type:id": role}

    def edit(self) -> "IndexEditor":
        """An editor whose `finish()` is this index with the editor's changes."""
        return IndexEditor(self)

    @staticmethod
    def build() -> "IndexEditor":
        """An editor of a new, empty index that changes its own parts in place (bulk loads)."""
        return IndexEditor(DecisionIndex(), fresh=True)

    def apply(self, delta: Iterable[Op]) -> "DecisionIndex":
        """This index with one changelog delta applied (this one is left as it was)."""
        editor = self.edit()
        editor.apply(delta)
        return editor.finish()

    # ---- decisions -----------------------------------------------------------------------

    def check(self, user: str, action: str, resource_type: str, resource_id: str | None, context: str | None,
              clock: Clock = time.time) -> bool:
        """The hot path: may `user` do `action` on the resource (or on its type in `context`)?

        The role in the context is asked first (the usual way in); the resource's own roles,
        which only ever add, are looked up only when that role does not allow it. (The shard
        mask is written as a literal: this is the one place where a global lookup shows.)
        """
        subject = "user:" + user
        if resource_id is not None:
            scope = resource_type + ":" + resource_id
            context = self._resources[hash(scope) & 1023].get(scope)
            if context is None:
                return False
        elif context is None:
            return False
        if context == subject:
            role = ACCOUNT_HOLDER
        else:
            members = self._members[hash(context) & 1023].get(context)
            if members is None:
                role = None
            else:
                role = members.get(subject)
                if role is not None and role.__class__ is not str:
                    role = active_role(role, clock)
        permission = (resource_type, action)
        if role is not None and permission in self._effective.get(role, ()):
            return True
        if resource_id is None:
            return False
        scoped = self._resource_roles[hash(scope) & 1023].get(scope)
        if scoped is None:
            return False
        role = active_role(scoped.get(subject), clock)
        return role is not None and permission in self._effective.get(role, ())

    def decide(self, user: str, action: str, resource_type: str, resource_id: str | None, context: str | None,
               clock: Clock = time.time) -> Decision:
        """The same decision as `check`, with the role and path that led to it."""
        subject = ids.subject_of(user)
        permission = (resource_type, action)
        scoped_role: str | None = None
        if resource_id is not None:
            context = self.context_of(resource_type, resource_id)
            if context is None:
                return Decision(False, None, None, "unknown_resource")
            scoped_role = self.resource_role(user, resource_type, resource_id, clock)
        personal = context is not None and context == subject
        context_role = self.role_in(user, context, clock) if context is not None else None
        # In a personal account the holder's permissions are the account holder's (which
        # inherits the context owner role), exactly what the Casbin matcher asks for.
        granting = ACCOUNT_HOLDER if personal else context_role
        if granting is not None and permission in self._effective.get(granting, ()):
            return Decision(True, context, context_role, "personal" if personal else "membership")
        if scoped_role is not None and permission in self._effective.get(scoped_role, ()):
            return Decision(True, context, scoped_role, "resource")
        if context_role is None and scoped_role is None:
            return Decision(False, context, None, "no_role")
        return Decision(False, context, context_role or scoped_role, "not_granted")

    def role_in(self, user: str, context: str, clock: Clock = time.time) -> str | None:
        """The user's role in a context now: the context owner role in its personal account, else its membership."""
        subject = ids.subject_of(user)
        if context == subject:
            return self._roles.context_owner
        return active_role(_get(self._members, context, {}).get(subject), clock)

    def resource_role(self, user: str, resource_type: str, resource_id: str, clock: Clock = time.time) -> str | None:
        scope = ids.resource_scope(resource_type, resource_id)
        return active_role(_get(self._resource_roles, scope, {}).get(ids.subject_of(user)), clock)

    def role_allows(self, role: str, resource_type: str, action: str) -> bool:
        return (resource_type, action) in self._effective.get(role, ())

    @property
    def roles(self) -> CompiledRoles:
        """What each role may do at this revision (the services' one answer, too)."""
        return self._roles

    def context_of(self, resource_type: str, resource_id: str) -> str | None:
        context: str | None = _get(self._resources, ids.resource_scope(resource_type, resource_id), None)
        return context

    def contexts_of(self, user: str, clock: Clock = time.time) -> dict[str, str]:
        """The org contexts a user is a member of now, with the role (personal not included)."""
        found = {}
        for context, grant in _get(self._contexts_of, ids.subject_of(user), {}).items():
            role = active_role(grant, clock)
            if role is not None:
                found[context] = role
        return found

    def list_resources(
        self, user: str, action: str, resource_type: str, context: str | None,
        after: str | None = None, limit: int | None = None, clock: Clock = time.time,
    ) -> list[str]:
        """The ids of `resource_type` the user may do `action` on, in id order, after `after`, at most `limit`.

        Keyset paging: each context's resources are a sorted set, so a page merges the
        eligible contexts from `after` on and stops at `limit`; nothing else is touched.
        """
        subject = ids.subject_of(user)
        prefix = resource_type + ":"
        start, inclusive = (prefix + after, False) if after is not None else (prefix, True)
        contexts = self.contexts_of(user, clock)
        contexts[subject] = ACCOUNT_HOLDER
        streams: list[Iterator[str]] = []
        for ctx, role in contexts.items():
            if (context is None or ctx == context) and self.role_allows(role, resource_type, action):
                scopes: SortedIds | None = _get(self._resources_in, ctx, None)
                if scopes is not None:
                    streams.append(scopes.iter_from(start, inclusive=inclusive))
        shared = sorted(
            scope for scope, grant in _get(self._resource_roles_of, subject, {}).items()
            if scope.startswith(prefix) and (scope > start or (inclusive and scope == start))
            and (granted := active_role(grant, clock)) is not None and self.role_allows(granted, resource_type, action)
            and (found := _get(self._resources, scope, None)) is not None and (context is None or found == context)
        )
        streams.append(iter(shared))
        ordered = takewhile(lambda scope: scope.startswith(prefix), merge(*streams))
        return [scope[len(prefix):] for scope in islice(_unique(ordered), limit)]

    def list_subjects(
        self, action: str, resource_type: str, resource_id: str, after: str | None = None, limit: int | None = None,
        clock: Clock = time.time,
    ) -> list[str]:
        """The users who may do `action` on the resource, in id order, after `after`, at most `limit`."""
        scope = ids.resource_scope(resource_type, resource_id)
        context = _get(self._resources, scope, None)
        if context is None:
            return []
        found: set[str] = set()
        grants = [*_get(self._members, context, {}).items(), *_get(self._resource_roles, scope, {}).items()]
        for subject, grant in grants:
            role = active_role(grant, clock)
            if role is not None and self.role_allows(role, resource_type, action):
                found.add(subject)
        if ids.is_personal_context(context) and self.role_allows(ACCOUNT_HOLDER, resource_type, action):
            found.add(context)
        users = sorted(ids.user_of(s) for s in found)
        if after is not None:
            users = [user for user in users if user > after]
        return users[:limit]

    # ---- export (GET /v1/snapshot; `authz.engine.transfer`) ------------------------------

    def policy_rules(self) -> Iterator[Rule]:
        """The `p` rules and the role hierarchy as the rules `add_rule` takes."""
        for role, permissions in sorted(self._roles.grants.items()):
            for object_type, action in sorted(permissions):
                yield ("p", role, ALL_DOMAINS, object_type, action)
        for role, parents in sorted(self._roles.parents.items()):
            for parent in sorted(parents):
                yield ("g", role, parent, ALL_DOMAINS)

    def grant_groups(self) -> Iterator[tuple[str, dict[str, Grant]]]:
        """(domain, {subject: grant}) of every membership context and every resource scope."""
        for shards in (self._members, self._resource_roles):
            for shard in shards:
                yield from shard.items()

    def resource_groups(self) -> Iterator[tuple[str, SortedIds]]:
        """(context, its "type:id" scopes) of every context with resources."""
        for shard in self._resources_in:
            yield from shard.items()

    def counts(self) -> dict[str, int]:
        return {
            "memberships": sum(len(m) for shard in self._members for m in shard.values()),
            "resources": sum(len(shard) for shard in self._resources),
            "resource_roles": sum(len(m) for shard in self._resource_roles for m in shard.values()),
        }


class IndexEditor:
    """Builds the next `DecisionIndex` from a base one, copying each touched part once.

    `_owned` holds the ids of the dicts this editor has copied (or created): those it may
    change in place; everything else still belongs to the base index and is copied first.
    A `fresh` editor builds a new index that nothing else holds: it owns every part (but the
    shared empty shard, which it copies like any editor).
    The editor must not be used after `finish()`.
    """

    def __init__(self, base: DecisionIndex, *, fresh: bool = False) -> None:
        self._base = base
        self._fresh = fresh
        self._next = DecisionIndex.__new__(DecisionIndex)
        self._grants = dict(base._roles.grants)
        self._parents = dict(base._roles.parents)
        self._policy_changed = False
        self._owned: set[int] = set()
        self._members = list(base._members)
        self._contexts_of = list(base._contexts_of)
        self._resources = list(base._resources)
        self._resources_in = list(base._resources_in)
        self._resource_roles = list(base._resource_roles)
        self._resource_roles_of = list(base._resource_roles_of)

    # ---- copy on write -------------------------------------------------------------------

    def _shard(self, shards: list[dict[str, Any]], key: str) -> dict[str, Any]:
        at = hash(key) & MASK
        shard = shards[at]
        if shard is _EMPTY_SHARD or (not self._fresh and id(shard) not in self._owned):
            shard = dict(shard)
            shards[at] = shard
            self._owned.add(id(shard))
        return shard

    def _inner(self, shards: list[dict[str, Any]], key: str) -> dict[str, Grant]:
        """The inner dict of `key`, writable (created when missing)."""
        shard = self._shard(shards, key)
        inner = shard.get(key)
        if inner is None or (not self._fresh and id(inner) not in self._owned):
            inner = dict(inner) if inner is not None else {}
            shard[key] = inner
            if not self._fresh:
                self._owned.add(id(inner))
        return inner

    def _discard(self, shards: list[dict[str, Any]], outer: str, inner_key: str, grant: Grant) -> None:
        current = shards[hash(outer) & MASK].get(outer)
        if current is None or current.get(inner_key) != grant:
            return
        entries = self._inner(shards, outer)
        del entries[inner_key]
        if not entries:
            del self._shard(shards, outer)[outer]

    # ---- changes -------------------------------------------------------------------------

    def apply(self, delta: Iterable[Op]) -> None:
        """Apply the rule and resource ops of a changelog delta (others are not the index's)."""
        for op in delta:
            kind = op["op"]
            if kind == "add_rule":
                self.add_rule(tuple(op["rule"]))
            elif kind == "remove_rule":
                self.remove_rule(tuple(op["rule"]))
            elif kind == "add_resource":
                self.add_resource(op["type"], op["id"], op["context"])
            elif kind == "remove_resource":
                self.remove_resource(op["type"], op["id"])

    def add_rule(self, rule: Rule) -> None:
        ptype, *values = rule
        if ptype == "p":
            role, domain, object_type, action = values[:4]
            if domain == ALL_DOMAINS:
                self._grants[role] = self._grants.get(role, frozenset()) | {(object_type, action)}
                self._policy_changed = True
        elif ptype == "g":
            member, role, domain = values[:3]
            if domain == ALL_DOMAINS:
                self._parents[member] = self._parents.get(member, frozenset()) | {role}
                self._policy_changed = True
                return
            grant = grant_of(role, values[3] if len(values) > 3 else None)
            if is_resource_scope(domain):
                self._inner(self._resource_roles, domain)[member] = grant
                self._inner(self._resource_roles_of, member)[domain] = grant
            else:
                self._inner(self._members, domain)[member] = grant
                self._inner(self._contexts_of, member)[domain] = grant

    def remove_rule(self, rule: Rule) -> None:
        ptype, *values = rule
        if ptype == "p":
            role, domain, object_type, action = values[:4]
            if domain == ALL_DOMAINS and role in self._grants:
                self._grants[role] = self._grants[role] - {(object_type, action)}
                self._policy_changed = True
        elif ptype == "g":
            member, role, domain = values[:3]
            if domain == ALL_DOMAINS:
                if member in self._parents:
                    self._parents[member] = self._parents[member] - {role}
                    self._policy_changed = True
                return
            grant = grant_of(role, values[3] if len(values) > 3 else None)
            if is_resource_scope(domain):
                self._discard(self._resource_roles, domain, member, grant)
                self._discard(self._resource_roles_of, member, domain, grant)
            else:
                self._discard(self._members, domain, member, grant)
                self._discard(self._contexts_of, member, domain, grant)

    def add_resource(self, resource_type: str, resource_id: str, context: str) -> None:
        scope = resource_type + ":" + resource_id
        self._shard(self._resources, scope)[scope] = context
        shard = self._shard(self._resources_in, context)
        current: SortedIds | None = shard.get(context)
        shard[context] = current.with_item(scope) if current is not None else SortedIds.of([scope])

    def remove_resource(self, resource_type: str, resource_id: str) -> None:
        scope = resource_type + ":" + resource_id
        if scope not in self._resources[hash(scope) & MASK]:
            return
        context = self._shard(self._resources, scope).pop(scope)
        shard = self._shard(self._resources_in, context)
        current: SortedIds | None = shard.get(context)
        if current is not None:
            remaining = current.without(scope)
            if remaining:
                shard[context] = remaining
            else:
                del shard[context]

    # ---- bulk loading (start-up) ----------------------------------------------------------

    def load_grouped_rules(self, groups: Iterable[tuple[str, str]]) -> int:
        """Add the `g` rules of whole domains, as `add_rule` would; returns how many rules.

        Each group is (domain, "subject␟role␟subject␟role…") with ␟ = GROUP_SEPARATOR,
        the form `authz.engine.snapshot` reads (a million rules arrive as ~100k strings,
        split in C). One string object per subject, role and domain is shared by every
        dict that holds it.
        """
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
            if is_resource_scope(domain):
                target, reverse = self._resource_roles, self._resource_roles_of
            else:
                target, reverse = self._members, self._contexts_of
            self._inner(target, domain).update(pairs)
            for member, role in pairs.items():
                self._inner(reverse, member)[domain] = role
        return count

    def load_grouped_resources(self, groups: Iterable[tuple[str, str]]) -> int:
        """Add resources as `add_resource` would, from (context, "type:id␟type:id…") groups; returns how many."""
        count = 0
        for context, packed in groups:
            scopes = packed.split(GROUP_SEPARATOR)
            count += len(scopes)
            shard = self._shard(self._resources_in, context)
            current: SortedIds | None = shard.get(context)
            shard[context] = SortedIds.of([*current, *scopes] if current is not None else scopes)
            for scope in scopes:
                self._shard(self._resources, scope)[scope] = context
        return count

    # ---- the result ----------------------------------------------------------------------

    def finish(self) -> DecisionIndex:
        index = self._next
        index._roles = CompiledRoles.compile(self._grants, self._parents) if self._policy_changed else self._base._roles
        index._effective = index._roles.effective
        index._members = tuple(self._members)
        index._contexts_of = tuple(self._contexts_of)
        index._resources = tuple(self._resources)
        index._resources_in = tuple(self._resources_in)
        index._resource_roles = tuple(self._resource_roles)
        index._resource_roles_of = tuple(self._resource_roles_of)
        return index


def _get(shards: Shards, key: str, default: Any) -> Any:
    return shards[hash(key) & MASK].get(key, default)


def _unique(ordered: Iterable[str]) -> Iterator[str]:
    """Drop adjacent repeats (a resource reachable both by its context and by its own role)."""
    previous = None
    for item in ordered:
        if item != previous:
            yield item
            previous = item


def is_resource_scope(domain: str) -> bool:
    """Org ids and personal contexts never look like "<type>:<id>" with a policy type name."""
    return ":" in domain and not ids.is_personal_context(domain)
