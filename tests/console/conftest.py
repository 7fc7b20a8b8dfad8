"""The console over HTTP (no browser): a TestClient on loopback with the development sign-in on."""

import html
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from authz.services.runtime import Runtime
from authz.settings import Settings
from tests.app_client import AppClient
from tests.conftest import make_settings

BASE = "http://127.0.0.1:8000"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
def database_url(tmp_path: Path, sqlite_first_start: Path) -> str:
    """SQLite only: the console translates HTTP to the services, which are tested on both databases."""
    path = tmp_path / "authz.db"
    shutil.copy(sqlite_first_start, path)
    return f"sqlite:///{path}"


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url, dev_login=True, admin_users="root", public_url=BASE,
                         session_secret="console-test-session-secret")


@pytest.fixture
def browser_like(settings: Settings, runtime: Runtime) -> Iterator[TestClient]:
    """A client that keeps cookies, like one browser."""
    with AppClient(create_app(settings, runtime), base_url=BASE, raise_server_exceptions=False,
                    follow_redirects=False) as client:
        yield client


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, "the page has no CSRF field"
    return match.group(1)


def sign_in(client: TestClient, user: str, email: str | None = None) -> None:
    page = client.get("/dev/signin")
    response = client.post("/dev/signin", data={"csrf": csrf_of(page.text), "user_id": user,
                                                  "email": email or f"{user}@example.com", "next": "/"})
    assert response.status_code == 303, response.text


def post_form(client: TestClient, page_path: str, action: str, data: dict[str, str]) -> Any:
    """Submit a form of `page_path` the way the browser would: with that page's CSRF token."""
    page = client.get(page_path)
    assert page.status_code == 200, page.text
    return client.post(action, data={"csrf": csrf_of(page.text), **data})


def create_org_in_console(client: TestClient, name: str = "Quantum Lab") -> str:
    response = post_form(client, "/orgs", "/orgs", {
        "name": name, "billing_address.line1": "1 Qubit Way", "billing_address.postal_code": "10115",
        "billing_address.city": "Berlin", "billing_address.country": "DE",
    })
    assert response.status_code == 303, response.text
    return str(response.headers["location"]).rsplit("/", 1)[1]


def flash_after(client: TestClient, response: Any) -> str:
    """Follow a 303 and return the page's one-shot message."""
    assert response.status_code == 303, response.text
    page = client.get(response.headers["location"])
    match = re.search(r'<p class="flash" role="status">(.*?)</p>', page.text, re.S)
    return html.unescape(match.group(1)) if match else ""


def field_error(page: str, field: str) -> str | None:
    """The error shown beside the field `field` (None when there is none)."""
    fid = "f-" + field.replace(".", "-")
    match = re.search(rf'<p class="field-error" id="{re.escape(fid)}-error">(.*?)</p>', page, re.S)
    return html.unescape(match.group(1)) if match else None
