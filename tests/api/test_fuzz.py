"""Property-based requests against every endpoint: never a 5xx, and every 4xx is problem+json.

Bodies are random JSON values and mutations of valid bodies; path parameters and the
context header are random strings. The number of examples is bounded to keep the suite fast.
Issue 12's classes are searched for each on their own: tokens with random headers and
signatures (2), random claims (3), integers beyond what the store holds (6), and chunked
bodies over the size limit (7). Everything runs on SQLite and on PostgreSQL.
"""

import base64
import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.app import create_app
from authz.bootstrap import open_runtime
from authz.domain.limits import MAX_STORED_INT
from tests.app_client import AppClient
from tests.conftest import (
    BILLING,
    JWT_SECRET,
    auth,
    fresh_postgres,
    make_settings,
    service_key,
)
from tests.hypothesis_budget import examples
from tests.keys import rsa_key

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
path_ids = st.text(alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="/?#"),
                   min_size=1, max_size=40)

VALID_BODIES: dict[str, dict[str, Any]] = {
    "organization": {"name": "Lab", "billing_address": BILLING},
    "role": {"role": "viewer"},
    "expiring_role": {"role": "viewer", "expires_at": "2099-01-01T00:00:00Z"},
    "resource": {"type": "algorithm", "id": "a1"},
    "check": {"action": "read", "resource": {"type": "algorithm", "id": "a1"}},
    "batch": {"checks": [{"subject": "u", "action": "read", "resource": {"type": "job"}, "context": "personal"}]},
    "list_resources": {"action": "read", "type": "algorithm"},
    "list_subjects": {"action": "read", "resource": {"type": "algorithm", "id": "a1"}},
    "invitation": {"email": "bob@example.com", "role": "viewer"},
    "expiring_invitation": {"email": "bob@example.com", "role": "viewer", "expires_at": "2099-01-01T00:00:00Z"},
    "token": {"token": "inv_" + "0" * 24 + "_" + "A" * 43},
    "backend_token": {"token": "secret-value"},
    "resolve": {"user_id": "u", "context": "user:u", "provider": "ibm"},
}

ENDPOINTS = [
    ("POST", "/v1/organizations", "organization"),
    ("PATCH", "/v1/organizations/{id}", "organization"),
    ("PATCH", "/v1/organizations/{id}/members/{id}", "role"),
    ("PATCH", "/v1/organizations/{id}/members/{id}", "expiring_role"),
    ("PUT", "/v1/resources/{id}/{id}/members/{id}", "expiring_role"),
    ("POST", "/v1/organizations/{id}/invitations", "expiring_invitation"),
    ("DELETE", "/v1/organizations/{id}/members/{id}", None),
    ("GET", "/v1/organizations/{id}/audit", None),
    ("POST", "/v1/resources", "resource"),
    ("GET", "/v1/resources/{id}/{id}", None),
    ("PUT", "/v1/resources/{id}/{id}/members/{id}", "role"),
    ("POST", "/v1/check", "check"),
    ("POST", "/v1/check/batch", "batch"),
    ("POST", "/v1/list-resources", "list_resources"),
    ("POST", "/v1/list-subjects", "list_subjects"),
    ("POST", "/v1/organizations/{id}/invitations", "invitation"),
    ("POST", "/v1/organizations/{id}/invitations/{id}/resend", None),
    ("DELETE", "/v1/organizations/{id}/invitations/{id}", None),
    ("POST", "/v1/invitations/accept", "token"),
    ("POST", "/v1/invitations/decline", "token"),
    ("PUT", "/v1/organizations/{id}/backend-tokens/{id}", "backend_token"),
    ("PUT", "/v1/me/backend-tokens/{id}", "backend_token"),
    ("POST", "/v1/backend-tokens/resolve", "resolve"),
    ("GET", "/v1/authorize/{id}", None),
]


@st.composite
def mutated(draw: st.DrawFn, kind: str) -> Any:
    body = dict(VALID_BODIES[kind])
    if draw(st.booleans()):
        return draw(json_values)
    key = draw(st.sampled_from(sorted(body)) | st.text(max_size=8))
    if "expires_at" in body and draw(st.booleans()):  # instants at and past the ends of the calendar
        body["expires_at"] = draw(st.sampled_from(["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00",
                                                   "9998-12-31T23:59:59Z", "2099-02-30T00:00:00Z"]) | st.datetimes(
            timezones=st.timezones()).map(lambda at: at.isoformat()))
        return body
    body[key] = draw(json_values)
    return body


