"""Service keys: `azk_<id>_<secret>`, printed once, stored as a SHA-256 hash, verified in constant time."""

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from authz.domain.errors import Invalid, NotFound
from authz.domain.principal import SCOPES, Principal
from authz.engine.replica import ServiceKeyRecord
from authz.services.runtime import Runtime, Written
from authz.store.tables import ServiceKey

PREFIX = "azk_"
_KEY = re.compile(r"azk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
_KEY_ID = re.compile(r"[0-9a-f]{16}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}")


@dataclass(frozen=True)
class ServiceKeyView:
    id: str
    name: str
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_service_key(rt: Runtime, principal: Principal, name: str, scopes: list[str]) -> Written[str]:
    """Returns the key itself; it is never shown again."""
    if _NAME.fullmatch(name) is None:
        raise Invalid("name must be 1-100 letters, digits, spaces, . _ -", field="name")
    unknown = sorted(set(scopes) - SCOPES)
    if unknown or not scopes:
        raise Invalid(f"scopes must be among: {', '.join(sorted(SCOPES))}", field="scope")
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    with rt.unit_of_work(principal) as uow:
        uow.lock_global()
        uow.session.add(ServiceKey(id=key_id, name=name, secret_hash=_hash(secret),
                                   scopes=" ".join(sorted(set(scopes))), created_at=uow.now))
        uow.record({"op": "service_keys"})
        uow.audit(
            "service_key.create", context=None, target=key_id, detail={"name": name, "scopes": sorted(set(scopes))}
        )
        revision = uow.commit()
    return Written(f"{PREFIX}{key_id}_{secret}", revision)


def list_service_keys(rt: Runtime) -> list[ServiceKeyView]:
    with rt.database.session() as session:
        rows = session.scalars(select(ServiceKey).order_by(ServiceKey.created_at))
        return [ServiceKeyView(r.id, r.name, r.scopes.split(), r.created_at, r.revoked_at) for r in rows]


def revoke_service_key(rt: Runtime, principal: Principal, key_id: str) -> Written[None]:
    if _KEY_ID.fullmatch(key_id) is None:
        raise Invalid("a key id is 16 hex digits (see `authz service-key list`)", field="key_id")
    with rt.unit_of_work(principal) as uow:
        uow.lock_global()
        row = uow.session.get(ServiceKey, key_id)
        if row is None or row.revoked_at is not None:
            raise NotFound("no active service key with that id")
        row.revoked_at = uow.now
        uow.record({"op": "service_keys"})
        uow.audit("service_key.revoke", context=None, target=key_id, detail={"name": row.name})
        revision = uow.commit()
    return Written(None, revision)


def verify_service_key(rt: Runtime, key: str) -> ServiceKeyRecord | None:
    """The key's record if it is valid and not revoked; from memory, no database access."""
    match = _KEY.fullmatch(key)
    if match is None:
        return None
    record = rt.replica.snapshot.service_keys.get(match.group(1))
    if record is None:
        return None
    if not hmac.compare_digest(record.secret_hash, _hash(match.group(2))):
        return None
    return record


def is_unknown_here(rt: Runtime, key: str) -> bool:
    """A well-formed key whose id this replica does not know (yet): only such a key is worth a database lookup."""
    match = _KEY.fullmatch(key)
    return match is not None and match.group(1) not in rt.replica.snapshot.service_keys


def lookup_service_key(rt: Runtime, key: str) -> ServiceKeyRecord | None:
    """The key's record read from the database by its id (a key created a moment ago, elsewhere).

    The replica learns of a new key from the changelog within a poll interval; this makes
    a key work on every replica the moment `service-key create` has committed. Only the
    row of that id is read (primary key), and it must be active and match in constant time.
    """
    match = _KEY.fullmatch(key)
    if match is None:
        return None
    with rt.database.session() as session:
        row = session.get(ServiceKey, match.group(1))
        if row is None or row.revoked_at is not None:
            return None
        if not hmac.compare_digest(row.secret_hash, _hash(match.group(2))):
            return None
        return ServiceKeyRecord(row.id, row.name, row.secret_hash, frozenset(row.scopes.split()))
