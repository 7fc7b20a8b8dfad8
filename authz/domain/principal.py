"""Who is acting: a user (from an identity token), a service key, or the admin command line."""

from dataclasses import dataclass, field
from typing import Literal

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
