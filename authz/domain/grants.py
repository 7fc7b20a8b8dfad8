"""Grants that expire: how an expiry is written in a Casbin rule, and what a request may ask for.

An expiring grant is a `g` rule with a fourth value, its end as an RFC 3339 UTC instant
with a fixed format (`2026-12-01T09:30:00Z`): readable by any Casbin port, and ordered
as text, so the database can find the expired ones with a plain comparison. From that
instant the grant counts in no decision (the index compares it with the clock); the
sweeper then removes the rule as a revision of its own.
"""

from datetime import UTC, datetime

from authz.domain.errors import Invalid
from authz_client.decisions.grants import EXPIRY_FORMAT as EXPIRY_FORMAT
from authz_client.decisions.grants import expiry_epoch as expiry_epoch  # the decision index reads expiries too

LATEST = datetime(9999, 1, 1, tzinfo=UTC)


def expiry_value(at: datetime) -> str:
    """The rule value of an expiry (seconds precision, UTC)."""
    return at.astimezone(UTC).strftime(EXPIRY_FORMAT)


def expiry_instant(value: str) -> datetime:
    return datetime.strptime(value, EXPIRY_FORMAT).replace(tzinfo=UTC)


def requested_expiry(value: object, now: datetime, field: str = "expires_at") -> datetime | None:
    """An `expires_at` from a request: None (no end), or an RFC 3339 instant in the future."""
    if value is None:
        return None
    if isinstance(value, datetime):
        at = value
    elif isinstance(value, str) and len(value) <= 40:
        try:
            at = datetime.fromisoformat(value)
        except ValueError:
            raise Invalid(f"{field} must be an RFC 3339 date-time such as 2026-12-31T23:59:59Z", field=field) from None
    else:
        raise Invalid(f"{field} must be an RFC 3339 date-time such as 2026-12-31T23:59:59Z", field=field)
    if at.tzinfo is None:
        raise Invalid(f"{field} must carry a time zone (Z or an offset)", field=field)
    try:
        at = at.astimezone(UTC).replace(microsecond=0)
    except OverflowError:  # 9999-12-31T23:59:59-14:00 is in the year 10000 in UTC
        raise Invalid(f"{field} must be before the year 9999", field=field) from None
    if at <= now:
        raise Invalid(f"{field} must be in the future", field=field)
    if at >= LATEST:
        raise Invalid(f"{field} must be before the year 9999", field=field)
    return at
