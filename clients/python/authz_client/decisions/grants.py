"""How a grant's end is written in a `g` rule (the server's `authz.domain.grants` imports it from here).

An RFC 3339 UTC instant with a fixed format (`2026-12-01T09:30:00Z`): readable by any
Casbin port, and ordered as text.
"""

from datetime import UTC, datetime

EXPIRY_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def expiry_epoch(value: str) -> float:
    """The POSIX time of a rule's expiry value."""
    return datetime.strptime(value, EXPIRY_FORMAT).replace(tzinfo=UTC).timestamp()
