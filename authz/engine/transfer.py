"""The decision state at one revision as a compact stream, and back (GET /v1/snapshot; the sidecar).

A follower that loads this stream and then applies the change feed after its revision
holds the same state as a replica that read the database (tests/engine/test_transfer.py).
It is written from a published `Snapshot`, which never changes, so it is one revision
throughout however long the stream takes, and it costs the database nothing.

The form is newline-delimited JSON, one value per line, in this order:

    {"format": "authz-snapshot/1", "revision": R}
    {"policy": <policy document> | null}
    {"service_keys": [{"id", "name", "secret_hash", "scopes"}]}   hashes only, never a key
    {"rules": [[ptype, v0, ...], ...]}     permissions, role hierarchy, grants that expire
    ["g", domain, "subject␟role␟subject␟role…"]    the other grants, one line per domain
    ["r", context, "type:id␟type:id…"]             resources, one line per context
    {"end": R, "grants": n, "resources": m}        absent: the stream was cut short

Grants and resources travel in the grouped form the database loader already uses
(`IndexEditor.load_grouped_*`, split in C), so a million of each load in seconds.
"""

import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from authz_client.decisions.index import GROUP_SEPARATOR, Clock, DecisionIndex

from authz.domain.grants import expiry_value
from authz.engine.replica import ServiceKeyRecord, Snapshot
from authz.engine.snapshot import bulk_allocation
from authz.policy.document import PolicyDocument

FORMAT = "authz-snapshot/1"
CHUNK_BYTES = 256 * 1024  # lines are joined into chunks of about this size (fewer writes)


class SnapshotInvalid(ValueError):
    """The stream is not a complete snapshot (cut short, or not this format)."""


def service_key_records(snapshot: Snapshot) -> list[dict[str, Any]]:
    return [
        {"id": key.id, "name": key.name, "secret_hash": key.secret_hash, "scopes": sorted(key.scopes)}
        for key in snapshot.service_keys.values()
    ]


def dump(snapshot: Snapshot, *, only_service_keys: bool = False) -> Iterator[bytes]:
    """The snapshot as chunks of lines (see the module doc); `only_service_keys`: header, keys, end."""
    yield orjson.dumps({"format": FORMAT, "revision": snapshot.revision}) + b"\n"
    if not only_service_keys:
        yield orjson.dumps({"policy": snapshot.policy.to_json() if snapshot.policy is not None else None}) + b"\n"
    yield orjson.dumps({"service_keys": service_key_records(snapshot)}) + b"\n"
    if only_service_keys:
        yield orjson.dumps({"end": snapshot.revision}) + b"\n"
        return
    index = snapshot.index
    rules: list[list[str]] = [list(rule) for rule in index.policy_rules()]
    grouped: list[tuple[str, list[str]]] = []
    for domain, grants in index.grant_groups():
        plain: list[str] = []
        for subject, grant in grants.items():
            if grant.__class__ is str:
                plain.append(subject)
                plain.append(grant)  # type: ignore[arg-type]
            else:
                role, expires = grant  # type: ignore[misc]
                rules.append(["g", subject, role, domain, expiry_value(datetime.fromtimestamp(expires, UTC))])
        if plain:
            grouped.append((domain, plain))
    yield orjson.dumps({"rules": rules}) + b"\n"
    chunk: list[bytes] = []
    size = 0
    count = 0
    for domain, plain in grouped:
        line = orjson.dumps(("g", domain, GROUP_SEPARATOR.join(plain))) + b"\n"
        count += len(plain) // 2
        chunk.append(line)
        size += len(line)
        if size >= CHUNK_BYTES:
            yield b"".join(chunk)
            chunk, size = [], 0
    resources = 0
    for context, scopes in index.resource_groups():
        line = orjson.dumps(("r", context, GROUP_SEPARATOR.join(scopes))) + b"\n"
        resources += len(scopes)
        chunk.append(line)
        size += len(line)
        if size >= CHUNK_BYTES:
            yield b"".join(chunk)
            chunk, size = [], 0
    chunk.append(orjson.dumps({"end": snapshot.revision, "grants": count, "resources": resources}) + b"\n")
    yield b"".join(chunk)


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


def load(lines: Iterable[bytes], clock: Clock = time.time) -> Snapshot:
    """A `Snapshot` from the lines of `dump`; raises SnapshotInvalid unless the stream is whole."""
    stream = iter(lines)
    header = _next_object(stream, "format")
    if header.get("format") != FORMAT or not isinstance(header.get("revision"), int):
        raise SnapshotInvalid(f"not an {FORMAT} stream")
    revision: int = header["revision"]
    policy_data = _next_object(stream, "policy")["policy"]
    policy = PolicyDocument.from_json(policy_data) if policy_data is not None else None
    keys = service_keys_of(_next_object(stream, "service_keys")["service_keys"])
    rules = _next_object(stream, "rules")["rules"]
    lines = _Groups(stream)
    with bulk_allocation():
        editor = DecisionIndex.build()
        for rule in rules:
            editor.add_rule(tuple(rule))
        # Parsed line by line as the loaders consume them: the body is never all in memory at once.
        loaded = editor.load_grouped_rules(lines.of("g"))
        editor.load_grouped_resources(lines.of("r"))
        index = editor.finish()
    end = lines.end
    if end is None or end.get("end") != revision:
        raise SnapshotInvalid("the snapshot stream ended before its last line (cut short)")
    if "grants" in end and loaded != end["grants"]:
        raise SnapshotInvalid(f"the snapshot announced {end['grants']} grants but held {loaded}")
    return Snapshot(revision, index, policy, keys, clock=clock)


class _Groups:
    """The grouped lines of a stream, kind after kind ("g" then "r"), then its `end` object."""

    def __init__(self, stream: Iterator[bytes]) -> None:
        self._stream = stream
        self._held: Any = None  # a parsed line that belongs to the next kind
        self.end: dict[str, Any] | None = None

    def of(self, kind: str) -> Iterator[tuple[str, str]]:
        held, self._held = self._held, None
        values = _chain(held, self._stream) if held is not None else map(orjson.loads, self._stream)
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
    yield from map(orjson.loads, stream)


def service_keys_of(records: list[dict[str, Any]]) -> Mapping[str, ServiceKeyRecord]:
    return {
        r["id"]: ServiceKeyRecord(r["id"], r["name"], r["secret_hash"], frozenset(r["scopes"])) for r in records
    }


def read_service_keys(lines: Iterable[bytes]) -> tuple[int, Mapping[str, ServiceKeyRecord]]:
    """(revision, keys) from a `dump(..., only_service_keys=True)` stream."""
    stream = iter(lines)
    header = _next_object(stream, "format")
    if header.get("format") != FORMAT:
        raise SnapshotInvalid(f"not an {FORMAT} stream")
    keys = service_keys_of(_next_object(stream, "service_keys")["service_keys"])
    if "end" not in _next_object(stream, "end"):
        raise SnapshotInvalid("the service-key stream was cut short")
    return int(header["revision"]), keys


def _next_object(stream: Iterator[bytes], name: str) -> dict[str, Any]:
    try:
        value = orjson.loads(next(stream))
    except StopIteration:
        raise SnapshotInvalid(f"the snapshot stream ended before `{name}` (cut short)") from None
    except orjson.JSONDecodeError:
        raise SnapshotInvalid(f"the snapshot's `{name}` line is not JSON") from None
    if not isinstance(value, dict) or name not in value:
        raise SnapshotInvalid(f"the snapshot has no `{name}` where expected")
    return value

