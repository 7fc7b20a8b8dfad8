"""A service key works on every replica the moment it is created; revocation still reaches every
replica within a second (issue 12, class 9); unknown keys cannot make requests into database reads.

Two apps share one database: `here` (where keys are created) and `there`, a second replica.
"""

import time
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from authz.bootstrap import open_runtime
from authz.domain.principal import cli_principal
from authz.services.runtime import Runtime
from authz.services.service_keys import create_service_key, revoke_service_key
from authz.settings import Settings
from tests.app_client import AppClient
from tests.conftest import make_settings

CHECK = {"subject": "alice", "action": "read", "resource": {"type": "job"}, "context": "personal"}


@pytest.fixture
def there_settings(database_url: str) -> Settings:
    return make_settings(database_url, sync_poll_interval=0.2)


@pytest.fixture
def there(there_settings: Settings) -> Iterator[TestClient]:
    """Another replica: its own runtime and app on the same database."""
    runtime = open_runtime(there_settings, migrate=False)
    with AppClient(create_app(there_settings, runtime), raise_server_exceptions=False) as client:
        yield client
    runtime.database.dispose()


def deaf(client: TestClient) -> None:
    """This replica stops following the changelog: only a database lookup can teach it a new key."""
    assert isinstance(client.app, FastAPI)
    client.app.state.follower.stop()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def new_key(runtime: Runtime, *scopes: str) -> str:
    return create_service_key(runtime, cli_principal(), "replica-test", list(scopes or ["check"])).value


def test_a_new_key_works_at_once_on_a_replica_that_has_not_seen_it(runtime: Runtime, there: TestClient) -> None:
    deaf(there)
    key = new_key(runtime, "check")
    for path, body in (("/v1/check", CHECK), ("/v1/check/batch", {"checks": [CHECK]}),
                       ("/v1/list-resources", {"subject": "alice", "action": "read", "type": "algorithm"})):
        response = there.post(path, json=body, headers=bearer(key))
        assert response.status_code == 200, (path, response.text)
    # a dependency-authenticated route, and the scopes are the key's own
    assert there.get("/v1/policy", headers=bearer(key)).status_code == 403
    admin = new_key(runtime, "admin")
    assert there.get("/v1/policy", headers=bearer(admin)).status_code == 200


def test_a_key_created_by_the_command_works_at_once_on_a_running_server(runtime: Runtime, there: TestClient,
                                                                         database_url: str) -> None:
    import os

    from typer.testing import CliRunner

    from authz.cli import app
    from tests.conftest import JWT_SECRET

    deaf(there)
    env = {**os.environ, "AUTHZ_DATABASE_URL": database_url, "AUTHZ_JWT_SECRET": JWT_SECRET, "AUTHZ_ENV": "test",
           "AUTHZ_POLICY_DIR": str(runtime.settings.policy_dir)}
    created = CliRunner().invoke(app, ["service-key", "create", "sidecar", "--scope", "check"], env=env)
    assert created.exit_code == 0, created.output
    key = created.stdout.strip().splitlines()[0]
    assert there.post("/v1/check", json=CHECK, headers=bearer(key)).status_code == 200


def test_revocation_reaches_another_replica_within_a_second(runtime: Runtime, there: TestClient) -> None:
    key = new_key(runtime, "check")
    assert there.post("/v1/check", json=CHECK, headers=bearer(key)).status_code == 200  # learnt by lookup or feed
    assert there.post("/v1/check", json=CHECK, headers=bearer(key)).status_code == 200
    key_id = key.split("_")[1]
    revoke_service_key(runtime, cli_principal(), key_id)
    revoked_at = time.monotonic()
    while there.post("/v1/check", json=CHECK, headers=bearer(key)).status_code == 200:
        assert time.monotonic() - revoked_at < 1.0, "the revoked key still works after a second"
        time.sleep(0.02)
    assert there.post("/v1/check", json=CHECK, headers=bearer(key)).status_code == 401


def test_a_revoked_key_is_refused_by_a_replica_that_never_saw_it(runtime: Runtime, there: TestClient) -> None:
    deaf(there)
    key = new_key(runtime, "check")
    revoke_service_key(runtime, cli_principal(), key.split("_")[1])
    assert there.post("/v1/check", json=CHECK, headers=bearer(key)).status_code == 401
    # and a right id with a wrong secret
    other = new_key(runtime, "check")
    forged = other[:-4] + ("AAAA" if not other.endswith("AAAA") else "BBBB")
    assert there.post("/v1/check", json=CHECK, headers=bearer(forged)).status_code == 401
    assert there.post("/v1/check", json=CHECK, headers=bearer(other)).status_code == 200


def test_unknown_keys_cannot_turn_requests_into_database_reads(runtime: Runtime, there: TestClient) -> None:
    deaf(there)
    assert isinstance(there.app, FastAPI)
    cache = there.app.state.authenticator.service_keys
    junk = [f"azk_{n:016x}_{'A' * 43}" for n in range(200)]
    started = time.monotonic()
    for key in junk:
        assert there.post("/v1/check", json=CHECK, headers=bearer(key)).status_code == 401
    # the same unknown key again and again: looked up once per MISS_TTL
    for _ in range(50):
        assert there.post("/v1/check", json=CHECK, headers=bearer(junk[0])).status_code == 401
    elapsed = time.monotonic() - started
    assert cache.lookups <= cache.LOOKUPS_PER_SECOND * (1 + elapsed) + 1  # a burst, then the rate of the bucket
    # malformed keys are never looked up
    before = cache.lookups
    for key in ("azk_nothex_" + "A" * 43, "azk_" + "0" * 16, "azk_" + "0" * 16 + "_" + "A" * 500):
        assert there.post("/v1/check", json=CHECK, headers=bearer(key)).status_code == 401
    assert cache.lookups == before
