"""Who is calling: a user JWT or a service key, from `Authorization: Bearer ...`."""

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread
import jwt
from fastapi import Request

from api.oidc_keys import KeyUnavailable, OidcProvider
from api.problems import Unauthenticated
from authz.domain import ids
from authz.domain.errors import Invalid
from authz.domain.principal import Principal, email_claim
from authz.engine.replica import ServiceKeyRecord
from authz.jwt_keys import VerificationKey, load_public_key, shared_secret
from authz.services.runtime import Runtime
from authz.services.service_keys import PREFIX as SERVICE_KEY_PREFIX
from authz.services.service_keys import is_unknown_here, lookup_service_key, verify_service_key
from authz.settings import Settings

log = logging.getLogger("authz.auth")


class VerifiedTokens:
    """User tokens verified with the fixed key, so a caller's repeated token costs a dict lookup.

    Verifying the same string with the same key gives the same claims every time (HMAC and
    public-key signatures are deterministic checks of the exact bytes), so of a token seen
    before only what changes with time is checked again: its expiry (`exp`, with the leeway,
    as PyJWT checks it; `nbf` and `iat` only ever become more valid). Kept only for the key
    from settings (AUTHZ_JWT_SECRET / AUTHZ_JWT_PUBLIC_KEY), which never changes in a process;
    tokens checked against an OIDC provider's rotating JWKS are verified every time. Only
    successes are kept, at most MAX (then it starts over). Saves ≈50 µs of PyJWT per check.
    """

    MAX = 4096

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._known: dict[str, tuple[Principal, int]] = {}  # token → (its user as first verified, exp)

    def get(self, token: str, leeway: int) -> Principal | None:
        """The token's user if it verified before; raises Unauthenticated once it has expired."""
        known = self._known.get(token)
        if known is None:
            return None
        principal, expires = known
        if expires <= self._clock() - leeway:
            self._known.pop(token, None)  # (two threads may find it expired at once)
            raise Unauthenticated("the token has expired")
        return principal

    def remember(self, token: str, principal: Principal, expires: int) -> None:
        if len(self._known) >= self.MAX:
            self._known.clear()
        self._known[token] = (principal, expires)


@dataclass(frozen=True)
class TokenVerifier:
    """User-token verification, configured once from settings (the key is read at start-up)."""

    key: Any  # a public key object or the HS256 secret (authz.jwt_keys), None: no fixed key
    algorithms: list[str]
    audience: str | None
    issuer: str | None
    leeway: int
    oidc: OidcProvider | None = None  # AUTHZ_OIDC_ISSUER: keys from its JWKS, by kid
    verified: VerifiedTokens = field(default_factory=VerifiedTokens, compare=False, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings, oidc: OidcProvider | None = None) -> "TokenVerifier":
        """Raises authz.jwt_keys.KeyUnusable for a key that cannot verify anything (checked at start-up)."""
        if settings.jwt_public_key is not None:
            verification: VerificationKey | None = load_public_key(settings.jwt_public_key)
        elif settings.jwt_secret is not None:
            verification = shared_secret(settings.jwt_secret.get_secret_value(), production=settings.is_production)
        else:
            verification = None
        key, algorithms = (verification.key, list(verification.algorithms)) if verification else (None, [])
        return cls(key, algorithms, settings.jwt_audience, settings.jwt_issuer, settings.jwt_leeway_seconds, oidc)

    def _key_for(self, token: str) -> tuple[object, list[str], str | None]:
        """(key, algorithms, issuer): the provider's JWKS for its own tokens, else the fixed key."""
        if self.oidc is not None:
            try:
                header = jwt.get_unverified_header(token)
                # Unverified, only to route the token; decode() then verifies the issuer for real.
                issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
            except Exception:  # noqa: BLE001 - PyJWTError, or a payload that is not an object: unverifiable
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
        cacheable = self.oidc is None  # the fixed key only: see VerifiedTokens
        if cacheable and (known := self.verified.get(token, self.leeway)) is not None:
            return Principal(kind="user", id=known.id, email=known.email, email_verified=known.email_verified,
                             request_id=request_id)
        claims = self.decode(token)
        principal = principal_from_claims(claims, request_id)
        if cacheable:
            self.verified.remember(token, principal, int(claims["exp"]))  # an int to PyJWT, or it failed
        return principal

    def decode(self, token: str) -> dict[str, Any]:
        """The verified claims; every failure, whatever the token's header says, is Unauthenticated."""
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
    try:
        email = email_claim(claims.get("email"))
    except Invalid as exc:
        raise Unauthenticated(f"invalid token: {exc.detail}") from None
    return Principal(
        kind="user",
        id=user,
        email=email,
        email_verified=claims.get("email_verified") is True,
        request_id=request_id,
    )


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


class UnknownServiceKey(Unauthenticated):
    """A well-formed service key this replica does not know yet: `authenticate` may look it up."""

    def __init__(self, credential: str) -> None:
        super().__init__("unknown or revoked service key")
        self.credential = credential


