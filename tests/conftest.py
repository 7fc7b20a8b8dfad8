"""Shared fixtures: a fresh database per test on SQLite and on PostgreSQL, the runtime, the app.

PostgreSQL tests use a database of their own per test session (created on the server of
AUTHZ_TEST_DATABASE_URL and dropped at the end), so parallel runs never collide; each test
starts from its contents as captured after the first start (tests/postgres.py, `Contents`).
They skip with a reason when no server answers, unless CI=true or AUTHZ_REQUIRE_POSTGRES=1.
"""

from __future__ import annotations

import gc
import shutil
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import authlib.deprecate  # noqa: F401  (see below)
import jwt
import pytest
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from authz.domain.principal import cli_principal
from authz.secrets import new_key
from authz.settings import Settings

# The app, the store and the test servers are imported by the fixtures that use them: the xdist
# controller, which runs no test, then starts its workers a second sooner. Authlib is imported here
# all the same: on its first import it puts an "always" filter for its deprecation notices in front
# of every other, and only one put there before pytest applies pyproject.toml's filters loses to them.
if TYPE_CHECKING:
    from fastapi.testclient import TestClient
    from sqlalchemy import Engine

    from authz.services.runtime import Runtime
    from tests.postgres import Contents
    from tests.smtp_server import SmtpServer

ROOT = Path(__file__).resolve().parent.parent
POLICY_DIR = ROOT / "policies"
POLICY_MODEL = ROOT / "authz" / "policy" / "policy_model.conf"
JWT_SECRET = "test-secret-" + "x" * 32
TEST_SECRET_KEYS = new_key()


@pytest.fixture(autouse=True, scope="session")
def _backend_token_keys() -> Iterator[None]:
    """One backend-token key for every runtime and CLI run of the session (AUTHZ_SECRET_KEYS), so
    no test writes a development key file into the working tree; tests of that pass keys explicitly."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AUTHZ_SECRET_KEYS", TEST_SECRET_KEYS)
        yield


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """A new PostgreSQL database for this test session, migrated and with the shipped policy applied."""
    from authz.store.migrate import upgrade
    from tests.postgres import own_database

    with own_database("authz_test") as url:
        upgrade(url)
        _first_start(url)
        yield url


@pytest.fixture(scope="session")
def postgres_contents(postgres_server_url: str) -> Iterator[tuple[Engine, Contents]]:
    """The session database's contents before any test, and an engine to put them back with."""
    from sqlalchemy import create_engine

    from authz.store.tables import Base
    from tests.postgres import Contents

    engine = create_engine(postgres_server_url)
    try:
        yield engine, Contents.capture(engine, Base.metadata.sorted_tables)
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file with no policy yet, copied by tests whose server starts with a policy
    of their own (migrating once is the slow part)."""
    from authz.store.migrate import upgrade

    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def sqlite_first_start(sqlite_template: Path) -> Path:
    """A SQLite file as a server's first start leaves it (migrated, the shipped policy applied), copied
    for each test: migrating and applying the policy once per session instead of once per test was
    most of a test's setup."""
    path = sqlite_template.with_name("first-start.db")
    shutil.copy(sqlite_template, path)
    _first_start(f"sqlite:///{path}")  # its engine is disposed: the WAL is checkpointed into the file
    return path


def _first_start(url: str) -> None:
    """What a server's first start does to a migrated database: the shipped policy becomes revision 1."""
    from authz.bootstrap import open_runtime

    open_runtime(make_settings(url), migrate=False).database.dispose()


@pytest.hookimpl(wrapper=True)
def pytest_collection(session: pytest.Session) -> Generator[None, object, object]:
    """No cyclic garbage collection while the test modules import, then freeze what collection built
    (modules, items: alive for the whole run). The collections that walked it while the modules
    imported were a third of a worker's start (1.1 of 2.8 s of CPU), and frozen it is not walked by
    the tests' collections either. (The xdist controller collects nothing: this costs it nothing.)"""
    gc.disable()
    try:
        return (yield)
    finally:
        gc.freeze()
        gc.enable()


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the xdist_group marks added here
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark what starts processes or a browser `e2e` (tests/e2e, tests/replicas, tests/history, or a test
    that asks for a running server: `authz_server`, `cluster`, or a `server` fixture, which is always an
    `authz serve` process), so `make test-fast` can leave them out.

    The `e2e` tests run first. They are the long ones (a server killed and restarted, a sidecar past its
    staleness bound: seconds of waiting each), and pytest-xdist hands tests out in this order: one of
    them started last kept a worker busy for 10 s after the others had finished. Started first, their
    waits overlap the other tests' work, and the run ends on short tests.
    """
    slow_dirs = {"e2e", "replicas", "history"}
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if slow_dirs & set(item.path.parts) or fixtures & {"authz_server", "cluster", "server"}:
            item.add_marker(pytest.mark.e2e)
    items.sort(key=lambda item: item.get_closest_marker("e2e") is None)  # stable: each file's order is kept
    for item in items:  # without xdist the marks change nothing
        _keep_shared_fixtures_on_one_worker(item)


def _keep_shared_fixtures_on_one_worker(item: pytest.Item) -> None:
    """Under `pytest -n N --dist loadgroup` (make test), the tests that share a module- or package-scoped
    fixture (a cluster of replicas, one `authz serve`, an app under fuzz) run on one worker, which
    builds it once; every other test goes to whichever worker is free."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return
    for definitions in info.name2fixturedefs.values():
        scope = definitions[-1].scope
        if scope == "module":
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))
            return
        if scope == "package":
            item.add_marker(pytest.mark.xdist_group(str(Path(item.nodeid.split("::")[0]).parent)))
            return


