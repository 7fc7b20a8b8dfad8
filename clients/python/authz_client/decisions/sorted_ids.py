"""An immutable sorted set of strings that shares almost everything with its previous version.

A context's resources are listed in id order, a page at a time, from any id on (keyset
paging). A context may hold a million resources, and every registration makes a new
snapshot of the index: copying a million-entry set per write would cost tens of
milliseconds. Here the strings live in chunks of at most `2 * CHUNK` sorted entries;
a new version copies only the outer lists (one reference per chunk) and the one chunk
it changes, and a page starts with two binary searches.
"""

from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable, Iterator
from itertools import islice

CHUNK = 512


class SortedIds:
    """Sorted, duplicate-free strings. Never mutated once built: changes return a new set."""

    __slots__ = ("_chunks", "_maxes", "_size")

    def __init__(self, chunks: list[list[str]], size: int) -> None:
        self._chunks = chunks
        self._maxes = [chunk[-1] for chunk in chunks]
        self._size = size

    @classmethod
    def of(cls, items: Iterable[str]) -> "SortedIds":
        ordered = sorted(set(items))
        chunks = [ordered[i : i + CHUNK] for i in range(0, len(ordered), CHUNK)]
        return cls(chunks, len(ordered))

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[str]:
        for chunk in self._chunks:
            yield from chunk

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SortedIds) and len(self) == len(other) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]  # equal by content, like a list

    def __contains__(self, item: object) -> bool:
        if not isinstance(item, str):
            return False
        at = bisect_left(self._maxes, item)
        if at == len(self._chunks):
            return False
        chunk = self._chunks[at]
        position = bisect_left(chunk, item)
        return position < len(chunk) and chunk[position] == item

    def with_item(self, item: str) -> "SortedIds":
        """This set plus `item` (itself when already present)."""
        if item in self:
            return self
        chunks = list(self._chunks)
        if not chunks:
            return SortedIds([[item]], 1)
        at = min(bisect_left(self._maxes, item), len(chunks) - 1)
        chunk = list(chunks[at])
        insort(chunk, item)
        if len(chunk) > 2 * CHUNK:
            chunks[at : at + 1] = [chunk[:CHUNK], chunk[CHUNK:]]
        else:
            chunks[at] = chunk
        return SortedIds(chunks, self._size + 1)

    def without(self, item: str) -> "SortedIds":
        """This set less `item` (itself when absent)."""
        if item not in self:
            return self
        chunks = list(self._chunks)
        at = bisect_left(self._maxes, item)
        chunk = list(chunks[at])
        chunk.remove(item)
        if chunk:
            chunks[at] = chunk
        else:
            del chunks[at]
        return SortedIds(chunks, self._size - 1)

    def iter_from(self, start: str, *, inclusive: bool) -> Iterator[str]:
        """The items >= `start` (or > `start`), in order."""
        find = bisect_left if inclusive else bisect_right
        at = find(self._maxes, start)
        if at == len(self._chunks):
            return
        chunk = self._chunks[at]
        yield from islice(chunk, find(chunk, start), None)
        for chunk in islice(self._chunks, at + 1, None):
            yield from chunk
