"""The decision state at one revision as a compact stream, and back (GET /v1/snapshot; the sidecar).

Followers read it with `authz_client.decisions.stream` (the sidecar and the client's
embedded mode alike); `load` adds what only the server keeps: the policy document and
the service-key records.

A follower that loads this stream and then applies the change feed after its revision
holds the same state as a replica that read the database (tests/engine/test_transfer.py).
It is written from a published `Snapshot`, which never changes, so it is one revision
throughout however long the stream takes, and it costs the database nothing.

The form (newline-delimited JSON: header, policy, service-key hashes, rules, grouped grants
and resources, end) is described where it is read, `authz_client.decisions.stream`.
"""

import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, cast

import orjson

from authz.domain.grants import expiry_value
from authz.engine.replica import ServiceKeyRecord, Snapshot
from authz.policy.document import PolicyDocument
from authz_client.decisions import stream
from authz_client.decisions.index import GROUP_SEPARATOR, Clock
from authz_client.decisions.stream import FORMAT

CHUNK_BYTES = 256 * 1024  # lines are joined into chunks of about this size (fewer writes)


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
                plain.append(grant)
            else:
                role, expires = cast(tuple[str, float], grant)  # a grant that ends
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


def load(lines: Iterable[bytes], clock: Clock = time.time) -> Snapshot:
    """A `Snapshot` from the lines of `dump`; raises SnapshotInvalid unless the stream is whole."""
    return snapshot_of(stream.load(lines), clock)


def snapshot_of(loaded: stream.StreamSnapshot, clock: Clock = time.time) -> Snapshot:
    """The server's `Snapshot` of a stream read by `authz_client.decisions.stream`: with its policy and keys."""
    policy = PolicyDocument.from_json(loaded.policy) if loaded.policy is not None else None
    return Snapshot(loaded.revision, loaded.index, policy, service_keys_of(loaded.service_keys), clock=clock)


def service_keys_of(records: list[dict[str, Any]]) -> Mapping[str, ServiceKeyRecord]:
    return {
        r["id"]: ServiceKeyRecord(r["id"], r["name"], r["secret_hash"], frozenset(r["scopes"])) for r in records
    }


def read_service_keys(lines: Iterable[bytes]) -> tuple[int, Mapping[str, ServiceKeyRecord]]:
    """(revision, keys) from a `dump(..., only_service_keys=True)` stream."""
    revision, records = stream.read_service_keys(lines)
    return revision, service_keys_of(records)
