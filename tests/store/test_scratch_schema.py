"""Scratch databases for rehearsals: a copy of a schema migrated once per process."""

from pathlib import Path

from authz.store import migrate
from authz.store.database import Database


def _is_current(url: str) -> None:
    database = Database(url)
    try:
        migrate.require_current_schema(database)  # raises SchemaNotCurrent otherwise
    finally:
        database.dispose()


def test_each_scratch_database_has_the_current_schema_even_after_its_template_was_removed(tmp_path: Path) -> None:
    _is_current(migrate.new_scratch_sqlite(tmp_path / "one.db"))
    template = migrate._scratch_schema
    assert template is not None and template.is_file()
    template.unlink()  # what a temporary-file cleaner does to a long-running server's /tmp
    _is_current(migrate.new_scratch_sqlite(tmp_path / "two.db"))
