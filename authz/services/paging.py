"""Keyset pages of database listings (members, invitations, audit) with authenticated cursors.

The cursor holds the last key shown and is bound to its listing (kind and org), exactly as
the decision listings' cursors are (`authz.domain.cursors`): a cursor from another listing
or an altered one is 400. A listing asks the database for `limit + 1` rows after the
position; the extra row only says whether a next page exists.
"""

from collections.abc import Callable, Sequence
from typing import TypeVar

from authz.domain.cursors import CursorCodec, Page, Position
from authz.domain.errors import Invalid, Malformed

T = TypeVar("T")
P = TypeVar("P", str, int)
MAX_PAGE = 1000


def check_limit(limit: object, maximum: int = MAX_PAGE) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= maximum:
        raise Invalid(f"limit must be an integer from 1 to {maximum}", field="limit")
    return limit


def position(cursors: CursorCodec, query: Sequence[str], cursor: str | None, kind: type[P]) -> P | None:
    """The key a cursor continues after, or None for the first page."""
    if cursor is None:
        return None
    found: Position = cursors.decode(query, cursor)
    if type(found) is not kind:
        raise Malformed("cursor is not a cursor of this listing", field="cursor")
    return found


def page(
    cursors: CursorCodec, query: Sequence[str], rows: list[T], limit: int, key: Callable[[T], Position]
) -> Page[T]:
    """The first `limit` rows, and a cursor after the last of them when there were more."""
    if len(rows) > limit:
        shown = rows[:limit]
        return Page(shown, cursors.encode(query, key(shown[-1])))
    return Page(rows, None)


def keyset_page(
    cursors: CursorCodec, query: Sequence[str], limit: object, cursor: str | None,
    fetch: Callable[[str | None, int], list[T]], key: Callable[[T], str],
) -> Page[T]:
    """One page of a listing ordered by a string key: `fetch(after, n)` gives at most n rows after `after`.

    One row more than the page is fetched to know whether another page follows.
    """
    size = check_limit(limit)
    after = position(cursors, query, cursor, str)
    return page(cursors, query, fetch(after, size + 1), size, key)
