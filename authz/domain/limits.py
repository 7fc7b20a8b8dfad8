"""The widest integer the store holds; every integer from outside is bounded by it (issue 12, class 6).

Revisions and audit ids are BIGINT columns (SQLite INTEGER is 64-bit too): a larger number
in a query would overflow the driver (a 500) instead of simply matching nothing.
"""

from typing import Final

from authz.domain.errors import Invalid

MAX_STORED_INT: Final = 2**63 - 1


def stored_int(value: object, field: str, *, minimum: int = 0) -> int:
    """An integer the database can compare with its columns, or Invalid naming `field`."""
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= MAX_STORED_INT:
        raise Invalid(f"{field} must be an integer from {minimum} to {MAX_STORED_INT}", field=field)
    return value
