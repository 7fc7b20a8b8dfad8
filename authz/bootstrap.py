"""Opening authz for a process: schema up to date, the policy loaded, this replica at the head."""

import logging

from authz.domain.principal import Principal
from authz.services.policy_admin import ensure_policy
from authz.services.runtime import Runtime
from authz.settings import Settings
from authz.store.database import Database
from authz.store.migrate import upgrade

log = logging.getLogger("authz.bootstrap")
STARTUP = Principal(kind="cli", id="startup")


def open_runtime(settings: Settings, *, migrate: bool = True) -> Runtime:
    """Upgrade the schema (Alembic), load the replica, and apply `policies/` if the database has none."""
    if migrate:
        upgrade(settings.database_url)
    database = Database(settings.database_url)
    runtime = Runtime(settings=settings, database=database)
    runtime.replica.load(database)
    revision = ensure_policy(runtime, STARTUP)
    if revision is not None:
        log.info("loaded the policy from %s as revision %s", settings.policy_dir, revision)
    return runtime
