"""What services return: plain frozen dataclasses, independent of HTTP and SQL."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from authz.domain.organizations import BillingAddress


@dataclass(frozen=True)
class OrganizationView:
    id: str
    name: str
    billing_address: BillingAddress | None  # None when the caller may not read billing
    created_at: datetime
    role: str | None = None  # the caller's role, where it is asked for


@dataclass(frozen=True)
class MemberView:
    user_id: str
    email: str | None
    role: str
    joined_at: datetime
    expires_at: datetime | None = None  # the membership ends then (None: it does not end)


@dataclass(frozen=True)
class ResourceView:
    type: str
    id: str
    context: str
    created_by: str
    created_at: datetime


@dataclass(frozen=True)
class AuditView:
    id: int
    at: datetime
    actor: str
    action: str
    context: str | None
    target: str | None
    detail: dict[str, Any]
    request_id: str | None
    revision: int | None
