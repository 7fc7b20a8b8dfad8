"""The console's session cookie: signed, shared by replicas with one secret, expiring, never trusted unsigned."""

import time

import pytest
from starlette.requests import Request

from api.console.session import COOKIE, SessionCodec, is_loopback
from authz.settings import Settings


def request_with(cookie: str | None, host: str = "127.0.0.1") -> Request:
    headers = [(b"host", host.encode())]
    if cookie is not None:
        headers.append((b"cookie", f"{COOKIE}={cookie}".encode()))
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers, "query_string": b"",
                    "scheme": "http", "server": (host, 80)})


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def test_a_session_made_by_one_replica_is_read_by_another_with_the_same_secret() -> None:
    one, two = SessionCodec(settings(session_secret="s" * 32)), SessionCodec(settings(session_secret="s" * 32))
    cookie = one.dumps(one.signed_in("alice", "a@example.com", True, "oidc").to_json(), "authz-console-session")
    read = two.read(request_with(cookie))
    assert (read.user_id, read.email, read.email_verified) == ("alice", "a@example.com", True)
    other = SessionCodec(settings(session_secret="t" * 32)).read(request_with(cookie))
    assert other.user_id is None  # another secret: an anonymous session, not an error


def test_without_a_session_secret_workers_derive_the_same_key_from_the_jwt_secret() -> None:
    a, b = SessionCodec(settings(jwt_secret="j" * 40)), SessionCodec(settings(jwt_secret="j" * 40))
    cookie = a.dumps(a.signed_in("bob", None, False, "dev").to_json(), "authz-console-session")
    assert b.read(request_with(cookie)).user_id == "bob"
    forged = cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB")
    assert b.read(request_with(forged)).user_id is None
    # Not the JWT secret itself: a cookie signed with it is no session.
    raw = SessionCodec(settings(session_secret="j" * 40))
    assert b.read(request_with(raw.dumps({"c": "x", "u": "mallory"}, "authz-console-session"))).user_id is None


def test_a_session_ends_after_its_lifetime(monkeypatch: pytest.MonkeyPatch) -> None:
    codec = SessionCodec(settings(session_secret="s" * 32, session_ttl=60))
    cookie = codec.dumps(codec.signed_in("alice", None, False, "dev").to_json(), "authz-console-session")
    assert codec.read(request_with(cookie)).user_id == "alice"
    later = time.time() + 61
    monkeypatch.setattr(time, "time", lambda: later)
    assert codec.read(request_with(cookie)).user_id is None


def test_loopback_hosts() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "localhost", "::1", "[::1]", "127.1.2.3"))
    assert not any(is_loopback(h) for h in ("console.example", "10.0.0.1", "", None, "localhost.evil.example"))
