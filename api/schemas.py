"""Request and response bodies of the HTTP contract (API.md). Deep validation is the core's."""

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from authz.domain.limits import MAX_STORED_INT


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- organizations ---------------------------------------------------------------------

class BillingAddressBody(Strict):
    line1: str = Field(max_length=1000)
    line2: str | None = Field(default=None, max_length=1000)
    postal_code: str = Field(max_length=1000)
    city: str = Field(max_length=1000)
    country: str = Field(max_length=100, description="ISO 3166-1 alpha-2")


class OrganizationCreate(Strict):
    name: str = Field(max_length=1000, description="1-100 characters after trimming")
    billing_address: BillingAddressBody


class OrganizationPatch(Strict):
    name: str | None = Field(default=None, max_length=1000)
    billing_address: BillingAddressBody | None = None


class BillingAddressOut(BaseModel):
    line1: str
    line2: str | None
    postal_code: str
    city: str
    country: str


class OrganizationOut(BaseModel):
    id: str
    name: str
    billing_address: BillingAddressOut | None = Field(
        default=None, description="only for callers allowed to read billing"
    )
    created_at: datetime
    role: str | None = Field(default=None, description="the caller's role")


class ContextOut(BaseModel):
    type: Literal["personal", "organization"]
    id: str
    name: str | None = None
    role: str | None = None


class MeOut(BaseModel):
    user_id: str
    email: str | None
    contexts: list[ContextOut]


# ---- members ---------------------------------------------------------------------------

class RoleBody(Strict):
    role: str = Field(max_length=64)


class TransferBody(Strict):
    to_user_id: str = Field(max_length=1000, description="a member, who becomes owner (the policy's context_owner); "
                                                         "the caller gets the role the owning role inherits "
                                                         "(maintainer, as shipped)")


class TransferOut(BaseModel):
    organization_id: str
    owner: str
    revision: int | None


EXPIRES_AT = "RFC 3339 instant when the grant ends (in the future); null or absent: it does not end"


class ResourceRoleBody(Strict):
    role: str = Field(max_length=64)
    expires_at: str | None = Field(default=None, max_length=40, description=EXPIRES_AT)


class MemberPatch(Strict):
    """Either or both; `expires_at: null` makes the membership permanent again."""

    role: str | None = Field(default=None, max_length=64)
    expires_at: str | None = Field(default=None, max_length=40, description=EXPIRES_AT)


class MemberOut(BaseModel):
    user_id: str
    email: str | None
    role: str
    joined_at: datetime
    expires_at: datetime | None = None


# ---- resources -------------------------------------------------------------------------

class ResourceCreate(Strict):
    type: str = Field(max_length=1000)
    id: str = Field(max_length=1000)


class ResourceOut(BaseModel):
    type: str
    id: str
    context: str
    created_by: str
    created_at: datetime


class ResourceMemberOut(BaseModel):
    user_id: str
    role: str
    expires_at: datetime | None = None


# ---- decisions -------------------------------------------------------------------------

class ResourceRef(Strict):
    type: str = Field(max_length=1000)
    id: str | None = Field(default=None, max_length=1000)


class CheckBody(Strict):
    subject: str | None = Field(default=None, max_length=1000, description="user id; omit to ask about yourself")
    action: str = Field(max_length=1000)
    resource: ResourceRef
    context: str | None = Field(default=None, max_length=1000, description="personal or an org id")
    min_revision: int | None = Field(default=None, ge=0, le=MAX_STORED_INT)


class CheckOut(BaseModel):
    allowed: bool
    revision: int
    explanation: dict[str, Any] | None = None


class BatchItem(Strict):
    subject: str | None = Field(default=None, max_length=1000)
    action: str = Field(max_length=1000)
    resource: ResourceRef
    context: str | None = Field(default=None, max_length=1000)


class BatchBody(Strict):
    checks: list[BatchItem] = Field(max_length=1000)
    min_revision: int | None = Field(default=None, ge=0, le=MAX_STORED_INT)


class BatchResult(BaseModel):
    allowed: bool


class BatchOut(BaseModel):
    results: list[BatchResult]
    revision: int


PAGE_LIMIT = Field(default=1000, ge=1, le=10000, strict=True, description="ids per page (at most 10000)")
PAGE_CURSOR = Field(default=None, max_length=1000, description="`next_cursor` of the previous page (opaque)")
NEXT_CURSOR = Field(description="pass as `cursor` for the next page; null on the last page")


class ListResourcesBody(Strict):
    subject: str | None = Field(default=None, max_length=1000)
    action: str = Field(max_length=1000)
    type: str = Field(max_length=1000)
    context: str | None = Field(default=None, max_length=1000)
    min_revision: int | None = Field(default=None, ge=0, le=MAX_STORED_INT)
    limit: int = PAGE_LIMIT
    cursor: str | None = PAGE_CURSOR


