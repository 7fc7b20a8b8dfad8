"""The development sign-in and mailbox exist only with AUTHZ_DEV_LOGIN=true."""

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import ValidationError

from api.app import create_app
from authz.services.runtime import Runtime
from authz.settings import Settings
from tests.app_client import AppClient
from tests.conftest import make_settings
from tests.console.conftest import BASE


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url, public_url=BASE)  # dev_login off, as in production


@pytest.fixture
def plain(settings: Settings, runtime: Runtime) -> Iterator[TestClient]:
    with AppClient(create_app(settings, runtime), base_url=BASE, follow_redirects=False) as client:
        yield client


def test_dev_sign_in_and_mailbox_are_refused_when_off(plain: TestClient, runtime: Runtime,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    assert plain.get("/dev/signin").status_code == 404
    assert plain.get("/dev/mailbox").status_code == 404
    page = plain.get("/signin")
    assert "Development sign-in" not in page.text and "Sign-in is not configured" in page.text
    # A valid CSRF token of this browser's session: only the setting can refuse it.
    assert isinstance(plain.app, FastAPI)
    token = plain.app.state.console.codec.loads(plain.cookies["authz_session"], "authz-console-session", 3600)["c"]
    attempt = plain.post("/dev/signin", data={"csrf": token, "user_id": "admin",
                                              "email": "admin@example.com"})
    assert attempt.status_code == 404
    assert plain.get("/orgs").status_code == 303  # still signed out
    assert "AUTHZ_DEV_LOGIN is on" not in caplog.text


def test_production_refuses_the_dev_login_setting() -> None:
    with pytest.raises(ValidationError, match="AUTHZ_DEV_LOGIN must not be set with AUTHZ_ENV=production"):
        Settings(_env_file=None, env="production", dev_login=True)
