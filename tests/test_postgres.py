"""Each PostgreSQL test starts from the first start's contents (tests/postgres.py, `Contents`)."""

import pytest
from sqlalchemy import Engine

from authz.bootstrap import open_runtime
from authz.domain.principal import cli_principal
from authz.services.service_keys import create_service_key
from authz.store.tables import Base
from tests.conftest import make_settings
from tests.postgres import Contents

pytestmark = pytest.mark.postgres


def test_a_restore_removes_what_a_test_wrote_and_puts_every_sequence_back(
    postgres_server_url: str, postgres_contents: tuple[Engine, Contents]
) -> None:
    engine, captured = postgres_contents
    captured.restore(engine)
    before = Contents.capture(engine, Base.metadata.sorted_tables)
    runtime = open_runtime(make_settings(postgres_server_url), migrate=False)
    try:  # a write that adds rows to several tables and advances their id sequences
        create_service_key(runtime, cli_principal(), "ci", ["check"])
        create_service_key(runtime, cli_principal(), "billing", ["check"])
    finally:
        runtime.database.dispose()
    written = Contents.capture(engine, Base.metadata.sorted_tables)
    assert written.rows != before.rows and written.sequences != before.sequences

    captured.restore(engine)

    after = Contents.capture(engine, Base.metadata.sorted_tables)
    assert after.rows == before.rows
    assert after.sequences == before.sequences