class ListResourcesOut(BaseModel):
    resources: list[str]
    revision: int
    next_cursor: str | None = NEXT_CURSOR


class ListSubjectsBody(Strict):
    action: str = Field(max_length=1000)
    resource: ResourceRef
    min_revision: int | None = Field(default=None, ge=0, le=MAX_STORED_INT)
    limit: int = PAGE_LIMIT
    cursor: str | None = PAGE_CURSOR


class ListSubjectsOut(BaseModel):
    subjects: list[str]
    revision: int
    next_cursor: str | None = NEXT_CURSOR


# ---- change feed -----------------------------------------------------------------------

class ChangeOut(BaseModel):
    revision: int
    at: datetime
    kind: Literal["relationships", "policy", "service_keys"]
    ops: list[dict[str, Any]] = Field(description="the delta: add_rule/remove_rule {rule}, add_resource {type, id, "
                                                  "context}, remove_resource {type, id}, policy {document}, "
                                                  "service_keys, archive_org/restore_org/purge_org {id}")


class ChangesOut(BaseModel):
    changes: list[ChangeOut]
    next_after: int = Field(description="pass as `after` for the next changes")


# ---- backend tokens --------------------------------------------------------------------

class BackendTokenBody(Strict):
    """The secret is write-only: SecretStr keeps it out of reprs, OpenAPI marks it writeOnly."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"token": "<the provider's API token>"}]})
    token: SecretStr = Field(description="1-4096 printable characters; stored encrypted, never returned")


class BackendTokenOut(BaseModel):
    provider: str
    hint: str = Field(description="the last 4 characters (fewer for tokens shorter than 16)")
    updated_at: datetime
    updated_by: str


class ResolveBody(Strict):
    user_id: str = Field(max_length=1000, description="the user whose job needs the token")
    context: str = Field(max_length=1000, description="an org id, or user:<user_id> for a personal context")
    provider: str = Field(max_length=1000)


class ResolvedTokenOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"token": "<the provider's API token>"}]})
    token: str


# ---- policy, audit ---------------------------------------------------------------------

class PolicyOut(BaseModel):
    revision: int
    context_owner: str = Field(description="the role that owns a context: an org's creator gets it, its last holder "
                                           "cannot leave, every user has it in their personal account")
    roles: dict[str, Any]
    permissions: list[list[str]]
    hierarchy: list[list[str]]
    types: dict[str, Any]
    routes: dict[str, dict[str, str]] | None = Field(
        description="forward-auth's routes as routes.yaml writes them (`METHOD /path`: type, action, id or "
                    "context); null when the policy has no routes.yaml (forward-auth denies every request)")


class PolicyReloadOut(BaseModel):
    revision: int
    added: list[list[str]]
    removed: list[list[str]]


class AuditOut(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    context: str | None
    target: str | None
    detail: dict[str, Any]
    request_id: str | None
    revision: int | None


class AuditPage(BaseModel):
    entries: list[AuditOut]
    next_before: int | None = Field(description="pass as `before` for the next (older) page")
    next_cursor: str | None = Field(default=None, description="or pass this as `cursor`; null on the last page")


# ---- invitations -----------------------------------------------------------------------

class InvitationCreate(Strict):
    email: str = Field(max_length=1000)
    role: str = Field(max_length=64)
    expires_at: str | None = Field(default=None, max_length=40,
                                   description="when the membership the invitation creates ends (RFC 3339)")


class InvitationBulk(Strict):
    invitations: list[dict[str, Any]] = Field(
        min_length=1, max_length=100, description="1-100 rows of {email, role}; each gets its own result"
    )


class InvitationOut(BaseModel):
    """Never the token: it goes only into the email."""

    id: str
    email: str
    role: str
    status: Literal["pending", "accepted", "declined", "revoked", "expired"]
    delivery: Literal["pending", "sent", "failed"] = Field(description="state of the latest invitation email")
    invited_by: str
    created_at: datetime
    expires_at: datetime
    grant_expires_at: datetime | None = Field(default=None, description="when the membership it creates ends")


class BulkResult(BaseModel):
    status: int
    invitation: InvitationOut | None = None
    problem: dict[str, Any] | None = Field(default=None, description="application/problem+json of a refused row")


class InvitationBulkOut(BaseModel):
    results: list[BulkResult]


class InvitationTokenBody(Strict):
    token: str = Field(max_length=1000, description="the token from the acceptance link in the email")


class InvitationAcceptedOut(BaseModel):
    organization_id: str
    role: str


class MyInvitationOut(BaseModel):
    id: str
    organization_id: str
    organization_name: str
    email: str
    role: str
    invited_by: str
    expires_at: datetime


class Problem(BaseModel):
    """application/problem+json (RFC 9457)."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[dict[str, Any]] | None = None
