"""Opening authz for a process: schema up to date, the policy loaded, this replica at the head."""

import logging

from authz.domain.cursors import CursorCodec, derive_key
from authz.domain.principal import Principal
from authz.secrets import KeyRing, SecretKeyError, load_key_ring
from authz.services.policy_admin import ensure_policy
from authz.services.runtime import Runtime
from authz.settings import Settings
from authz.store.database import Database
from authz.store.migrate import require_current_schema, upgrade
from authz.store.startup_lock import startup_lock

log = logging.getLogger("authz.bootstrap")
STARTUP = Principal(kind="cli", id="startup")


def open_runtime(settings: Settings, *, migrate: bool = True) -> Runtime:
    """Upgrade the schema (Alembic), load the replica, and apply `policies/` if the database has none.

    The backend-token keys are loaded first: in production, missing keys stop start-up
    (authz.secrets.SecretKeyError) before the database is touched.
    """
    key_ring = load_key_ring(settings)
    if migrate:
        with startup_lock(settings.database_url):  # replicas started together take turns
            upgrade(settings.database_url)
    database = Database(settings.database_url)
    runtime = Runtime(settings=settings, database=database, key_ring=key_ring, cursors=cursor_codec(settings, key_ring))
    runtime.replica.load(database)
    with startup_lock(settings.database_url):
        revision = ensure_policy(runtime, STARTUP)
    if runtime.replica.snapshot.policy is None:  # another replica seeded it after our load
        runtime.replica.catch_up(database)
    if revision is not None:
        log.info("loaded the policy from %s as revision %s", settings.policy_dir, revision)
    return runtime


def open_store(settings: Settings, *, key_ring: KeyRing | None = None) -> Runtime:
    """For a command that only reads or writes rows: the database, checked to be at the current schema.

    No migration runs (SchemaNotCurrent says to run `authz db upgrade`), no replica is
    loaded and no policy is seeded: listing service keys on a database of a million
    memberships reads the service-key table and nothing else. A service that asks this
    runtime for a decision (`rt.policy`) fails loudly instead of deciding on an empty index.
    """
    database = Database(settings.database_url)
    try:
        require_current_schema(database)
    except BaseException:
        database.dispose()
        raise
    return Runtime(settings=settings, database=database, key_ring=key_ring)


def open_replica(settings: Settings) -> Runtime:
    """For a command that answers decisions from the database as it is: open_store, then load the replica once."""
    runtime = open_store(settings)
    runtime.replica.load(runtime.database)
    return runtime


def cursor_codec(settings: Settings, key_ring: KeyRing) -> CursorCodec:
    """AUTHZ_CURSOR_KEY when set, else a key derived from the backend-token keys (shared by every replica)."""
    if settings.cursor_key is not None:
        configured = settings.cursor_key.get_secret_value().encode("utf-8")
        if len(configured) < 16:
            raise SecretKeyError("AUTHZ_CURSOR_KEY must be at least 16 characters (e.g. `authz secrets new-key`)")
        return CursorCodec(derive_key(configured, "paging cursors"))
    return CursorCodec(key_ring.derive("paging cursors"))
