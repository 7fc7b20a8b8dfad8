"""Bringing a database schema up to date with Alembic, without an alembic.ini; telling whether it is."""

import atexit
import shutil
import tempfile
import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from authz.store.database import Database

MIGRATIONS = Path(__file__).with_name("migrations")


class SchemaNotCurrent(RuntimeError):
    """The database's schema is not the one this version needs (none yet, older or newer)."""


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


_scratch_lock = threading.Lock()
_scratch_schema: Path | None = None


def new_scratch_sqlite(path: Path) -> str:
    """A new SQLite database at `path` with the current schema; returns its URL.

    The first one in a process is migrated; later ones copy a file migrated once, since running
    the migrations is most of the cost of a rehearsal (`authz policy validate`, a policy reload).
    """
    global _scratch_schema
    with _scratch_lock:
        # (again if a temporary-file cleaner removed it from under a server that runs for weeks)
        if _scratch_schema is None or not _scratch_schema.is_file():
            folder = Path(tempfile.mkdtemp(prefix="authz-schema-"))
            atexit.register(shutil.rmtree, folder, ignore_errors=True)
            upgrade(f"sqlite:///{folder / 'schema.db'}")
            _scratch_schema = folder / "schema.db"
        shutil.copyfile(_scratch_schema, path)
    return f"sqlite:///{path}"


def require_current_schema(database: Database) -> None:
    """Raise SchemaNotCurrent unless the database is at this version's head revision; never migrates.

    Only `authz db upgrade` and `authz serve` change the schema: a command that merely
    reads or writes rows says what to run instead of failing on a missing column.
    """
    scripts = ScriptDirectory.from_config(alembic_config(database.url))
    wanted = set(scripts.get_heads())
    with database.session() as session:  # an unreachable database is Unavailable, as for every command
        current = set(MigrationContext.configure(session.connection()).get_current_heads())
    if current == wanted:
        return
    if not current:
        raise SchemaNotCurrent("the database has no authz schema yet: run `authz db upgrade`")
    known = {script.revision for script in scripts.walk_revisions()}
    if not current <= known:  # written by a newer authz: upgrading the schema cannot help
        raise SchemaNotCurrent(f"the database schema is at revision {', '.join(sorted(current))}, "
                               "which this version of authz does not know: run a newer authz")
    raise SchemaNotCurrent(f"the database schema is at revision {', '.join(sorted(current))}, this version needs "
                           f"{', '.join(sorted(wanted))}: run `authz db upgrade`")