class ServiceKeyCache:
    """Verified service keys by credential string, so a sidecar's repeated key costs one dict lookup.

    Only successful verifications are kept, at most MAX entries. The cache belongs to one
    `Replica.service_keys` dict: a create or revoke replaces that dict (from the
    changelog), and the next lookup then starts from an empty cache, so a revoked key
    stops working as soon as this replica has applied the revocation.

    A well-formed key the replica does not know is looked up in the database by its id
    (API.md: a key works on every replica the moment `service-key create` returns, before
    the changelog reaches this replica). So that unknown keys cannot turn requests into
    database reads, a credential that missed is remembered for MISS_TTL seconds, one lookup
    per credential runs at a time, and at most LOOKUPS_PER_SECOND run per process (beyond
    that a key new to this replica is refused until the changelog brings it, within a poll
    interval).
    """

    MAX = 1024
    MISS_TTL = 1.0
    LOOKUPS_PER_SECOND = 20.0

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._source: object = None
        self._records: dict[str, ServiceKeyRecord] = {}
        self._clock = clock
        self._misses: dict[str, float] = {}  # credential → monotonic time until which it is not looked up
        self._pending: dict[str, asyncio.Future[ServiceKeyRecord | None]] = {}
        self._tokens = self.LOOKUPS_PER_SECOND
        self._refilled = clock()
        self.lookups = 0  # database lookups done (for tests and debugging)

    def verify(self, runtime: Runtime, credential: str) -> ServiceKeyRecord | None:
        self._follow(runtime)
        record = self._records.get(credential)
        if record is None:
            record = verify_service_key(runtime, credential)
            if record is not None:
                self._remember(credential, record)
        return record

    async def lookup(self, runtime: Runtime, credential: str) -> ServiceKeyRecord | None:
        """The key's record from the database, within the limits above; None if unknown, revoked or limited."""
        if not is_unknown_here(runtime, credential):
            return self.verify(runtime, credential)
        pending = self._pending.get(credential)
        if pending is not None:
            return await asyncio.shield(pending)
        now = self._clock()
        if self._misses.get(credential, 0.0) > now or not self._take_token(now):
            return None
        future: asyncio.Future[ServiceKeyRecord | None] = asyncio.get_running_loop().create_future()
        self._pending[credential] = future
        try:
            self.lookups += 1
            record = await anyio.to_thread.run_sync(lookup_service_key, runtime, credential)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: the waiters, if any, get it too
            raise
        finally:
            del self._pending[credential]
        future.set_result(record)
        if record is None:
            if len(self._misses) >= self.MAX:
                self._misses = {key: until for key, until in self._misses.items() if until > now}
                if len(self._misses) >= self.MAX:
                    self._misses.clear()
            self._misses[credential] = now + self.MISS_TTL
        else:
            self._follow(runtime)
            self._remember(credential, record)
        return record

    def _follow(self, runtime: Runtime) -> None:
        source = runtime.replica.snapshot.service_keys
        if source is not self._source:
            self._source, self._records = source, {}

    def _remember(self, credential: str, record: ServiceKeyRecord) -> None:
        if len(self._records) >= self.MAX:
            self._records.clear()
        self._records[credential] = record

    def _take_token(self, now: float) -> bool:
        self._tokens = min(self.LOOKUPS_PER_SECOND, self._tokens + (now - self._refilled) * self.LOOKUPS_PER_SECOND)
        self._refilled = now
        if self._tokens < 1:
            log.warning("service-key lookups are rate-limited: a key new to this replica waits for the changelog")
            return False
        self._tokens -= 1
        return True


@dataclass(frozen=True)
class Authenticator:
    """Who is calling, from the value of an Authorization header; one per app, made by its lifespan.

    It holds what that takes (the runtime, whose replica knows the service keys; the key
    cache; the token verifier), so the check path reads one attribute of `app.state` instead
    of three: each costs ≈0.4 µs, Starlette's State answering through `__getattr__`.
    """

    runtime: Runtime
    service_keys: ServiceKeyCache
    tokens: TokenVerifier

    def principal(self, authorization: str | None, request_id: str | None) -> Principal:
        """From memory; raises Unauthenticated (UnknownServiceKey: a key this replica does not know yet)."""
        if not authorization:
            raise Unauthenticated("missing Authorization: Bearer credential")
        scheme, _, credential = authorization.partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise Unauthenticated("the Authorization header must be `Bearer <credential>`")
        if credential.startswith(SERVICE_KEY_PREFIX):
            runtime = self.runtime
            record = self.service_keys.verify(runtime, credential)
            if record is None:
                if is_unknown_here(runtime, credential):
                    raise UnknownServiceKey(credential)
                raise Unauthenticated("unknown or revoked service key")
            return Principal(kind="service", id=record.id, scopes=record.scopes, request_id=request_id)
        return self.tokens.verify(credential, request_id)


async def authenticate(request: Request) -> Principal:
    """The FastAPI dependency of every /v1 route (and what the check routes call).

    `async` on purpose: it never blocks (keys are in memory, JWTs are verified in-process),
    and a sync dependency would cost a thread-pool round trip on every request. Only a
    service key this replica does not know yet is looked up in the database, in a thread.
    """
    try:
        return authenticate_request(request)
    except UnknownServiceKey as miss:
        authenticator: Authenticator = request.app.state.authenticator
        record = await authenticator.service_keys.lookup(authenticator.runtime, miss.credential)
        if record is None:
            raise
        request_id = request.scope.get("state", {}).get("request_id")
        return Principal(kind="service", id=record.id, scopes=record.scopes, request_id=request_id)


def authenticate_request(request: Request) -> Principal:
    """The caller of `request`, from its Authorization header, from memory (raises Unauthenticated)."""
    authenticator: Authenticator = request.app.state.authenticator
    return authenticator.principal(request.headers.get("authorization"),
                                   request.scope.get("state", {}).get("request_id"))
