"""Every token that cannot be verified is 401, whatever its header names, for each key type (issue 12, class 2),
and the claims of a verified token are data, validated like ids (class 3)."""

import base64
import functools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from api.auth import TokenVerifier, VerifiedTokens
from api.problems import Unauthenticated
from authz.services.runtime import Runtime
from authz.settings import Settings
from authz.store.tables import OutboxMessage
from tests.app_client import AppClient
from tests.conftest import BILLING, JWT_SECRET, ONE_DATABASE, auth, create_org, make_settings, user_token
from tests.keys import rsa_key

ORG = "org_" + "a" * 24
# One request per kind of endpoint: a read, the decision API, forward-auth and a write.
ENDPOINTS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/v1/me", None),
    ("POST", "/v1/check", {"action": "read", "resource": {"type": "algorithm", "id": "a1"}}),
    ("POST", "/v1/check/batch", {"checks": [{"action": "read", "resource": {"type": "algorithm", "id": "a1"}}]}),
    ("GET", "/v1/authorize", None),
    ("POST", "/v1/organizations", {"name": "Lab", "billing_address": BILLING}),
    ("GET", "/v1/me/invitations", None),
]


def b64(data: bytes | dict[str, Any] | list[Any]) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def claims(**extra: Any) -> dict[str, Any]:
    return {"sub": "alice", "exp": int(time.time()) + 600, **extra}


def pem(private_key: Any) -> bytes:
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


ALGORITHMS = {"rsa": "RS256", "ec": "ES256", "ed25519": "EdDSA"}


@functools.cache
def issuer_key(kind: str) -> Any:
    """The issuer's private key of this type, made at its first use (not by every worker collecting)."""
    if kind == "rsa":
        return rsa_key("issuer")
    return ec.generate_private_key(ec.SECP256R1()) if kind == "ec" else ed25519.Ed25519PrivateKey.generate()


@pytest.fixture(params=sorted(ALGORITHMS))
def keyed(request: pytest.FixtureRequest, database_url: str, runtime: Runtime,
          tmp_path: Path) -> Iterator[tuple[TestClient, Any, str]]:
    """A client of an app verifying user tokens with a public key of one type."""
    private_key, algorithm = issuer_key(request.param), ALGORITHMS[request.param]
    path = tmp_path / "jwt.pem"
    path.write_bytes(pem(private_key))
    settings = make_settings(database_url, jwt_secret=None, jwt_public_key=path)
    with AppClient(create_app(settings, runtime), raise_server_exceptions=False) as client:
        yield client, private_key, algorithm


def send(client: TestClient, method: str, path: str, body: dict[str, Any] | None, token: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}", "X-Original-Method": "GET", "X-Original-URI": "/algorithms/a1"}
    return client.request(method, path, json=body, headers=headers)


def assert_401(response: Any) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Bearer")


NAN_CLAIMS = b'{"sub": "alice", "exp": NaN}'