# For a test whose subject does not depend on the database: a request refused before the store is
# read or written (authentication, validation, limits of the request itself), or a decision or listing
# answered from the replica, which is the same code over the same data on either. Such a test runs
# once, on SQLite, instead of on both: `pytestmark = ONE_DATABASE` or `@ONE_DATABASE`. Writes, locks,
# constraints, collation, bounds of stored values and the change feed stay on both databases.
ONE_DATABASE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_first_start: Path) -> str:
    """Each test that asks for a database runs once on SQLite and once on PostgreSQL.

    Either starts as a server's first start leaves it: migrated, the shipped policy applied (revision 1).
    A test whose server starts with another policy copies `sqlite_template` instead.
    """
    if request.param == "sqlite":
        path = tmp_path / "authz.db"
        shutil.copy(sqlite_first_start, path)
        return f"sqlite:///{path}"
    return fresh_postgres(request)


def fresh_postgres(request: pytest.FixtureRequest) -> str:
    """The session's PostgreSQL database, its contents put back as they were before any test."""
    url: str = request.getfixturevalue("postgres_server_url")
    engine, contents = request.getfixturevalue("postgres_contents")
    contents.restore(engine)
    return url


class GivenSettings(Settings):
    """Settings from the values given alone: validated as `Settings()` validates them, but with no
    environment or .env read, so a developer's AUTHZ_* or OTEL_* variables cannot change a test (and
    reading them took 2 ms, once or more per test)."""

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def make_settings(database_url: str, **overrides: Any) -> Settings:
    """The settings of a test: `GivenSettings` from the test defaults and `overrides`."""
    values: dict[str, Any] = {
        "env": "test",
        "database_url": database_url,
        "policy_dir": POLICY_DIR,
        "policy_model": POLICY_MODEL,
        "jwt_secret": JWT_SECRET,
        "secret_keys": TEST_SECRET_KEYS,
        "sync_poll_interval": 0.2,
    }
    values.update(overrides)
    return GivenSettings.model_validate(values)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    from authz.bootstrap import open_runtime

    rt = open_runtime(settings, migrate=False)
    yield rt
    rt.database.dispose()


@pytest.fixture
def client(settings: Settings, runtime: Runtime) -> Iterator[TestClient]:
    from api.app import create_app
    from tests.app_client import AppClient

    app = create_app(settings, runtime)
    with AppClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def user_token(sub: str, *, email: str | None = None, email_verified: bool = True, ttl: int = 600,
               secret: str = JWT_SECRET, **claims: Any) -> str:
    payload: dict[str, Any] = {"sub": sub, "exp": int(time.time()) + ttl}
    if email is not None:
        payload["email"] = email
        payload["email_verified"] = email_verified
    payload.update(claims)
    return jwt.encode(payload, secret, algorithm="HS256")


def auth(sub: str, *, context: str | None = None, **kwargs: Any) -> dict[str, str]:
    """Headers of a request by user `sub` (email `<sub>@example.com`), optionally in a context."""
    kwargs.setdefault("email", f"{sub}@example.com")
    headers = {"Authorization": f"Bearer {user_token(sub, **kwargs)}"}
    if context is not None:
        headers["X-Account-Context"] = context
    return headers


def service_key(runtime: Runtime, *scopes: str) -> dict[str, str]:
    from authz.services.service_keys import create_service_key

    key = create_service_key(runtime, cli_principal(), "tests", list(scopes)).value
    return {"Authorization": f"Bearer {key}"}


BILLING = {"line1": "1 Qubit Way", "postal_code": "10115", "city": "Berlin", "country": "DE"}


def create_org(client: TestClient, owner: str, name: str = "Quantum Lab") -> str:
    response = client.post("/v1/organizations", json={"name": name, "billing_address": BILLING}, headers=auth(owner))
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def add_member(runtime: Runtime, org_id: str, user: str, role: str) -> None:
    """Make `user` an accepted member directly through the core (invitations have their own tests)."""
    from authz.services.members import add_member as add_member_rows

    with runtime.unit_of_work(cli_principal()) as uow:
        uow.lock_context(org_id)
        add_member_rows(uow, org_id, user, f"{user}@example.com", role)
        uow.audit("member.add", context=org_id, target=user, detail={"role": role})
        uow.commit()


@pytest.fixture
def authz_server(tmp_path: Path) -> Iterator[Any]:
    """A real `authz serve` process on a free port (SQLite in tmp_path), ready; stopped afterwards.

    See tests/processes.py (`start_authz`) for a module-scoped one or other settings.
    """
    from tests.processes import start_authz

    server = start_authz(tmp_path / "authz-server")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    """A real SMTP server (aiosmtpd) on a free loopback port, started; its `inbox` holds what arrived.

    Tests that start the server themselves (SMTP down, then up) override this fixture.
    """
    from tests.smtp_server import SmtpServer

    server = SmtpServer().start()
    yield server
    server.stop()
