"""Who is calling: a user JWT or a service key, from `Authorization: Bearer ...`."""

import logging
from dataclasses import dataclass
from typing import Any

import jwt
from fastapi import Request

from api.problems import Unauthenticated
from authz.domain import ids
from authz.domain.errors import Invalid
from authz.domain.principal import Principal
from authz.jwt_keys import VerificationKey, load_public_key, shared_secret
from authz.services.service_keys import ServiceKeyRecord
from authz.services.runtime import Runtime
from authz.services.service_keys import PREFIX as SERVICE_KEY_PREFIX
from authz.services.service_keys import verify_service_key
from authz.settings import Settings

log = logging.getLogger("authz.auth")
EMAIL_MAX = 320


@dataclass(frozen=True)
class TokenVerifier:
    """User-token verification, configured once from settings (the key is read at start-up)."""

    key: Any  # a public key object or the HS256 secret (authz.jwt_keys), None: no user tokens
    algorithms: list[str]
    audience: str | None
    issuer: str | None
    leeway: int

    @classmethod
    def from_settings(cls, settings: Settings) -> "TokenVerifier":
        """Raises authz.jwt_keys.KeyUnusable for a key that cannot verify anything (checked at start-up)."""
        if settings.jwt_public_key is not None:
            verification: VerificationKey | None = load_public_key(settings.jwt_public_key)
        elif settings.jwt_secret is not None:
            verification = shared_secret(settings.jwt_secret.get_secret_value(), production=settings.is_production)
        else:
            verification = None
        key, algorithms = (verification.key, list(verification.algorithms)) if verification else (None, [])
        return cls(key, algorithms, settings.jwt_audience, settings.jwt_issuer, settings.jwt_leeway_seconds)

    def verify(self, token: str, request_id: str | None) -> Principal:
        if self.key is None:
            raise Unauthenticated("user tokens are not accepted: no JWT key is configured")
        return principal_from_claims(self.decode(token), request_id)

    def decode(self, token: str) -> dict[str, Any]:
        """The verified claims; every failure, whatever the token's header says, is Unauthenticated."""
        required = ["exp", "sub"] + (["aud"] if self.audience else []) + (["iss"] if self.issuer else [])
        try:
            claims = jwt.decode(
                token,
                self.key,
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": required, "verify_aud": self.audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the token has expired") from None
        except jwt.PyJWTError as exc:  # InvalidTokenError, and InvalidKeyError for a key of another family
            raise Unauthenticated(f"invalid token: {_reason(exc)}") from None
        except Exception as exc:  # noqa: BLE001 - a token that breaks the verifier is still only unverifiable
            log.warning("token verification failed unexpectedly", extra={"error": type(exc).__name__})
            raise Unauthenticated("invalid token: malformed or unverifiable") from None
        if not isinstance(claims, dict):
            raise Unauthenticated("invalid token: the claims are not a JSON object")
        return claims


def principal_from_claims(claims: dict[str, Any], request_id: str | None) -> Principal:
    """The user a verified token names; claims are data from outside and validated like ids."""
    try:
        user = ids.user_id(claims.get("sub"), "sub")
    except Invalid:
        raise Unauthenticated("invalid token: the sub claim is not a valid user id") from None
    return Principal(
        kind="user",
        id=user,
        email=_email_claim(claims.get("email")),
        email_verified=claims.get("email_verified") is True,
        request_id=request_id,
    )


def _email_claim(value: object) -> str | None:
    """The email claim as given (compared later with authz.domain.invitations.same_email), or None."""
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= EMAIL_MAX:
        raise Unauthenticated(f"invalid token: the email claim must be a string of 1-{EMAIL_MAX} characters")
    if not value.isprintable():
        raise Unauthenticated("invalid token: the email claim contains control characters")
    return value


def _reason(exc: jwt.PyJWTError) -> str:
    """A short, safe reason (never the token itself)."""
    if isinstance(exc, jwt.InvalidAudienceError):
        return "wrong audience"
    if isinstance(exc, jwt.InvalidIssuerError):
        return "wrong issuer"
    if isinstance(exc, jwt.InvalidSignatureError):
        return "bad signature"
    if isinstance(exc, jwt.InvalidAlgorithmError | jwt.InvalidKeyError):
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
        source = runtime.replica.service_keys
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