def forged_tokens(private_key: Any, algorithm: str) -> dict[str, str]:
    """Tokens that must never verify against the public key of `private_key`."""
    public_pem = pem(private_key)
    other = {"RS256": "ES256", "ES256": "RS256", "EdDSA": "ES256"}[algorithm]
    other_key = ec.generate_private_key(ec.SECP256R1()) if other == "ES256" else issuer_key("rsa")
    unknown_crit = jwt.encode(claims(), private_key, algorithm=algorithm,
                              headers={"crit": ["x-unknown"], "x-unknown": 1})
    return {
        "other family, garbage signature": f"{b64({'alg': other, 'typ': 'JWT'})}.{b64(claims())}.{b64(b'garbage')}",
        "other family, really signed": jwt.encode(claims(), other_key, algorithm=other),
        "HS256 keyed with the public PEM": f"{b64({'alg': 'HS256'})}.{b64(claims())}.{b64(b'x' * 32)}",
        "HS256 with the test secret": user_token("alice"),
        "alg none": f"{b64({'alg': 'none'})}.{b64(claims())}.",
        "alg not a string": f"{b64({'alg': ['RS256']})}.{b64(claims())}.{b64(b'x')}",
        "alg unknown": f"{b64({'alg': 'XX999'})}.{b64(claims())}.{b64(b'x')}",
        "own alg, garbage signature": f"{b64({'alg': algorithm})}.{b64(claims())}.{b64(b'x' * 64)}",
        "header is a list": f"{b64([1, 2])}.{b64(claims())}.{b64(b'x')}",
        "kid is an object": f"{b64({'alg': algorithm, 'kid': {'a': 1}})}.{b64(claims())}.{b64(b'x')}",
        "jku and x5u": f"{b64({'alg': algorithm, 'jku': 'http://evil.example/jwks', 'x5u': 'http://evil.example/c'})}"
                       f".{b64(claims())}.{b64(b'x' * 64)}",
        "crit is not a list": f"{b64({'alg': algorithm, 'crit': 'exp'})}.{b64(claims())}.{b64(b'x')}",
        "unknown crit, really signed": unknown_crit,
        "payload not JSON": f"{b64({'alg': algorithm})}.{b64(b'{nope')}.{b64(b'x')}",
        "NaN exp": f"{b64({'alg': algorithm})}.{b64(NAN_CLAIMS)}.{b64(b'x' * 64)}",
        "not base64": "@@@.###.$$$",
        "two parts": "a.b",
        "public key PEM itself": public_pem.decode().replace("\n", ""),
    }


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=[e[1] for e in ENDPOINTS])
@ONE_DATABASE
def test_tokens_that_do_not_verify_are_401_for_every_key_type(keyed: tuple[TestClient, Any, str],
                                                              endpoint: tuple[str, str, dict[str, Any] | None]) -> None:
    client, private_key, algorithm = keyed
    method, path, body = endpoint
    for name, token in forged_tokens(private_key, algorithm).items():
        response = send(client, method, path, body, token)
        assert response.status_code == 401, (name, response.status_code, response.text)
        assert_401(response)


@ONE_DATABASE
def test_a_token_signed_with_the_configured_key_is_accepted(keyed: tuple[TestClient, Any, str]) -> None:
    client, private_key, algorithm = keyed
    token = jwt.encode(claims(), private_key, algorithm=algorithm, headers={"kid": "k1", "typ": "at+jwt"})
    response = client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    assert response.json()["user_id"] == "alice"


@ONE_DATABASE
def test_an_unusable_key_file_stops_the_app_factory(database_url: str, runtime: Runtime, tmp_path: Path) -> None:
    """The app cannot come up with a key it cannot use (the CLI says so first, see tests/cli)."""
    from authz.jwt_keys import KeyUnusable

    path = tmp_path / "jwt.pem"
    path.write_text("not a key")
    with pytest.raises(KeyUnusable), AppClient(create_app(make_settings(database_url, jwt_public_key=path), runtime)):
        pass


# ---- claims are data (class 3) ------------------------------------------------------------

HOSTILE_EMAILS = ["alice\x00@example.com", "alice@example.com\n", "al\x1bice@example.com", "\u2028@example.com",
                  "ki\u200bm@example.com", "a" * 321, "", 42, ["alice@example.com"], {"a": 1}, True]


@pytest.mark.parametrize("email", HOSTILE_EMAILS, ids=[repr(e)[:20] for e in HOSTILE_EMAILS])
@ONE_DATABASE
def test_an_email_claim_with_control_characters_or_the_wrong_type_is_401(client: TestClient, email: object) -> None:
    token = jwt.encode(claims(email=email, email_verified=True), JWT_SECRET, algorithm="HS256")
    for method, path, body in ENDPOINTS:
        response = send(client, method, path, body, token)
        assert_401(response)
        assert "email" in response.json()["detail"]


@pytest.mark.parametrize("sub", ["alice\x00", "al\nice", "\u212aim", "alice ", "*", "a" * 129, 7, None, ["a"]])
@ONE_DATABASE
def test_a_sub_that_is_not_a_user_id_is_401(client: TestClient, sub: object) -> None:
    token = jwt.encode({"sub": sub, "exp": int(time.time()) + 600}, JWT_SECRET, algorithm="HS256")
    for method, path, body in ENDPOINTS:
        assert_401(send(client, method, path, body, token))


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url, mail_sender=False)  # the token stays readable in the outbox


def pending_token(runtime: Runtime) -> str:
    with runtime.database.session() as session:
        token = session.scalars(select(OutboxMessage.token).order_by(OutboxMessage.id.desc())).first()
    assert token is not None
    return token


