"""Who is calling: a user JWT or a service key, from `Authorization: Bearer ...`."""

from dataclasses import dataclass
from pathlib import Path

import jwt
from fastapi import Request

from api.oidc_keys import KeyUnavailable, OidcProvider
from api.problems import Unauthenticated
from authz.domain import ids
from authz.domain.errors import Invalid
from authz.domain.principal import Principal
from authz.services.service_keys import ServiceKeyRecord
from authz.services.runtime import Runtime
from authz.services.service_keys import PREFIX as SERVICE_KEY_PREFIX
from authz.services.service_keys import verify_service_key
from authz.settings import Settings

ASYMMETRIC = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512"]


@dataclass(frozen=True)
class TokenVerifier:
    """User-token verification, configured once from settings (the key is read at start-up)."""

    key: str | None
    algorithms: list[str]
    audience: str | None
    issuer: str | None
    leeway: int
    oidc: OidcProvider | None = None  # AUTHZ_OIDC_ISSUER: keys from its JWKS, by kid

    @classmethod
    def from_settings(cls, settings: Settings, oidc: OidcProvider | None = None) -> "TokenVerifier":
        if settings.jwt_public_key is not None:
            key = Path(settings.jwt_public_key).read_text(encoding="utf-8")
            algorithms = ASYMMETRIC
        elif settings.jwt_secret is not None:
            key = settings.jwt_secret.get_secret_value()
            algorithms = ["HS256"]
        else:
            key, algorithms = None, []
        return cls(key, algorithms, settings.jwt_audience, settings.jwt_issuer, settings.jwt_leeway_seconds, oidc)

    def _key_for(self, token: str) -> tuple[object, list[str], str | None]:
        """(key, algorithms, issuer): the provider's JWKS for its own tokens, else the fixed key."""
        if self.oidc is not None:
            try:
                header = jwt.get_unverified_header(token)
                # Unverified, only to route the token; decode() then verifies the issuer for real.
                issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
            except jwt.InvalidTokenError:
                raise Unauthenticated("invalid token: malformed or unverifiable") from None
            if issuer == self.oidc.issuer or self.key is None:
                kid = header.get("kid")
                try:
                    found = self.oidc.key_for(kid if isinstance(kid, str) else None)
                except KeyUnavailable as exc:
                    raise Unauthenticated(f"invalid token: {exc}") from None
                return found.key, found.algorithms, self.oidc.issuer
        if self.key is None:
            raise Unauthenticated("user tokens are not accepted: no JWT key is configured")
        return self.key, self.algorithms, self.issuer

    def verify(self, token: str, request_id: str | None) -> Principal:
        key, algorithms, issuer = self._key_for(token)
        required = ["exp", "sub"] + (["aud"] if self.audience else []) + (["iss"] if issuer else [])
        try:
            claims = jwt.decode(
                token,
                key,  # type: ignore[arg-type]
                algorithms=algorithms,
                audience=self.audience,
                issuer=issuer,
                leeway=self.leeway,
                options={"require": required, "verify_aud": self.audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the token has expired") from None
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"invalid token: {_reason(exc)}") from None
        try:
            user = ids.user_id(claims.get("sub"), "sub")
        except Invalid:
            raise Unauthenticated("invalid token: the sub claim is not a valid user id") from None
        email = claims.get("email")
        return Principal(
            kind="user",
            id=user,
            email=email if isinstance(email, str) and len(email) <= 320 else None,
            email_verified=claims.get("email_verified") is True,
            request_id=request_id,
        )


def _reason(exc: jwt.InvalidTokenError) -> str:
    """A short, safe reason (never the token itself)."""
    if isinstance(exc, jwt.InvalidAudienceError):
        return "wrong audience"
    if isinstance(exc, jwt.InvalidIssuerError):
        return "wrong issuer"
    if isinstance(exc, jwt.InvalidSignatureError):
        return "bad signature"
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return "algorithm not allowed"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"missing claim {exc.claim}"
    return "malformed or unverifiable"


class ServiceKeyCache:
    """Verified service keys by credential string, so a sidecar's repeated key costs one dict lookup.

    Only successful verifications are kept, at most MAX entries. The cache belongs to one
    `Replica.service_keys` dict: a create or revoke replaces that dict (from the
    changelog), and the next lookup then starts from an empty cache, so a revoked key
    stops working as soon as this replica has applied the revocation.
    """

    MAX = 1024

    def __init__(self) -> None:
        self._source: object = None
        self._records: dict[str, ServiceKeyRecord] = {}

    def verify(self, runtime: Runtime, credential: str) -> ServiceKeyRecord | None:
        source = runtime.replica.snapshot.service_keys
        if source is not self._source:
            self._source, self._records = source, {}
        record = self._records.get(credential)
        if record is None:
            record = verify_service_key(runtime, credential)
            if record is not None:
                if len(self._records) >= self.MAX:
                    self._records.clear()
                self._records[credential] = record
        return record


async def authenticate(request: Request) -> Principal:
    """The FastAPI dependency of every /v1 route.

    `async` on purpose: it never blocks (keys are in memory, JWTs are verified in-process),
    and a sync dependency would cost a thread-pool round trip on every request.
    """
    return authenticate_request(request)


def authenticate_request(request: Request) -> Principal:
    """The caller of `request`, from its Authorization header (raises Unauthenticated)."""
    header = request.headers.get("authorization")
    if not header:
        raise Unauthenticated("missing Authorization: Bearer credential")
    scheme, _, credential = header.partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise Unauthenticated("the Authorization header must be `Bearer <credential>`")
    request_id = request.scope.get("state", {}).get("request_id")
    runtime: Runtime = request.app.state.runtime
    if credential.startswith(SERVICE_KEY_PREFIX):
        cache: ServiceKeyCache = request.app.state.service_key_cache
        record = cache.verify(runtime, credential)
        if record is None:
            raise Unauthenticated("unknown or revoked service key")
        return Principal(kind="service", id=record.id, scopes=record.scopes, request_id=request_id)
    verifier: TokenVerifier = request.app.state.token_verifier
    return verifier.verify(credential, request_id)
