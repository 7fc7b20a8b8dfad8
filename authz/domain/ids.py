"""Identifiers from outside, checked against strict patterns before they reach storage or Casbin.

Every id that becomes part of a Casbin rule or request passes through one of these
functions, so no caller-chosen value can contain a wildcard, a separator or a control
character (DESIGN.md invariant 7).
"""

import re
import secrets
from typing import Final

from authz.domain.errors import Invalid
from authz_client.decisions import ids as index_ids

# Spelled as the decision index spells them in rules: one definition, shared with the client's embedded mode.
ALL_DOMAINS: Final = index_ids.ALL_DOMAINS
USER_SUBJECT_PREFIX: Final = index_ids.USER_SUBJECT_PREFIX
ACCOUNT_HOLDER: Final = index_ids.ACCOUNT_HOLDER
subject_of = index_ids.subject_of
user_of = index_ids.user_of
personal_context = index_ids.personal_context
is_personal_context = index_ids.is_personal_context
resource_scope = index_ids.resource_scope

PERSONAL: Final = "personal"

_ORG_ID = re.compile(r"org_[0-9a-f]{24}")
# Identity-provider subjects: "alice", "auth0|5f3c...", "google-oauth2|1234", UUIDs, emails.
_USER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@|+-]{0,127}")
_RESOURCE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_PROVIDER = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")


def _check(pattern: re.Pattern[str], value: object, field: str, what: str) -> str:
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        raise Invalid(f"{field} is not a valid {what}", field=field)
    return value


def new_org_id() -> str:
    return "org_" + secrets.token_hex(12)


def org_id(value: object, field: str = "org_id") -> str:
    return _check(_ORG_ID, value, field, "organization id (org_ followed by 24 hex digits)")


def is_org_id(value: str) -> bool:
    return _ORG_ID.fullmatch(value) is not None


def user_id(value: object, field: str = "user_id") -> str:
    return _check(
        _USER_ID, value, field, "user id (1-128 of letters, digits and . _ @ | + -, starting alphanumeric)"
    )


def resource_id(value: object, field: str = "id") -> str:
    return _check(
        _RESOURCE_ID, value, field, "resource id (1-128 of letters, digits and . _ -, starting alphanumeric)"
    )


def name(value: object, field: str) -> str:
    """A policy name: resource type, action or role (lowercase snake_case)."""
    return _check(_NAME, value, field, "name (lowercase letters, digits and _, starting with a letter)")


def provider(value: object, field: str = "provider") -> str:
    return _check(_PROVIDER, value, field, "provider name ([a-z0-9][a-z0-9-]{0,63})")


def context(value: object, field: str = "context") -> str:
    """A context as the API writes it: an org id or `user:<user_id>`."""
    if isinstance(value, str) and value.startswith(USER_SUBJECT_PREFIX):
        user_id(value.removeprefix(USER_SUBJECT_PREFIX), field)
        return value
    return org_id(value, field)