LOOKALIKES = ["\u212aim@example.com",  # KELVIN SIGN: lower() gives "kim@example.com"
              "k\u0130m@example.com",  # LATIN CAPITAL I WITH DOT ABOVE: lower() gives "ki̇m"
              "kim@ex\u0430mple.com",  # CYRILLIC a
              "kim@example.com ", " kim@example.com", "kim@example.com."]


@pytest.mark.parametrize("lookalike", LOOKALIKES, ids=[ascii(e) for e in LOOKALIKES])
def test_a_look_alike_address_neither_sees_nor_accepts_the_invitation(client: TestClient, runtime: Runtime,
                                                                      lookalike: str) -> None:
    org_id = create_org(client, "alice")
    created = client.post(f"/v1/organizations/{org_id}/invitations", json={"email": "kim@example.com", "role": "owner"},
                          headers=auth("alice"))
    assert created.status_code == 201, created.text
    token = pending_token(runtime)
    mallory = auth("mallory", email=lookalike)
    assert client.get("/v1/me/invitations", headers=mallory).json() == []
    refused = client.post("/v1/invitations/accept", json={"token": token}, headers=mallory)
    assert refused.status_code == 403, refused.text
    assert "different email" in refused.json()["detail"]
    assert client.get(f"/v1/organizations/{org_id}/members", headers=auth("mallory")).status_code == 404
    # the invited person, in any ASCII case, still can
    kim = auth("kim", email="KIM@Example.COM")
    assert [i["organization_id"] for i in client.get("/v1/me/invitations", headers=kim).json()] == [org_id]
    accepted = client.post("/v1/invitations/accept", json={"token": token}, headers=kim)
    assert accepted.status_code == 200, accepted.text


def test_a_member_with_a_look_alike_email_does_not_block_inviting_the_real_address(client: TestClient) -> None:
    org_id = create_org(client, "mallory", name="Look-alike Lab")
    # mallory's own membership carries the look-alike address; inviting kim is not "already a member"
    response = client.post(f"/v1/organizations/{org_id}/invitations",
                           json={"email": "kim@example.com", "role": "viewer"},
                           headers=auth("mallory", email="\u212aim@example.com"))
    assert response.status_code == 201, response.text


@ONE_DATABASE
def test_a_certificate_pem_verifies_with_its_public_key(database_url: str, runtime: Runtime, tmp_path: Path) -> None:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    private_key = issuer_key("rsa")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "id.example")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(private_key.public_key())
                   .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
                   .sign(private_key, hashes.SHA256()))
    path = tmp_path / "cert.pem"
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    settings = make_settings(database_url, jwt_secret=None, jwt_public_key=path)
    with AppClient(create_app(settings, runtime), raise_server_exceptions=False) as client:
        good = jwt.encode(claims(), private_key, algorithm="RS256")
        assert client.get("/v1/me", headers={"Authorization": f"Bearer {good}"}).status_code == 200
        for token in forged_tokens(private_key, "RS256").values():
            assert_401(client.get("/v1/me", headers={"Authorization": f"Bearer {token}"}))


class _Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_a_repeated_token_is_verified_once_and_refused_from_its_expiry_on(monkeypatch: pytest.MonkeyPatch) -> None:
    decoded: list[str] = []
    real_decode = jwt.decode

    def counting_decode(token: str, *args: Any, **kwargs: Any) -> Any:
        decoded.append(token)
        return real_decode(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting_decode)
    clock = _Clock()
    verifier = TokenVerifier(JWT_SECRET, ["HS256"], None, None, 30, verified=VerifiedTokens(clock=clock))
    expires = int(clock.now) + 600
    token = user_token("alice", email="alice@example.com", ttl=600)
    first, again = verifier.verify(token, "req-1"), verifier.verify(token, "req-2")
    assert decoded == [token]  # the second use is not verified again
    assert (again.id, again.email, again.email_verified, again.request_id) == (
        "alice", "alice@example.com", True, "req-2")
    assert first.request_id == "req-1"
    clock.now = expires + 29  # within the leeway, as PyJWT counts it
    assert verifier.verify(token, None).id == "alice"
    clock.now = expires + 30
    with pytest.raises(Unauthenticated, match="the token has expired"):
        verifier.verify(token, None)
    with pytest.raises(Unauthenticated):  # nor a token that never verified, however often it comes
        verifier.verify(token[:-2] + ("AA" if not token.endswith("AA") else "BB"), None)
    assert len(decoded) == 2
