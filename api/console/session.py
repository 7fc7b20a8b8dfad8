"""The console's session: one signed cookie (itsdangerous), HttpOnly, SameSite=Lax, Secure off loopback.

Stateless on purpose: any replica that shares AUTHZ_SESSION_SECRET reads it, and signing
out deletes it. It holds who signed in (from the ID token or the dev sign-in), a CSRF
token, and a one-shot message for the next page. Every visitor gets one, signed in or
not, so the forms before sign-in (the dev sign-in) are CSRF-protected the same way.
The account context is deliberately *not* in it: a reload goes back to personal.
"""

import hashlib
import hmac
import ipaddress
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from authz.domain.principal import Principal
from authz.settings import Settings

log = logging.getLogger("authz.console")

COOKIE = "authz_session"
SALT = "authz-console-session"


@dataclass
class Session:
    csrf: str
    user_id: str | None = None
    email: str | None = None
    email_verified: bool = False
    signed_in_at: float | None = None
    flash: str | None = None
    via: str | None = None  # "oidc" or "dev"
    dirty: bool = field(default=False, compare=False)

    @property
    def signed_in(self) -> bool:
        return self.user_id is not None

    def principal(self, request: Request) -> Principal:
        assert self.user_id is not None
        request_id = request.scope.get("state", {}).get("request_id")
        return Principal(kind="user", id=self.user_id, email=self.email, email_verified=self.email_verified,
                         request_id=request_id)

    def say(self, message: str) -> None:
        """A message for the next page shown (after a redirect)."""
        self.flash = message
        self.dirty = True

    def take_flash(self) -> str | None:
        message, self.flash = self.flash, None
        if message is not None:
            self.dirty = True
        return message

    def csrf_matches(self, value: object) -> bool:
        return isinstance(value, str) and hmac.compare_digest(value.encode(), self.csrf.encode())

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"c": self.csrf}
        if self.user_id is not None:
            data.update(u=self.user_id, e=self.email, v=self.email_verified, t=self.signed_in_at, w=self.via)
        if self.flash:
            data["f"] = self.flash
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Session":
        return cls(csrf=str(data["c"]), user_id=data.get("u"), email=data.get("e"), email_verified=bool(data.get("v")),
                   signed_in_at=data.get("t"), flash=data.get("f"), via=data.get("w"))


def new_session(**values: Any) -> Session:
    return Session(csrf=secrets.token_urlsafe(24), dirty=True, **values)


class SessionCodec:
    """Reads and writes the session cookie of one app."""

    def __init__(self, settings: Settings) -> None:
        self._serializer = URLSafeTimedSerializer(_session_key(settings), salt=SALT)
        self.max_age = settings.session_ttl

    def read(self, request: Request) -> Session:
        raw = request.cookies.get(COOKIE)
        if raw:
            try:
                data = self._serializer.loads(raw, max_age=self.max_age)
                if isinstance(data, dict) and isinstance(data.get("c"), str):
                    return Session.from_json(data)
            except (BadSignature, KeyError, TypeError, ValueError):
                pass  # expired, tampered or from an older key: a fresh anonymous session
        return new_session()

    def write(self, request: Request, response: Response, session: Session) -> None:
        if not session.dirty:
            return
        response.set_cookie(
            COOKIE, self._serializer.dumps(session.to_json()), max_age=self.max_age, path="/",
            httponly=True, samesite="lax", secure=secure_cookies(request),
        )

    def signed_in(self, user_id: str, email: str | None, email_verified: bool, via: str) -> Session:
        """A new session (new CSRF token) for a user who just signed in: no fixation of an older one."""
        return new_session(user_id=user_id, email=email, email_verified=email_verified,
                           signed_in_at=time.time(), via=via)

    def dumps(self, value: Any, salt: str) -> str:
        return URLSafeTimedSerializer(self._serializer.secret_key, salt=salt).dumps(value)

    def loads(self, value: str, salt: str, max_age: int) -> Any:
        return URLSafeTimedSerializer(self._serializer.secret_key, salt=salt).loads(value, max_age=max_age)


def _session_key(settings: Settings) -> str:
    """AUTHZ_SESSION_SECRET; else one derived from AUTHZ_JWT_SECRET (the same in every worker and
    after a restart, and never equal to it); else a random one for this process only."""
    if settings.session_secret is not None:
        return settings.session_secret.get_secret_value()
    if settings.jwt_secret is not None:
        derived = hmac.new(settings.jwt_secret.get_secret_value().encode(), b"authz console session", hashlib.sha256)
        return derived.hexdigest()
    log.warning("AUTHZ_SESSION_SECRET is not set: console sessions use a random key and end at restart; "
                "set it (the same on every replica) to keep them")
    return secrets.token_urlsafe(32)


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def secure_cookies(request: Request) -> bool:
    """Secure everywhere except on a loopback address (`make run` at http://127.0.0.1:8000)."""
    return not is_loopback(request.url.hostname)
