"""(Here, not in tests/console, so it runs on both databases.) Claims from the identity provider
are data (issue 12, class 3), in the console's sign-in and as API bearer tokens: an email with
a NUL byte or a line break, or a look-alike address, never gets further than a refusal, on
either database."""

from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from oidc_provider_mock import User, run_server_in_thread

from api.app import create_app
from authz.services.runtime import Runtime
from authz.settings import Settings
from tests.app_client import AppClient
from tests.conftest import make_settings
from tests.console.conftest import BASE
from tests.console.test_oidc_signin import CLIENT_ID, authorize_at_provider, start

HOSTILE = {"nul": "nul\x00@example.com", "newline": "newline@example.com\r\nBcc: all@example.com",
           "escape": "esc\x1b[31m@example.com"}


@pytest.fixture(scope="module")
def provider() -> Iterator[str]:
    users = [User(sub=sub, claims={"email": email, "email_verified": True}) for sub, email in HOSTILE.items()]
    with run_server_in_thread(user_claims=users, require_nonce=True) as server:
        yield f"http://localhost:{server.server_port}"


@pytest.fixture
def settings(database_url: str, provider: str) -> Settings:
    return make_settings(database_url, public_url=BASE, oidc_issuer=provider, oidc_client_id=CLIENT_ID,
                         oidc_client_secret="console-client-secret", session_secret="hostile-claims-session-secret",
                         dev_login=True)


@pytest.fixture
def console(settings: Settings, runtime: Runtime) -> Iterator[TestClient]:
    with AppClient(create_app(settings, runtime), base_url=BASE, follow_redirects=False,
                    raise_server_exceptions=False) as client:
        yield client


@pytest.mark.parametrize("sub", sorted(HOSTILE))
def test_a_hostile_email_claim_refuses_the_sign_in(console: TestClient, sub: str) -> None:
    url, _ = start(console)
    answer = console.get(authorize_at_provider(url, sub).removeprefix(BASE))
    assert answer.status_code == 400, answer.text
    assert "email claim contains control characters" in answer.text
    assert console.get("/orgs").status_code in (303, 401)  # not signed in


@pytest.mark.parametrize("sub", sorted(HOSTILE))
def test_a_hostile_email_claim_in_a_bearer_token_is_401(console: TestClient, provider: str, sub: str) -> None:
    with httpx.Client(timeout=10) as http:
        back = http.post(provider + "/oauth2/authorize", params={
            "client_id": "platform-app", "response_type": "code", "scope": "openid email",
            "redirect_uri": "http://127.0.0.1:9/cb", "nonce": "n", "state": "s"}, data={"sub": sub})
        code = parse_qs(urlsplit(back.headers["location"]).query)["code"][0]
        token = http.post(provider + "/oauth2/token", data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": "http://127.0.0.1:9/cb",
            "client_id": "platform-app", "client_secret": "x", "code_verifier": "v" * 64}).json()
    for method, path in (("GET", "/v1/me"), ("POST", "/v1/organizations"), ("GET", "/v1/me/invitations")):
        response = console.request(method, path, headers={"Authorization": f"Bearer {token['id_token']}"},
                                   json={"name": "Lab"} if method == "POST" else None)
        assert response.status_code == 401, (path, response.text)
        assert "email claim" in response.json()["detail"]


def test_an_audit_cursor_beyond_the_store_is_refused_in_the_console(console: TestClient) -> None:
    """Class 6 in the console's audit page (it pages with the same core function)."""
    from tests.console.conftest import create_org_in_console, sign_in

    sign_in(console, "alice", "alice@example.com")
    org_id = create_org_in_console(console)
    for before in (2**63, 10**30):
        page = console.get(f"/orgs/{org_id}/audit", params={"before": before})
        assert 400 <= page.status_code < 500, page.text
    assert console.get(f"/orgs/{org_id}/audit", params={"before": 2**63 - 1}).status_code == 200
