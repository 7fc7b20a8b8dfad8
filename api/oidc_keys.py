"""The OpenID provider of AUTHZ_OIDC_ISSUER: its discovery document and its signing keys by `kid`.

One object per process serves both the API (bearer tokens, api/auth.py) and the console's
sign-in (ID tokens, api/console/oidc.py), so a key rotation at the provider (Keycloak)
needs no restart anywhere: a token signed with a `kid` we have not seen makes us re-read
the JWKS, and the JWKS is re-read anyway once it is older than AUTHZ_OIDC_JWKS_REFRESH.

Nothing is fetched at import or construction: the provider may start after authz. A
fetch that fails keeps the keys we have (a provider outage does not log everyone out),
and unknown-`kid` refreshes are rate-limited, so tokens with made-up `kid`s cannot turn
authz into a traffic generator against the provider.
"""

import functools
import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from authz.settings import Settings

log = logging.getLogger("authz.oidc")

DISCOVERY_PATH = "/.well-known/openid-configuration"
UNKNOWN_KID_REFRESH_GAP = 10.0  # seconds: at most one refresh per gap for unknown kids
# Never a symmetric algorithm for provider keys: a public key must not double as an HMAC secret.
ALGORITHMS_BY_KTY = {
    "RSA": ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"],
    "EC": ["ES256", "ES384", "ES512"],
    "OKP": ["EdDSA"],
}


class KeyUnavailable(Exception):
    """No key of the provider can verify this token (unknown kid, provider unreachable, bad JWKS)."""


@dataclass(frozen=True)
class SigningKey:
    kid: str | None
    key: Any  # a `cryptography` public key
    algorithms: list[str]


@dataclass(frozen=True)
class _KeySet:
    keys: dict[str | None, SigningKey]
    fetched_at: float


@functools.cache
def provider_tls() -> ssl.SSLContext:
    """The TLS context of every client authz opens to the OpenID provider, built once (httpx's default,
    SSL_CERT_FILE and SSL_CERT_DIR read then): building one loads the CA bundle, and an httpx client
    with its own took 30 ms of CPU to open where the console's sign-in opens one per step."""
    return httpx.create_ssl_context()


class OidcProvider:
    """Discovery (cached) and the JWKS (by kid, refreshed on an unknown kid and on a schedule)."""

    def __init__(
        self,
        issuer: str,
        *,
        timeout: float = 5.0,
        refresh_interval: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.issuer = issuer
        self.refresh_interval = refresh_interval
        self._clock = clock
        self._http = httpx.Client(timeout=timeout, transport=transport, follow_redirects=False, verify=provider_tls())
        self._lock = threading.Lock()
        self._metadata: dict[str, Any] | None = None
        self._keys: _KeySet | None = None
        self._last_unknown_kid_refresh = float("-inf")

    @classmethod
    def from_settings(cls, settings: Settings) -> "OidcProvider | None":
        if not settings.oidc_issuer:
            return None
        return cls(settings.oidc_issuer, timeout=settings.oidc_timeout, refresh_interval=settings.oidc_jwks_refresh)

    # ---- discovery ---------------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        """The discovery document (fetched once; again only after a failure)."""
        current = self._metadata
        if current is not None:
            return current
        with self._lock:
            if self._metadata is None:
                self._metadata = self._discover()
            return self._metadata

    def _discover(self) -> dict[str, Any]:
        url = self.issuer.rstrip("/") + DISCOVERY_PATH
        document = self._get_json(url, "discovery document")
        # OIDC Discovery 1.0 §4.3: the document must name exactly the issuer we were configured with.
        if document.get("issuer") != self.issuer:
            raise KeyUnavailable(
                f"the provider's discovery document names issuer {document.get('issuer')!r}, "
                f"not AUTHZ_OIDC_ISSUER {self.issuer!r}"
            )
        for name in ("jwks_uri", "authorization_endpoint", "token_endpoint"):
            if not isinstance(document.get(name), str):
                raise KeyUnavailable(f"the provider's discovery document has no {name}")
        return document

    def endpoint(self, name: str) -> str | None:
        value = self.metadata().get(name)
        return value if isinstance(value, str) else None

    # ---- keys --------------------------------------------------------------------------------

    def key_for(self, kid: str | None) -> SigningKey:
        """The provider's key with this `kid` (refreshing the JWKS if it is unknown or old)."""
        keys = self._keys
        now = self._clock()
        if keys is None or now - keys.fetched_at >= self.refresh_interval:
            keys = self._refresh(keep_on_error=keys)
        found = self._pick(keys, kid)
        if found is not None:
            return found
        with self._lock:
            allowed = now - self._last_unknown_kid_refresh >= UNKNOWN_KID_REFRESH_GAP
            if allowed:
                self._last_unknown_kid_refresh = now
        if allowed:
            keys = self._refresh(keep_on_error=keys)
            found = self._pick(keys, kid)
            if found is not None:
                return found
        raise KeyUnavailable("the token's signing key (kid) is not one of the provider's keys")

    @staticmethod
    def _pick(keys: _KeySet, kid: str | None) -> SigningKey | None:
        if kid is not None:
            return keys.keys.get(kid)
        # No kid in the token: acceptable only when the provider has exactly one key.
        return next(iter(keys.keys.values())) if len(keys.keys) == 1 else None

    def _refresh(self, keep_on_error: _KeySet | None) -> _KeySet:
        with self._lock:
            current = self._keys
            if current is not None and current is not keep_on_error:
                return current  # another thread refreshed meanwhile
            try:
                jwks_uri = self.metadata_unlocked()["jwks_uri"]
                document = self._get_json(jwks_uri, "JWKS")
                fresh = _KeySet(_parse_jwks(document), self._clock())
            except KeyUnavailable as exc:
                if keep_on_error is None:
                    raise
                log.warning("keeping the provider's previous keys: %s", exc)
                # Try again at the next interval, not on every request.
                fresh = _KeySet(keep_on_error.keys, self._clock())
            self._keys = fresh
            return fresh

    def metadata_unlocked(self) -> dict[str, Any]:
        """`metadata()` for callers that already hold the lock."""
        if self._metadata is None:
            self._metadata = self._discover()
        return self._metadata

    def _get_json(self, url: str, what: str) -> dict[str, Any]:
        try:
            response = self._http.get(url)
            response.raise_for_status()
            document = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise KeyUnavailable(f"the OpenID provider's {what} could not be read ({type(exc).__name__})") from None
        if not isinstance(document, dict):
            raise KeyUnavailable(f"the OpenID provider's {what} is not a JSON object")
        return document

    def close(self) -> None:
        self._http.close()


def _parse_jwks(document: dict[str, Any]) -> dict[str | None, SigningKey]:
    """The signing keys of a JWKS; keys for encryption, of unknown types or malformed are skipped."""
    keys: dict[str | None, SigningKey] = {}
    for data in document.get("keys") or []:
        if not isinstance(data, dict) or data.get("use", "sig") != "sig":
            continue
        kty = data.get("kty")
        if kty not in ALGORITHMS_BY_KTY:
            continue
        alg = data.get("alg")
        if alg is not None and alg not in ALGORITHMS_BY_KTY[kty]:
            continue
        try:
            parsed = jwt.PyJWK(data, algorithm=alg)
        except jwt.PyJWKError:
            continue
        kid = data.get("kid") if isinstance(data.get("kid"), str) else None
        keys[kid] = SigningKey(kid, parsed.key, [alg] if alg else ALGORITHMS_BY_KTY[kty])
    if not keys:
        raise KeyUnavailable("the provider's JWKS has no usable signing key")
    return keys
