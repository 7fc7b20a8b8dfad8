"""Reading the snapshot stream of `GET /v1/snapshot` into a `DecisionIndex`.

The server writes it: `authz.engine.transfer`.

Every follower reads it here: the sidecar, and the client's embedded mode. The form is
newline-delimited JSON, one value per line, in this order:

    {"format": "authz-snapshot/1", "revision": R}
    {"policy": <policy document> | null}
    {"service_keys": [{"id", "name", "secret_hash", "scopes"}]}   hashes only, never a key
    {"rules": [[ptype, v0, ...], ...]}     permissions, role hierarchy, grants that expire
    ["g", domain, "subject␟role␟subject␟role…"]    the other grants, one line per domain
    ["r", context, "type:id␟type:id…"]             resources, one line per context
    {"end": R, "grants": n, "resources": m}        absent: the stream was cut short

Grants and resources travel in the grouped form of `IndexEditor.load_grouped_*` (split in
C), so a million of each load in seconds. orjson parses the lines when it is installed
(the server has it); otherwise the standard library's json does, a little slower.
"""

import gc
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from authz_client.decisions.index import DecisionIndex

try:
    from orjson import loads as _orjson_loads
except ImportError:  # the client needs nothing beyond httpx
    import json

    json_loads: Callable[[bytes | str], Any] = json.loads
else:
    json_loads = _orjson_loads

FORMAT = "authz-snapshot/1"


class SnapshotInvalid(ValueError):
    """The stream is not a complete snapshot (cut short, or not this format)."""


@dataclass(frozen=True)
class StreamSnapshot:
    """A snapshot stream as read: the index, and the parts only the server uses, as JSON."""

    revision: int
    index: DecisionIndex
    policy: dict[str, Any] | None
    service_keys: list[dict[str, Any]]


def lines_of(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Whole lines from chunks cut anywhere (an HTTP body as it arrives)."""
    pending: list[bytes] = []  # the pieces of an unfinished line (one context's line may be megabytes)
    for chunk in chunks:
        if b"\n" not in chunk:
            if chunk:
                pending.append(chunk)
            continue
        first, *complete, rest = chunk.split(b"\n")
        pending.append(first)
        head = b"".join(pending)
        if head:
            yield head
        yield from (line for line in complete if line)
        pending = [rest] if rest else []
    if pending:
        yield b"".join(pending)


def load(lines: Iterable[bytes], *, freeze: bool = True) -> StreamSnapshot:
    """The snapshot in `lines`; raises SnapshotInvalid unless the stream is whole.

    `freeze`: see `bulk_allocation`.
    """
    stream = iter(lines)
    header = _next_object(stream, "format")
    if header.get("format") != FORMAT or not isinstance(header.get("revision"), int):
        raise SnapshotInvalid(f"not an {FORMAT} stream")
    revision: int = header["revision"]
    policy: dict[str, Any] | None = _next_object(stream, "policy")["policy"]
    keys: list[dict[str, Any]] = _next_object(stream, "service_keys")["service_keys"]
    rules = _next_object(stream, "rules")["rules"]
    groups = _Groups(stream)
    with bulk_allocation(freeze=freeze):
        editor = DecisionIndex.build()
        for rule in rules:
            editor.add_rule(tuple(rule))
        # Parsed line by line as the loaders consume them: the body is never all in memory at once.
        loaded = editor.load_grouped_rules(groups.of("g"))
        editor.load_grouped_resources(groups.of("r"))
        index = editor.finish()
    end = groups.end
    if end is None or end.get("end") != revision:
        raise SnapshotInvalid("the snapshot stream ended before its last line (cut short)")
    if "grants" in end and loaded != end["grants"]:
        raise SnapshotInvalid(f"the snapshot announced {end['grants']} grants but held {loaded}")
    return StreamSnapshot(revision, index, policy, keys)


def read_service_keys(lines: Iterable[bytes]) -> tuple[int, list[dict[str, Any]]]:
    """(revision, key records) from a `?part=service_keys` stream: header, keys, end."""
    stream = iter(lines)
    header = _next_object(stream, "format")
    if header.get("format") != FORMAT:
        raise SnapshotInvalid(f"not an {FORMAT} stream")
    keys: list[dict[str, Any]] = _next_object(stream, "service_keys")["service_keys"]
    if "end" not in _next_object(stream, "end"):
        raise SnapshotInvalid("the service-key stream was cut short")
    return int(header["revision"]), keys


@contextmanager
def bulk_allocation(*, freeze: bool = True) -> Iterator[None]:
    """No cyclic GC while millions of long-lived dicts are built, then (with `freeze`) freeze them.

    Each collection of the oldest generation would walk every object loaded so far
    (quadratic overall); frozen objects are never walked again, so later collections
    stay short and add no pauses to the check path. `gc.freeze()` freezes every object
    of the process, not only the index's: an application embedding the index may prefer
    `freeze=False`.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.collect()  # what the load discarded
        if freeze:
            gc.freeze()
        if was_enabled:
            gc.enable()


class _Groups:
    """The grouped lines of a stream, kind after kind ("g" then "r"), then its `end` object."""

    def __init__(self, stream: Iterator[bytes]) -> None:
        self._stream = stream
        self._held: Any = None  # a parsed line that belongs to the next kind
        self.end: dict[str, Any] | None = None

    def of(self, kind: str) -> Iterator[tuple[str, str]]:
        held, self._held = self._held, None
        values = _chain(held, self._stream) if held is not None else map(json_loads, self._stream)
        for value in values:
            if isinstance(value, list) and len(value) == 3 and value[0] == kind:
                yield value[1], value[2]
            elif isinstance(value, list) and len(value) == 3 and value[0] in ("g", "r"):
                self._held = value  # the next kind's first line
                return
            elif isinstance(value, dict) and "end" in value:
                self.end = value
                return
            else:
                raise SnapshotInvalid(f"unexpected line in the snapshot: {str(value)[:80]}")


def _chain(first: Any, stream: Iterator[bytes]) -> Iterator[Any]:
    yield first
    yield from map(json_loads, stream)


def _next_object(stream: Iterator[bytes], name: str) -> dict[str, Any]:
    try:
        value = json_loads(next(stream))
    except StopIteration:
        raise SnapshotInvalid(f"the snapshot stream ended before `{name}` (cut short)") from None
    except ValueError:  # json's and orjson's decode errors are both ValueErrors
        raise SnapshotInvalid(f"the snapshot's `{name}` line is not JSON") from None
    if not isinstance(value, dict) or name not in value:
        raise SnapshotInvalid(f"the snapshot has no `{name}` where expected")
    return value
