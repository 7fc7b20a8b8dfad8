"""Console sign-in: OpenID Connect authorization code flow with PKCE (Authlib), against AUTHZ_OIDC_ISSUER.

The authorization request carries `state`, `nonce` and an S256 `code_challenge`; the
three secrets wait for the callback in a short-lived signed cookie (not the session, so
a sign-in started in one tab cannot be finished with another tab's state). The ID token
is verified with the same provider keys as API bearer tokens (api/oidc_keys.py).
"""

import secrets
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from authlib.common.security import generate_token
from authlib.integrations.base_client.errors import OAuthError

from api.oidc_keys import KeyUnavailable, OidcProvider, provider_tls
from authz.domain import ids
from authz.domain.errors import Invalid
from authz.domain.principal import email_claim
from authz.settings import Settings

STATE_COOKIE = "authz_oidc"
STATE_SALT = "authz-console-oidc"
STATE_MAX_AGE = 600  # seconds to finish signing in at the provider
CALLBACK_PATH = "/auth/callback"


class SignInFailed(Exception):
    """The provider's answer cannot sign anyone in (shown to the user; never a secret in it)."""


@dataclass(frozen=True)
class Identity:
    user_id: str
    email: str | None
    email_verified: bool


@dataclass(frozen=True)
class Started:
    url: str
    pending: dict[str, str]  # state, nonce, verifier, next: for the state cookie


class OidcSignIn:
    """The console's client at the provider (AUTHZ_OIDC_CLIENT_ID, optional secret)."""

    def __init__(self, settings: Settings, provider: OidcProvider) -> None:
        assert settings.oidc_client_id is not None
        self.provider = provider
        self.client_id = settings.oidc_client_id
        self.client_secret = settings.oidc_client_secret.get_secret_value() if settings.oidc_client_secret else None
        self.scopes = settings.oidc_scopes
        self.redirect_uri = settings.public_url + CALLBACK_PATH
        self.timeout = settings.oidc_timeout
        self.leeway = settings.jwt_leeway_seconds

    @classmethod
    def from_settings(cls, settings: Settings, provider: OidcProvider | None) -> "OidcSignIn | None":
        if provider is None or not settings.oidc_client_id:
            return None
        return cls(settings, provider)

    def _client(self) -> Any:
        # Imported here: only a console with OIDC sign-in configured needs Authlib's HTTP client.
        from authlib.integrations.httpx_client import OAuth2Client

        return OAuth2Client(
            client_id=self.client_id,
            client_secret=self.client_secret,
            token_endpoint_auth_method="client_secret_basic" if self.client_secret else "none",
            scope=self.scopes,
            redirect_uri=self.redirect_uri,
            code_challenge_method="S256",
            timeout=self.timeout,
            verify=provider_tls(),
        )

    def start(self, next_path: str) -> Started:
        """The provider's authorization URL, and what the callback must find again."""
        try:
            endpoint = self.provider.metadata()["authorization_endpoint"]
        except KeyUnavailable as exc:
            raise SignInFailed(f"the identity provider cannot be reached: {exc}") from None
        state, nonce, verifier = secrets.token_urlsafe(24), secrets.token_urlsafe(24), generate_token(64)
        with self._client() as client:
            url, _ = client.create_authorization_url(endpoint, state=state, nonce=nonce, code_verifier=verifier)
        return Started(url, {"state": state, "nonce": nonce, "verifier": verifier, "next": next_path})

    def finish(self, pending: dict[str, Any], params: dict[str, str]) -> Identity:
        """Check `state`, exchange the code (with the PKCE verifier), verify the ID token."""
        if "error" in params:
            raise SignInFailed(f"the identity provider refused the sign-in: {params['error'][:100]}")
        if not secrets.compare_digest(str(params.get("state", "")), str(pending.get("state", ""))):
            raise SignInFailed("the sign-in answer does not belong to this browser's sign-in (state mismatch)")
        code = params.get("code")
        if not code:
            raise SignInFailed("the identity provider sent no authorization code")
        try:
            token_endpoint = self.provider.metadata()["token_endpoint"]
            with self._client() as client:
                token = client.fetch_token(token_endpoint, grant_type="authorization_code", code=code,
                                           code_verifier=pending["verifier"])
        except (OAuthError, KeyUnavailable, httpx.HTTPError, OSError, ValueError) as exc:
            raise SignInFailed(f"the authorization code could not be exchanged ({type(exc).__name__})") from None
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise SignInFailed("the identity provider returned no ID token (is the `openid` scope allowed?)")
        return self._verify(id_token, str(pending.get("nonce", "")))

    def _verify(self, id_token: str, nonce: str) -> Identity:
        try:
            kid = jwt.get_unverified_header(id_token).get("kid")
            key = self.provider.key_for(kid if isinstance(kid, str) else None)
            claims = jwt.decode(
                id_token, key.key, algorithms=key.algorithms, audience=self.client_id, issuer=self.provider.issuer,
                leeway=self.leeway, options={"require": ["exp", "iat", "sub", "aud", "iss"]},
            )
        except (jwt.PyJWTError, KeyUnavailable) as exc:  # InvalidKeyError too: a header naming another key family
            raise SignInFailed(f"the ID token is not valid ({type(exc).__name__})") from None
        except Exception as exc:  # noqa: BLE001 - a token that breaks the verifier is still not valid
            raise SignInFailed(f"the ID token is not valid ({type(exc).__name__})") from None
        if not secrets.compare_digest(str(claims.get("nonce", "")), nonce):
            raise SignInFailed("the ID token was not issued for this sign-in (nonce mismatch)")
        try:
            user = ids.user_id(claims.get("sub"), "sub")
        except Invalid:
            raise SignInFailed("the ID token's subject is not a valid user id") from None
        try:
            email = email_claim(claims.get("email"))  # claims are data: no control characters
        except Invalid as exc:
            raise SignInFailed(f"the ID token's {exc.detail.removeprefix('the ')}") from None
        return Identity(user, email, claims.get("email_verified") is True)
