"""Bearer tokens from the OpenID provider: discovery, JWKS by kid, rotation without a restart.

The provider is an httpx MockTransport serving a discovery document and a JWKS whose keys
the tests rotate; the verifier is the API's own (api/auth.py TokenVerifier).
"""

import base64
import hashlib
import hmac
import json
import re
import time
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from api.auth import TokenVerifier
from api.oidc_keys import UNKNOWN_KID_REFRESH_GAP, KeyUnavailable, OidcProvider
from api.problems import Unauthenticated
from tests.keys import rsa_key

ISSUER = "https://id.example/realms/planqk"


class FakeProvider:
    """Discovery and JWKS over a MockTransport; counts JWKS reads; keys can be swapped or broken."""

    def __init__(self) -> None:
        self.keys: dict[str, Any] = {"k1": rsa_key("provider")}
        self.jwks_reads = 0
        self.down = False
        self.issuer = ISSUER

    def handler(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            return httpx.Response(503)
        if request.url.path.endswith("/.well-known/openid-configuration"):
            return httpx.Response(200, json={
                "issuer": self.issuer, "jwks_uri": ISSUER + "/certs",
                "authorization_endpoint": ISSUER + "/auth", "token_endpoint": ISSUER + "/token",
            })
        if request.url.path.endswith("/certs"):
            self.jwks_reads += 1
            keys = []
            for kid, key in self.keys.items():
                data = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
                keys.append({**data, "kid": kid, "use": "sig", "alg": "RS256"})
            return httpx.Response(200, json={"keys": keys})
        return httpx.Response(404)

    def token(self, kid: str, **claims: Any) -> str:
        payload = {"sub": "alice", "iss": ISSUER, "exp": int(time.time()) + 300, "email": "alice@example.com",
                   "email_verified": True, **claims}
        return jwt.encode(payload, self.keys[kid], algorithm="RS256", headers={"kid": kid})


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake() -> FakeProvider:
    return FakeProvider()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def provider(fake: FakeProvider, clock: Clock) -> OidcProvider:
    return OidcProvider(ISSUER, refresh_interval=3600, clock=clock, transport=httpx.MockTransport(fake.handler))


def verifier(provider: OidcProvider, secret: str | None = None) -> TokenVerifier:
    return TokenVerifier(secret, ["HS256"] if secret else [], None, None, 0, provider)


def test_a_provider_token_is_verified_with_the_key_of_its_kid(provider: OidcProvider, fake: FakeProvider) -> None:
    principal = verifier(provider).verify(fake.token("k1"), None)
    assert (principal.id, principal.email, principal.email_verified) == ("alice", "alice@example.com", True)


def test_a_key_rotation_needs_no_restart(provider: OidcProvider, fake: FakeProvider) -> None:
    api = verifier(provider)
    api.verify(fake.token("k1"), None)
    fake.keys = {"k2": rsa_key("rotated")}  # the provider rotates
    assert api.verify(fake.token("k2"), None).id == "alice"  # unknown kid: the JWKS is read again
    assert fake.jwks_reads == 2


def test_made_up_kids_do_not_hammer_the_provider(provider: OidcProvider, fake: FakeProvider, clock: Clock) -> None:
    api = verifier(provider)
    good = fake.token("k1")
    forged_key = rsa_key("forger")
    for number in range(20):
        forged = jwt.encode({"sub": "mallory", "iss": ISSUER, "exp": int(time.time()) + 60}, forged_key,
                            algorithm="RS256", headers={"kid": f"nope-{number}"})
        with pytest.raises(Unauthenticated, match="not one of the provider's keys"):
            api.verify(forged, None)
    assert fake.jwks_reads == 2  # the first read, and one refresh for all unknown kids in the gap
    clock.now += UNKNOWN_KID_REFRESH_GAP
    with pytest.raises(Unauthenticated):
        api.verify(jwt.encode({"sub": "m", "iss": ISSUER, "exp": int(time.time()) + 60}, forged_key,
                              algorithm="RS256", headers={"kid": "later"}), None)
    assert fake.jwks_reads == 3
    assert api.verify(good, None).id == "alice"


def test_keys_are_refreshed_on_a_schedule_and_kept_while_the_provider_is_down(
        provider: OidcProvider, fake: FakeProvider, clock: Clock) -> None:
    api = verifier(provider)
    api.verify(fake.token("k1"), None)
    clock.now += 3600
    fake.down = True
    assert api.verify(fake.token("k1"), None).id == "alice"  # old keys kept: no mass log-out
    fake.down = False
    fake.keys["k3"] = rsa_key("added")
    clock.now += 3600
    assert provider.key_for("k3").kid == "k3"  # picked up by the scheduled refresh
    assert fake.jwks_reads == 2  # answered reads: the first, and the scheduled one after the outage


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_forged_and_confused_tokens_are_refused(provider: OidcProvider, fake: FakeProvider) -> None:
    api = verifier(provider)
    # HS256 "signed" with the provider's public key as the HMAC secret (algorithm confusion).
    public_pem = fake.keys["k1"].public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    header = {"alg": "HS256", "typ": "JWT", "kid": "k1"}
    claims = {"sub": "mallory", "iss": ISSUER, "exp": int(time.time()) + 60}
    signing_input = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
    confused = signing_input + "." + _b64(hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest())
    with pytest.raises(Unauthenticated, match="algorithm not allowed"):
        api.verify(confused, None)
    # Signed by the provider's key but for another issuer: routed to the fixed key, of which there is none.
    other_issuer = jwt.encode({"sub": "x", "iss": ISSUER + "/other", "exp": int(time.time()) + 60},
                              fake.keys["k1"], algorithm="RS256", headers={"kid": "k1"})
    with pytest.raises(Unauthenticated):
        api.verify(other_issuer, None)
    # Someone else's key under the provider's kid.
    other_key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(Unauthenticated):
        api.verify(jwt.encode(claims, other_key, algorithm="ES256", headers={"kid": "k1"}), None)
    with pytest.raises(Unauthenticated, match="expired"):
        api.verify(fake.token("k1", exp=int(time.time()) - 3600), None)


def test_the_fixed_secret_still_verifies_its_own_tokens_beside_the_provider(provider: OidcProvider,
                                                                           fake: FakeProvider) -> None:
    api = verifier(provider, secret="s" * 40)
    dev = jwt.encode({"sub": "bob", "exp": int(time.time()) + 60}, "s" * 40, algorithm="HS256")
    assert api.verify(dev, None).id == "bob"
    assert api.verify(fake.token("k1"), None).id == "alice"


def test_a_discovery_document_for_another_issuer_is_refused(fake: FakeProvider, clock: Clock) -> None:
    fake.issuer = "https://evil.example"
    provider = OidcProvider(ISSUER, clock=clock, transport=httpx.MockTransport(fake.handler))
    with pytest.raises(KeyUnavailable, match=re.escape("names issuer 'https://evil.example'")):
        provider.key_for("k1")
    with pytest.raises(Unauthenticated):
        verifier(provider).verify(fake.token("k1"), None)
