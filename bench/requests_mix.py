"""The mixed decision questions every figure asks, drawn from a `Dataset` with a seed.

Four kinds in equal parts, as the issue names them: allowed (a member reads a resource
of its org), denied by role (a non-owner deletes), another org's user, and an unknown
resource. Each question also carries the (user, org) pair the dict-lookup baseline asks.
"""

import random
from dataclasses import dataclass

from bench.dataset import Dataset, org_id, user_id

KINDS = ("allowed", "denied_by_role", "other_org_user", "unknown_resource")


@dataclass(frozen=True)
class Question:
    kind: str
    user: str
    action: str
    resource_type: str
    resource_id: str
    org: str  # the org the baseline looks the user up in

    def body(self) -> dict[str, object]:
        """The JSON body of POST /v1/check (a service key asks about `subject`)."""
        return {"subject": self.user, "action": self.action,
                "resource": {"type": self.resource_type, "id": self.resource_id}}


def questions(dataset: Dataset, count: int, seed: int = 8) -> list[Question]:
    rng = random.Random(seed)
    shape = dataset.shape
    found: list[Question] = []
    for n in range(count):
        kind = KINDS[n % len(KINDS)]
        k = rng.randrange(shape.resources)
        resource_type, rid, oid = dataset.resource(k)
        i = dataset.resource_org(k)
        j = rng.randrange(shape.members_per_org)
        user = user_id(dataset.member(i, j))
        action = "read"
        if kind == "denied_by_role":
            action = "delete"
            for step in range(shape.members_per_org):  # a non-owner of this org, if it has one
                candidate = (j + step) % shape.members_per_org
                if dataset.role(i, candidate) != "owner":
                    user = user_id(dataset.member(i, candidate))
                    break
        elif kind == "other_org_user":
            other = (i + 1 + rng.randrange(shape.orgs - 1)) % shape.orgs if shape.orgs > 1 else i
            user = user_id(dataset.member(other, j))
        elif kind == "unknown_resource":
            rid = f"missing{n}"
        found.append(Question(kind, user, action, resource_type, rid, org_id(i) if kind != "unknown_resource" else oid))
    return found
