"""A deterministic synthetic platform: orgs, their members, registered resources, per-resource roles.

Everything is a pure function of the `Shape` (and its seed), so two runs (and the bulk
loader, the pycasbin baseline and the request mix) see exactly the same data without
storing it. Ids follow the strict patterns of `authz.domain.ids`.
"""

import random
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

CONTENT_TYPES = ("algorithm", "implementation", "service", "application", "job", "data_pool")
ROLES = ("viewer", "maintainer", "owner")
ROLE_WEIGHTS = (6, 3, 1)  # most members view; member 0 of every org is its owner


@dataclass(frozen=True)
class Shape:
    orgs: int
    members_per_org: int
    resources: int
    resource_roles: int
    seed: int = 8

    @property
    def memberships(self) -> int:
        return self.orgs * self.members_per_org

    @property
    def users(self) -> int:
        """Users each belong to about 4 orgs (at least one org's worth of distinct users)."""
        return max(self.members_per_org, self.memberships // 4)

    def label(self) -> str:
        return f"{self.orgs:,} orgs × {self.members_per_org} members, {self.resources:,} resources"


FULL = Shape(orgs=100_000, members_per_org=10, resources=1_000_000, resource_roles=10_000)
QUICK = Shape(orgs=10_000, members_per_org=10, resources=100_000, resource_roles=1_000)


def org_id(i: int) -> str:
    return f"org_{i:024x}"


def user_id(u: int) -> str:
    return f"u{u:07d}"


class Dataset:
    """The rows of a `Shape`, generated on demand and in order."""

    def __init__(self, shape: Shape) -> None:
        self.shape = shape

    @cached_property
    def _roles(self) -> bytes:
        """Role index of each membership (org-major), from the seed; member 0 is the owner."""
        rng = random.Random(self.shape.seed)
        n = self.shape.members_per_org
        picks = rng.choices(range(len(ROLES)), weights=ROLE_WEIGHTS, k=self.shape.memberships)
        for i in range(self.shape.orgs):
            picks[i * n] = 2
        return bytes(picks)

    @cached_property
    def _resource_orgs(self) -> list[int]:
        rng = random.Random(self.shape.seed + 1)
        return [rng.randrange(self.shape.orgs) for _ in range(self.shape.resources)]

    def member(self, i: int, j: int) -> int:
        """User number of member `j` of org `i`: distinct within an org, ~4 orgs per user."""
        users = self.shape.users
        return (i + j * (users // self.shape.members_per_org)) % users

    def role(self, i: int, j: int) -> str:
        return ROLES[self._roles[i * self.shape.members_per_org + j]]

    def memberships(self, orgs: range) -> Iterator[tuple[str, str, str]]:
        """(org id, user id, role) of every member of the orgs in `orgs`."""
        n = self.shape.members_per_org
        for i in orgs:
            oid = org_id(i)
            for j in range(n):
                yield oid, user_id(self.member(i, j)), self.role(i, j)

    def resource(self, k: int) -> tuple[str, str, str]:
        """(type, id, org id) of resource `k`."""
        return CONTENT_TYPES[k % len(CONTENT_TYPES)], f"r{k:07d}", org_id(self._resource_orgs[k])

    def resource_org(self, k: int) -> int:
        """The number of the org that resource `k` belongs to."""
        return self._resource_orgs[k]

    def resource_role(self, n: int) -> tuple[str, str, str, str]:
        """(type, id, user id, role): a role on one resource for a user of another org."""
        k = (n * 7919) % self.shape.resources
        resource_type, rid, _ = self.resource(k)
        return resource_type, rid, user_id((n * 104_729) % self.shape.users), ROLES[n % 2]

    def owner_of(self, i: int) -> str:
        return user_id(self.member(i, 0))
