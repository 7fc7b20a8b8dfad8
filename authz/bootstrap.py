"""Opening authz for a process: schema up to date, the policy loaded, this replica at the head."""

import logging

from sqlalchemy import select

from authz.domain.cursors import CursorCodec, derive_key
from authz.domain.principal import Principal
from authz.policy.document import PolicyDocument
from authz.secrets import KeyRing, SecretKeyError, load_key_ring
from authz.services.policy_admin import ensure_policy
from authz.services.runtime import Runtime, StoreRuntime
from authz.settings import Settings
from authz.store import rules
from authz.store.database import Database
from authz.store.migrate import require_current_schema, upgrade
from authz.store.startup_lock import startup_lock
from authz.store.tables import PolicyState
from authz_client.decisions.index import DecisionIndex
from authz_client.decisions.roles import CompiledRoles

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
        log.info("applied the policy of %s as revision %s", settings.policy_dir, revision)
    return runtime


def open_store(settings: Settings, *, key_ring: KeyRing | None = None) -> StoreRuntime:
    """For a command that only reads or writes rows: the database at the current schema, and its policy.

    No migration runs (SchemaNotCurrent says to run `authz db upgrade`), no replica is
    loaded and no policy is seeded: listing service keys on a database of a million
    memberships reads the policy's few rows and the service-key table, nothing else.
    """
    database = _current_database(settings)
    try:
        document, roles = _policy_in_force(database)
    except BaseException:
        database.dispose()
        raise
    return StoreRuntime(settings=settings, database=database, key_ring=key_ring,
                        policy_in_force=document, roles_in_force=roles)


def open_replica(settings: Settings) -> Runtime:
    """For a command that answers decisions from the database as it is: the replica loaded once, no migration."""
    database = _current_database(settings)
    runtime = Runtime(settings=settings, database=database)
    try:
        runtime.replica.load(database)
    except BaseException:
        database.dispose()
        raise
    return runtime


def _current_database(settings: Settings) -> Database:
    """The configured database; SchemaNotCurrent unless its schema is this version's."""
    database = Database(settings.database_url)
    try:
        require_current_schema(database)
    except BaseException:
        database.dispose()
        raise
    return database


def _policy_in_force(database: Database) -> tuple[PolicyDocument | None, CompiledRoles]:
    """The policy document and its compiled roles, from the policy's own rows (the `*` domain) only."""
    with database.session() as session:
        document = session.scalar(select(PolicyState.document).where(PolicyState.id == 1))
        policy_rules = rules.policy_rules(session)
    editor = DecisionIndex.build()  # the one place that compiles what a role may do
    for rule in sorted(policy_rules):
        editor.add_rule(rule)
    return (PolicyDocument.from_json(document) if document is not None else None), editor.finish().roles


def cursor_codec(settings: Settings, key_ring: KeyRing) -> CursorCodec:
    """AUTHZ_CURSOR_KEY when set, else a key derived from the backend-token keys (shared by every replica)."""
    if settings.cursor_key is not None:
        configured = settings.cursor_key.get_secret_value().encode("utf-8")
        if len(configured) < 16:
            raise SecretKeyError("AUTHZ_CURSOR_KEY must be at least 16 characters (e.g. `authz secrets new-key`)")
        return CursorCodec(derive_key(configured, "paging cursors"))
    return CursorCodec(key_ring.derive("paging cursors"))
