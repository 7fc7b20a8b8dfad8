"""The questions and answers of the decision API (API.md "Decisions"), as small frozen dataclasses."""

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Resource:
    """`type:id`, or a type alone for type-level actions such as `create`."""

    type: str
    id: str | None = None

    @classmethod
    def of(cls, value: "ResourceLike") -> "Resource":
        """Accepts a Resource, `"algorithm:grover"`, `"algorithm"` or `("algorithm", "grover")`."""
        if isinstance(value, Resource):
            return value
        if isinstance(value, tuple):
            resource_type, resource_id = value
            return cls(resource_type, resource_id)
        resource_type, sep, resource_id = value.partition(":")
        return cls(resource_type, resource_id if sep else None)

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type} if self.id is None else {"type": self.type, "id": self.id}

    def __str__(self) -> str:
        return self.type if self.id is None else f"{self.type}:{self.id}"


ResourceLike = Resource | str | tuple[str, str | None]


@dataclass(frozen=True)
class Check:
    """One question of a batch."""

    action: str
    resource: ResourceLike
    subject: str | None = None
    context: str | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"action": self.action, "resource": Resource.of(self.resource).to_json()}
        if self.subject is not None:
            body["subject"] = self.subject
        if self.context is not None:
            body["context"] = self.context
        return body


@dataclass(frozen=True)
class CheckResult:
    """A decision and the revision it was answered at; true in a boolean context when allowed."""

    allowed: bool
    revision: int
    explanation: dict[str, Any] | None = None
    cached: bool = False

    def __bool__(self) -> bool:
        return self.allowed


@dataclass(frozen=True)
class BatchResult:
    """The decisions of a batch, in the order asked."""

    results: tuple[bool, ...]
    revision: int


@dataclass(frozen=True)
class ResourceList:
    """One page of the resource ids of a type the subject may do the action on (by id)."""

    resources: tuple[str, ...]
    revision: int
    next_cursor: str | None = None  # pass as `cursor` for the next page; None on the last page


@dataclass(frozen=True)
class SubjectList:
    """One page of the user ids that may do the action on a resource (by id)."""

    subjects: tuple[str, ...]
    revision: int
    next_cursor: str | None = None


@dataclass(frozen=True)
class Change:
    """One committed revision of the change feed: `ops` is its delta (API.md "Change feed")."""

    revision: int
    at: str
    kind: str
    ops: tuple[dict[str, Any], ...]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Change":
        return cls(int(data["revision"]), str(data["at"]), str(data["kind"]), tuple(data["ops"]))


__all__ = ["BatchResult", "Change", "Check", "CheckResult", "Resource", "ResourceLike", "ResourceList", "SubjectList"]
