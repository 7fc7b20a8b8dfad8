"""Who is acting: a user (from an identity token), a service key, or the admin command line."""

from dataclasses import dataclass, field
from typing import Literal

from authz.domain.errors import Invalid

SCOPE_CHECK = "check"
SCOPE_TOKENS_RESOLVE = "tokens:resolve"
SCOPE_CHANGES_READ = "changes:read"
SCOPE_ADMIN = "admin"
SCOPES = frozenset({SCOPE_CHECK, SCOPE_TOKENS_RESOLVE, SCOPE_CHANGES_READ, SCOPE_ADMIN})


@dataclass(frozen=True)
class Principal:
    kind: Literal["user", "service", "cli"]
    id: str
    email: str | None = None
    email_verified: bool = False
    scopes: frozenset[str] = field(default_factory=frozenset)
    request_id: str | None = None

    @property
    def is_user(self) -> bool:
        return self.kind == "user"

    @property
    def audit_name(self) -> str:
        """How the audit log names the actor."""
        return {"user": "user:", "service": "service_key:", "cli": "cli:"}[self.kind] + self.id

    def has_scope(self, scope: str) -> bool:
        return self.kind == "cli" or scope in self.scopes


def cli_principal() -> Principal:
    """The operator at the command line: trusted like an admin key, audited as `cli:admin`."""
    return Principal(kind="cli", id="admin")


EMAIL_CLAIM_MAX = 320


def email_claim(value: object, field: str = "email") -> str | None:
    """An identity token's email claim as given (None when absent): claims are data from outside.

    A string of 1-320 printable characters; anything else (a NUL byte, a line break, another
    type) is Invalid, so the token is refused instead of the value reaching a database or a mail.
    """
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= EMAIL_CLAIM_MAX:
        raise Invalid(f"the {field} claim must be a string of 1-{EMAIL_CLAIM_MAX} characters", field=field)
    if not value.isprintable():
        raise Invalid(f"the {field} claim contains control characters", field=field)
    return value
