"""Console sign-in with OpenID Connect (code flow + PKCE) against a provider the tests run.

The provider is `oidc-provider-mock` (Authlib on Flask) on a loopback port; the console is
the real app. Its ID tokens also serve as API bearer tokens (same AUTHZ_OIDC_ISSUER).
"""

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from oidc_provider_mock import User, run_server_in_thread

from api.app import create_app
from authz.services.runtime import Runtime
from authz.settings import Settings
from tests.app_client import AppClient
from tests.conftest import make_settings
from tests.console.conftest import BASE, csrf_of

CLIENT_ID = "authz-console"
USERS = [User(sub="alice", claims={"email": "alice@example.com", "email_verified": True}),
         User(sub="mallory", claims={"email": "mallory@example.com", "email_verified": False})]


@pytest.fixture(scope="module")
def provider() -> Iterator[str]:
    with run_server_in_thread(user_claims=USERS, require_nonce=True) as server:
        yield f"http://localhost:{server.server_port}"


@pytest.fixture
def settings(database_url: str, provider: str) -> Settings:
    # A confidential client (as a Keycloak client usually is); PKCE is sent all the same.
    return make_settings(database_url, public_url=BASE, oidc_issuer=provider, oidc_client_id=CLIENT_ID,
                         oidc_client_secret="console-client-secret", session_secret="oidc-tests-session-secret")


@pytest.fixture
def console(settings: Settings, runtime: Runtime) -> Iterator[TestClient]:
    with AppClient(create_app(settings, runtime), base_url=BASE, follow_redirects=False) as client:
        yield client


def authorize_at_provider(authorize_url: str, sub: str) -> str:
    """What the person does at the provider: pick the account. Returns the redirect back to us."""
    with httpx.Client(timeout=10) as http:
        answer = http.post(authorize_url, data={"sub": sub})
    assert answer.status_code == 302, answer.text
    return answer.headers["location"]


def start(console: TestClient, next_path: str = "/") -> tuple[str, dict[str, list[str]]]:
    response = console.get("/signin/oidc", params={"next": next_path})
    assert response.status_code == 303, response.text
    url = response.headers["location"]
    return url, parse_qs(urlsplit(url).query)


def test_sign_in_with_the_provider_uses_pkce_and_returns_to_the_page(console: TestClient, provider: str,
                                                                     runtime: Runtime) -> None:
    page = console.get("/signin")
    assert 'href="/signin/oidc?next=/"' in page.text
    url, query = start(console, "/orgs")
    assert url.startswith(provider + "/oauth2/authorize?")
    assert query["client_id"] == [CLIENT_ID] and query["response_type"] == ["code"]
    assert query["redirect_uri"] == [BASE + "/auth/callback"]
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
    assert query["state"][0] and query["nonce"][0] and "openid" in query["scope"][0].split()
    state_cookie = console.cookies.get("authz_oidc")
    assert state_cookie and query["code_challenge"][0] not in state_cookie  # signed, with the verifier

    back = authorize_at_provider(url, "alice")
    assert back.startswith(BASE + "/auth/callback?")
    done = console.get(back.removeprefix(BASE))
    assert done.status_code == 303 and done.headers["location"] == "/orgs"
    assert "authz_oidc=" in done.headers.get("set-cookie", "")  # the one-time state is cleared
    orgs = console.get("/orgs")
    assert orgs.status_code == 200 and '<span class="user" title="alice@example.com">alice</span>' in orgs.text
    created = console.post("/orgs", data={"csrf": csrf_of(orgs.text), "name": "Lab", "billing_address.line1": "1",
                                          "billing_address.postal_code": "1", "billing_address.city": "B",
                                          "billing_address.country": "DE"})
    assert created.status_code == 303
    assert list(runtime.replica.snapshot.index.contexts_of("alice").values()) == ["owner"]


def test_an_answer_for_another_sign_in_is_refused(console: TestClient) -> None:
    url, _ = start(console)
    back = authorize_at_provider(url, "alice")
    forged = re.sub(r"state=[^&]+", "state=forged", back)
    refused = console.get(forged.removeprefix(BASE))
    assert refused.status_code == 400 and "state mismatch" in refused.text
    assert console.get("/orgs").status_code == 303  # not signed in

    other_browser = AppClient(console.app, base_url=BASE, follow_redirects=False)
    url, _ = start(console)
    stolen = authorize_at_provider(url, "alice")
    answer = other_browser.get(stolen.removeprefix(BASE))  # no state cookie in that browser
    assert answer.status_code == 400 and "started in another browser" in answer.text
    assert other_browser.get("/orgs").status_code == 303


def test_a_refusal_at_the_provider_is_shown(console: TestClient) -> None:
    start(console)
    refused = console.get("/auth/callback", params={"error": "access_denied", "state": "x"})
    assert refused.status_code == 400 and "refused the sign-in: access_denied" in refused.text


def test_the_provider_id_token_is_an_api_bearer_token(console: TestClient, provider: str) -> None:
    verifier = "v" * 64
    with httpx.Client(timeout=10) as http:
        back = http.post(provider + "/oauth2/authorize", params={
            "client_id": "platform-app", "response_type": "code", "scope": "openid email",
            "redirect_uri": "http://127.0.0.1:9/cb", "nonce": "n", "state": "s"}, data={"sub": "alice"})
        code = parse_qs(urlsplit(back.headers["location"]).query)["code"][0]
        token = http.post(provider + "/oauth2/token", data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": "http://127.0.0.1:9/cb",
            "client_id": "platform-app", "client_secret": "x", "code_verifier": verifier}).json()
    me = console.get("/v1/me", headers={"Authorization": f"Bearer {token['id_token']}"})
    assert me.status_code == 200, me.text
    assert me.json()["user_id"] == "alice"
    tampered = token["id_token"][:-4] + ("AAAA" if not token["id_token"].endswith("AAAA") else "BBBB")
    assert console.get("/v1/me", headers={"Authorization": f"Bearer {tampered}"}).status_code == 401


def test_an_unverified_email_from_the_provider_cannot_accept_invitations(console: TestClient) -> None:
    url, _ = start(console)
    console.get(authorize_at_provider(url, "mallory").removeprefix(BASE))
    page = console.get("/invitations/accept", params={"token": "inv_0123456789abcdef01234567_" + "a" * 43})
    assert page.status_code == 404  # an unknown token; the session itself works
    assert isinstance(console.app, FastAPI)
    session: Any = console.app.state.console.codec.loads(console.cookies["authz_session"],
                                                        "authz-console-session", 3600)
    assert session["u"] == "mallory" and session["v"] is False


def test_an_unreachable_token_endpoint_is_a_message_not_a_crash(console: TestClient) -> None:
    url, _ = start(console)
    back = authorize_at_provider(url, "alice")
    assert isinstance(console.app, FastAPI)
    provider = console.app.state.console.oidc.provider
    provider.metadata()["token_endpoint"] = "http://127.0.0.1:9/token"  # nothing listens there
    answer = console.get(back.removeprefix(BASE))
    assert answer.status_code == 400
    assert "the authorization code could not be exchanged (ConnectError)" in answer.text
    assert console.get("/orgs").status_code == 303