LIMIT = 4096  # AUTHZ_MAX_BODY_BYTES of the fuzzed app: small, so bodies over it are cheap to make


@dataclass
class Fuzzed:
    """The app under fuzz on one database, with a service key, an org owned by `fuzzer`, and
    a second app on the same runtime whose user tokens are verified with an RSA public key."""

    client: TestClient
    key: dict[str, str]
    org_id: str
    rsa_client: TestClient
    rsa_key: Any
    feed_key: dict[str, str]


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fuzzed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           sqlite_first_start: Path) -> Iterator[Fuzzed]:
    """Module-wide (hypothesis runs many examples against one app), once per database: PostgreSQL
    refuses some strings SQLite stores (a NUL byte), so each class is searched for on both."""
    folder = tmp_path_factory.mktemp("fuzz")
    if request.param == "sqlite":
        shutil.copy(sqlite_first_start, folder / "authz.db")
        url = f"sqlite:///{folder / 'authz.db'}"
    else:
        url = fresh_postgres(request)
    app_settings = make_settings(url, max_body_bytes=LIMIT, mail_sender=False, min_revision_wait=0)
    private_key = rsa_key("fuzzed issuer")
    (folder / "jwt.pem").write_bytes(private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    rsa_settings = make_settings(url, max_body_bytes=LIMIT, mail_sender=False, jwt_secret=None,
                                 jwt_public_key=folder / "jwt.pem")
    runtime = open_runtime(app_settings, migrate=False)
    with AppClient(create_app(app_settings, runtime), raise_server_exceptions=False) as client, \
            AppClient(create_app(rsa_settings, runtime), raise_server_exceptions=False) as rsa_client:
        created = client.post("/v1/organizations", json={"name": "Fuzz Lab", "billing_address": BILLING},
                              headers=auth("fuzzer"))
        assert created.status_code == 201, created.text
        yield Fuzzed(client, service_key(runtime, "check"), created.json()["id"], rsa_client, private_key,
                     service_key(runtime, "changes:read"))
    runtime.database.dispose()


@pytest.fixture(scope="module")
def fuzz_client(fuzzed: Fuzzed) -> tuple[TestClient, dict[str, str]]:
    return fuzzed.client, fuzzed.key


@settings(max_examples=examples(250), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_no_5xx_and_problem_json_for_every_4xx(
    fuzz_client: tuple[TestClient, dict[str, str]], data: st.DataObject
) -> None:
    client, key = fuzz_client
    method, template, kind = data.draw(st.sampled_from(ENDPOINTS))
    path = template
    while "{id}" in path:
        path = path.replace("{id}", quote(data.draw(path_ids), safe=""), 1)
    headers = data.draw(st.sampled_from([auth("fuzzer"), key, {}]))
    if data.draw(st.booleans()):
        printable = st.characters(min_codepoint=32, max_codepoint=126)
        headers = {**headers, "X-Account-Context": data.draw(st.text(alphabet=printable, max_size=40))}
    body = data.draw(mutated(kind)) if kind else None
    if kind and data.draw(st.integers(0, 9)) == 0:  # now and then, raw bytes that may not be JSON at all
        raw = data.draw(st.binary(max_size=64)
                        | st.sampled_from([b"NaN", b"Infinity", b"[1,", b'{"a":1}{', b"\xff\xfe"]))
        response = client.request(method, path, content=raw, headers={**headers, "Content-Type": "application/json"})
    else:
        response = client.request(method, path, json=body, headers=headers)
    assert response.status_code < 500, (method, path, body, response.text)
    if response.status_code >= 400:
        assert response.headers["content-type"] == "application/problem+json", (method, path, response.text)
        problem = response.json()
        assert problem["status"] == response.status_code and problem["detail"]


# ---- class 2 and 3: tokens with random headers, signatures and claims ------------------------

SETTINGS = settings(max_examples=examples(150), deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
TOKEN_ENDPOINTS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/v1/me", None),
    ("POST", "/v1/check", {"action": "read", "resource": {"type": "algorithm", "id": "a1"}}),
    ("POST", "/v1/check/batch", {"checks": [{"action": "read", "resource": {"type": "job"}}]}),
    ("GET", "/v1/authorize", None),
    ("POST", "/v1/organizations", {"name": "Lab", "billing_address": BILLING}),
    ("GET", "/v1/me/invitations", None),
    ("GET", "/v1/organizations", None),
    ("POST", "/v1/invitations/accept", {"token": "inv_" + "0" * 24 + "_" + "A" * 43}),
]
ALGORITHMS = ["HS256", "HS384", "HS512", "RS256", "RS512", "PS256", "ES256", "ES384", "EdDSA", "none", "None", ""]
any_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**80), 2**80) | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=6,
)
hostile_text = st.text(st.characters(codec="utf-8"), max_size=40) | st.sampled_from(
    ["alice\x00", "al\x00ice@example.com", "\u212aim@example.com", "a\nb@example.com", "x" * 400, "\u2028", " "])
