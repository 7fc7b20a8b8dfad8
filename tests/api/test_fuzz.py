"""Property-based requests against every endpoint: never a 5xx, and every 4xx is problem+json.

Bodies are random JSON values and mutations of valid bodies; path parameters and the
context header are random strings. The number of examples is bounded to keep the suite fast.
"""

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.app import create_app
from authz.bootstrap import open_runtime
from tests.conftest import BILLING, auth, make_settings, service_key

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
path_ids = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/?#"), min_size=1, max_size=40)

VALID_BODIES: dict[str, dict[str, Any]] = {
    "organization": {"name": "Lab", "billing_address": BILLING},
    "role": {"role": "viewer"},
    "resource": {"type": "algorithm", "id": "a1"},
    "check": {"action": "read", "resource": {"type": "algorithm", "id": "a1"}},
    "batch": {"checks": [{"subject": "u", "action": "read", "resource": {"type": "job"}, "context": "personal"}]},
    "list_resources": {"action": "read", "type": "algorithm"},
    "list_subjects": {"action": "read", "resource": {"type": "algorithm", "id": "a1"}},
    "invitation": {"email": "bob@example.com", "role": "viewer"},
    "token": {"token": "inv_" + "0" * 24 + "_" + "A" * 43},
    "backend_token": {"token": "secret-value"},
    "resolve": {"user_id": "u", "context": "user:u", "provider": "ibm"},
}

ENDPOINTS = [
    ("POST", "/v1/organizations", "organization"),
    ("PATCH", "/v1/organizations/{id}", "organization"),
    ("PATCH", "/v1/organizations/{id}/members/{id}", "role"),
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
    body[key] = draw(json_values)
    return body


@pytest.fixture(scope="module")
def fuzz_client(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    path = tmp_path_factory.mktemp("fuzz") / "authz.db"
    shutil.copy(sqlite_template, path)
    app_settings = make_settings(f"sqlite:///{path}")
    runtime = open_runtime(app_settings, migrate=False)
    with TestClient(create_app(app_settings, runtime), raise_server_exceptions=False) as client:
        yield client, service_key(runtime, "check")
    runtime.database.dispose()


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_no_5xx_and_problem_json_for_every_4xx(fuzz_client: tuple[TestClient, dict[str, str]], data: st.DataObject) -> None:
    client, key = fuzz_client
    method, template, kind = data.draw(st.sampled_from(ENDPOINTS))
    path = template
    while "{id}" in path:
        path = path.replace("{id}", quote(data.draw(path_ids), safe=""), 1)
    headers = data.draw(st.sampled_from([auth("fuzzer"), key, {}]))
    if data.draw(st.booleans()):
        headers = {**headers, "X-Account-Context": data.draw(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40))}
    body = data.draw(mutated(kind)) if kind else None
    if kind and data.draw(st.integers(0, 9)) == 0:  # now and then, raw bytes that may not be JSON at all
        raw = data.draw(st.binary(max_size=64) | st.sampled_from([b"NaN", b"Infinity", b"[1,", b'{"a":1}{', b"\xff\xfe"]))
        response = client.request(method, path, content=raw, headers={**headers, "Content-Type": "application/json"})
    else:
        response = client.request(method, path, json=body, headers=headers)
    assert response.status_code < 500, (method, path, body, response.text)
    if response.status_code >= 400:
        assert response.headers["content-type"] == "application/problem+json", (method, path, response.text)
        problem = response.json()
        assert problem["status"] == response.status_code and problem["detail"]
