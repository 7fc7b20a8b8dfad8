"""Invitation values: the invited email, the secret token, and the status a user sees.

The token is `inv_<24 hex id>_<43 URL-safe characters>`: 32 random bytes of secret
behind the invitation's (non-secret) id. Only the SHA-256 of the whole token is stored.
Carrying the id lets acceptance find the row by primary key and then compare digests
with `hmac.compare_digest`, so no lookup depends on the secret's bytes (DESIGN.md
invariant 8).
"""

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from authz.domain.errors import Invalid

PENDING: Final = "pending"
ACCEPTED: Final = "accepted"
DECLINED: Final = "declined"
REVOKED: Final = "revoked"
EXPIRED: Final = "expired"  # never stored: a pending invitation past its expiry

Status = Literal["pending", "accepted", "declined", "revoked", "expired"]

EMAIL_MAX = 320
TOKEN_MAX = 200  # anything longer is not one of ours; refused before hashing
_ID = re.compile(r"inv_[0-9a-f]{24}")
_TOKEN = re.compile(r"(inv_[0-9a-f]{24})_([A-Za-z0-9_-]{43})")
# Deliberately narrower than RFC 5321: the address goes into SMTP commands and headers,
# so no quotes, spaces, control characters or non-ASCII ever reach them.
_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def new_invitation_id() -> str:
    return "inv_" + secrets.token_hex(12)


def invitation_id(value: object, field: str = "invitation_id") -> str:
    if not isinstance(value, str) or _ID.fullmatch(value) is None:
        raise Invalid(f"{field} is not a valid invitation id (inv_ followed by 24 hex digits)", field=field)
    return value


def email(value: object, field: str = "email") -> str:
    """A deliverable address, lower-cased (invitations match emails case-insensitively)."""
    if not isinstance(value, str):
        raise Invalid(f"{field} must be a string", field=field)
    address = value.strip()
    local, at, domain = address.rpartition("@")
    valid = (
        at == "@"
        and len(address) <= EMAIL_MAX
        and 1 <= len(local) <= 64
        and _LOCAL.fullmatch(local) is not None
        and len(domain) <= 253
        and domain.count(".") >= 1
        and all(_LABEL.fullmatch(label) for label in domain.split("."))
    )
    if not valid:
        raise Invalid(f"{field} is not a valid email address", field=field)
    return canonical_email(address)


# Only A-Z are folded: str.lower() also maps look-alikes onto ASCII (KELVIN SIGN U+212A
# lower-cases to "k"), which would let "\u212aim@example.com" match "kim@example.com".
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def canonical_email(address: str) -> str:
    """An address as it is stored and compared: ASCII letters lower-cased, nothing else changed.

    Two different addresses never get the same canonical form except by ASCII case, so an
    email claim matches an invitation only when it is that address (case-insensitively, as
    API.md says, in the only alphabet invitations accept).
    """
    return address.translate(_ASCII_LOWER)


def same_email(invited: str, claimed: str | None) -> bool:
    """Does an email claim name the invited address? Exact after `canonical_email`, no trimming."""
    return claimed is not None and canonical_email(invited) == canonical_email(claimed)


@dataclass(frozen=True)
class Token:
    """A freshly made token: `value` goes only into the email, `digest` into the database."""

    value: str
    digest: str


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def new_token(invitation: str) -> Token:
    value = f"{invitation}_{secrets.token_urlsafe(32)}"
    return Token(value, token_digest(value))


def parse_token(value: object, field: str = "token") -> str | None:
    """The invitation id a token names, or None when it is not shaped like one of ours.

    A string of plausible size that is not ours is an unknown token (404), not invalid input.
    """
    if not isinstance(value, str) or not value.strip() or len(value) > TOKEN_MAX:
        raise Invalid(f"{field} must be a non-empty string of at most {TOKEN_MAX} characters", field=field)
    match = _TOKEN.fullmatch(value.strip())
    return match.group(1) if match else None


def token_matches(token: str, stored_digest: str) -> bool:
    return hmac.compare_digest(token_digest(token.strip()), stored_digest)


def mask_token(token: str) -> str:
    """The id part stays readable (for support), the secret never is."""
    match = _TOKEN.fullmatch(token)
    return f"{match.group(1)}_[masked]" if match else "[masked]"


def visible_status(stored: str, expires_at: datetime, now: datetime) -> Status:
    """What a user sees: a pending invitation past its expiry is `expired`."""
    if stored == PENDING and expires_at <= now:
        return "expired"
    return stored  # type: ignore[return-value]