valid_sub = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._@|+-]{0,20}", fullmatch=True)


HOSTILE_HEADER_VALUES: dict[str, list[Any]] = {
    "crit": [["exp"], ["x-unknown"], [], "exp", [1]], "typ": ["JWT", "at+jwt", "", None],
    "jku": ["https://evil.example/jwks.json", "file:///etc/passwd"],
    "x5u": ["https://evil.example/cert.pem"],
}


@st.composite
def headers(draw: st.DrawFn) -> dict[str, Any]:
    header: dict[str, Any] = {"alg": draw(st.sampled_from(ALGORITHMS) | any_json)}
    for name in ("kid", "typ", "crit", "jku", "x5u", "x5c", "jwk", "b64", "cty"):
        if draw(st.integers(0, 4)) == 0:
            header[name] = draw(st.sampled_from(HOSTILE_HEADER_VALUES.get(name, ["k1"])) | any_json)
    return header


@st.composite
def claims(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if draw(st.integers(0, 9)):
        body["sub"] = draw(valid_sub | hostile_text | any_json)
    if draw(st.integers(0, 9)):
        body["exp"] = draw(st.just(int(time.time()) + 600) | any_json)
    if draw(st.booleans()):
        body["email"] = draw(st.just("fuzzer@example.com") | hostile_text | any_json)
        body["email_verified"] = draw(st.booleans() | any_json)
    for name in ("iat", "nbf", "aud", "iss", "jti"):
        if draw(st.integers(0, 5)) == 0:
            body[name] = draw(any_json)
    return body


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def signed(header: dict[str, Any], payload: dict[str, Any], key: Any, algorithm: str) -> str:
    """header.payload signed with `key` as `algorithm`, whatever the header claims (JSON as given)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    algo = jwt.algorithms.get_default_algorithms()[algorithm]
    return f"{signing_input}.{b64(algo.sign(signing_input.encode(), algo.prepare_key(key)))}"


def claims_verdict(payload: dict[str, Any]) -> bool | None:
    """Does a verified token with these claims name a user? None where the oracle does not say
    (other registered claims, an `exp` that is not a plain future integer)."""
    import re

    sub, exp, email = payload.get("sub"), payload.get("exp"), payload.get("email")
    if not (isinstance(sub, str) and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._@|+-]{0,127}", sub)):
        return False
    if email is not None and not (isinstance(email, str) and 0 < len(email) <= 320 and email.isprintable()):
        return False
    if "exp" not in payload:
        return False
    if type(exp) is not int or exp < time.time() + 60 or {"iat", "nbf", "aud", "iss", "jti"} & set(payload):
        return None
    return True


@SETTINGS
@given(data=st.data())
def test_tokens_with_any_header_signature_and_claims(fuzzed: Fuzzed, data: st.DataObject) -> None:
    """Class 2 and 3: a token is 401 unless it is signed by the configured key with its own
    algorithm, and its claims name a user; never a 5xx, whatever the header says."""
    use_rsa = data.draw(st.booleans())
    client, key, algorithm = ((fuzzed.rsa_client, fuzzed.rsa_key, "RS256") if use_rsa
                              else (fuzzed.client, JWT_SECRET, "HS256"))
    header, payload = data.draw(headers()), data.draw(claims())
    how = data.draw(st.sampled_from(["right", "garbage", "other key", "unsigned"]))
    if how == "right":
        token = signed(header, payload, key, algorithm)
    elif how == "other key":
        token = signed(header, payload, "another-secret-" + "z" * 32, "HS256")
    elif how == "unsigned":
        token = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}."
    else:
        signature = b64(data.draw(st.binary(max_size=300)))
        token = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}.{signature}"
    method, path, body = data.draw(st.sampled_from(TOKEN_ENDPOINTS))
    response = client.request(method, path, json=body, headers={
        "Authorization": f"Bearer {token}", "X-Original-Method": "GET", "X-Original-URI": "/algorithms/a1"})
    assert response.status_code < 500, (header, payload, how, path, response.text)
    signature_holds = how == "right" and header.get("alg") == algorithm
    plain_header = not {"crit", "b64"} & set(header)  # crit: nothing is understood; b64 changes the encoding
    verdict = claims_verdict(payload)
    if not signature_holds or (plain_header and verdict is False):
        assert response.status_code == 401, (header, payload, how, path, response.text)
    elif plain_header and verdict is True:
        assert response.status_code != 401, (header, payload, path, response.text)
    if response.status_code == 401:
        assert response.headers["content-type"] == "application/problem+json"


# ---- class 6: integers beyond what the store holds ---------------------------------------------

big_ints = st.integers(-(2**80), 2**80) | st.sampled_from([MAX_STORED_INT, MAX_STORED_INT + 1, 2**64, -1, 0, 1])


@SETTINGS
@given(data=st.data())
def test_every_integer_is_bounded_by_the_store(fuzzed: Fuzzed, data: st.DataObject) -> None:
    client = fuzzed.client
    value = data.draw(big_ints)
    where = data.draw(st.sampled_from(["before", "limit", "check", "batch", "list-resources", "list-subjects",
                                       "after", "last-event-id"]))
    if where in ("after", "last-event-id"):
        headers = {**fuzzed.feed_key, **({"Last-Event-ID": str(value)} if where == "last-event-id" else {})}
        response = client.get("/v1/changes", params={"after": value} if where == "after" else {}, headers=headers)
        low, high = 0, MAX_STORED_INT
    elif where in ("before", "limit"):
        response = client.get(f"/v1/organizations/{fuzzed.org_id}/audit", params={where: value},
                              headers=auth("fuzzer"))
        low, high = (1, MAX_STORED_INT) if where == "before" else (1, 200)
    else:
        bodies: dict[str, dict[str, Any]] = {
            "check": {"subject": "fuzzer", "action": "read", "resource": {"type": "job"}, "context": "personal"},
            "batch": {"checks": [{"subject": "fuzzer", "action": "read", "resource": {"type": "job"}}]},
            "list-resources": {"subject": "fuzzer", "action": "read", "type": "algorithm"},
            "list-subjects": {"action": "read", "resource": {"type": "algorithm", "id": "a1"}},
        }
        body = bodies[where]
        path = {"check": "/v1/check", "batch": "/v1/check/batch"}.get(where, f"/v1/{where}")
        response = client.post(path, json={**body, "min_revision": value}, headers=fuzzed.key)
        low, high = 0, MAX_STORED_INT
    assert response.status_code < 500 or (response.status_code == 503 and "behind" in response.text), \
        (where, value, response.text)
    if not low <= value <= high:
        assert response.status_code == 422, (where, value, response.text)
        assert response.json()["errors"][0]["field"] in ("before", "limit", "min_revision", "after", "Last-Event-ID")
    else:
        assert response.status_code in (200, 503), (where, value, response.text)  # 503: a revision not reached


# ---- class 7: chunked bodies ---------------------------------------------------------------------

@SETTINGS
@given(data=st.data())
def test_a_chunked_body_over_the_limit_is_413_everywhere(fuzzed: Fuzzed, data: st.DataObject) -> None:
    method, template, kind = data.draw(st.sampled_from([e for e in ENDPOINTS if e[2] is not None]))
    assert kind is not None
    path = template.replace("{id}", "x1")
    size = data.draw(st.integers(LIMIT + 1, LIMIT * 3) | st.integers(0, LIMIT))
    chunk = data.draw(st.integers(1, 2048))
    raw = (json.dumps(data.draw(mutated(kind))).encode() + b" " * size)[: max(size, 2)]
    pieces = iter([raw[i:i + chunk] for i in range(0, len(raw), chunk)] or [b""])
    auth_headers = data.draw(st.sampled_from([auth("fuzzer"), fuzzed.key, {}]))
    response = fuzzed.client.request(method, path, content=pieces,
                                     headers={**auth_headers, "Content-Type": "application/json"})
    assert response.status_code < 500, (method, path, len(raw), response.text)
    if len(raw) > LIMIT:
        assert response.status_code == 413, (method, path, len(raw), response.status_code, response.text)
    else:
        assert response.status_code != 413, (method, path, len(raw), response.text)
