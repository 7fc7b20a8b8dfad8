"""AuthZEN Authorization API 1.0: the cases of the spec and its certification scenario that apply to authz.

The scenario's fixture, in authz's terms: `alice` and `bob` are users; `record-1` and
`record-2` are algorithms in an org where alice is a maintainer (read, update) and bob a
viewer (read). The scenario's `write` is authz's `update`. The scenario's "properties"
rules do not apply: authz decides from its own data and ignores asserted attributes,
which is tested too (an asserted `role: admin` grants nothing).
"""

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from authz.bootstrap import open_runtime
from authz.services.runtime import Runtime
from tests.app_client import AppClient
from tests.conftest import add_member, auth, create_org, make_settings, service_key

ALICE = {"type": "user", "id": "alice"}
BOB = {"type": "user", "id": "bob"}
RECORD_1 = {"type": "algorithm", "id": "record-1"}
RECORD_2 = {"type": "algorithm", "id": "record-2"}
READ, WRITE, DELETE = {"name": "read"}, {"name": "update"}, {"name": "delete"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory,
           sqlite_first_start: Path) -> Iterator[tuple[TestClient, Runtime, dict[str, str]]]:
    """One app with the scenario's fixture for the whole module, and the headers of a service key with
    `check` (a PEP such as a gateway). Every test here asks questions and writes nothing another reads
    (a service key at most), so they share it instead of building it once each. SQLite only: the
    replica answers, the same on either database."""
    path = tmp_path_factory.mktemp("authzen") / "authz.db"
    shutil.copy(sqlite_first_start, path)
    settings = make_settings(f"sqlite:///{path}")
    runtime = open_runtime(settings, migrate=False)
    try:
        with AppClient(create_app(settings, runtime), raise_server_exceptions=False) as client:
            org_id = create_org(client, "owen")
            add_member(runtime, org_id, "alice", "maintainer")
            add_member(runtime, org_id, "bob", "viewer")
            for resource in (RECORD_1, RECORD_2):
                created = client.post("/v1/resources", json=resource, headers=auth("owen", context=org_id))
                assert created.status_code == 201
            yield client, runtime, service_key(runtime, "check")
    finally:
        runtime.database.dispose()


@pytest.fixture
def client(served: tuple[TestClient, Runtime, dict[str, str]]) -> TestClient:
    return served[0]


@pytest.fixture
def runtime(served: tuple[TestClient, Runtime, dict[str, str]]) -> Runtime:
    return served[1]


@pytest.fixture
def pdp(served: tuple[TestClient, Runtime, dict[str, str]]) -> dict[str, str]:
    return served[2]


def _post(client: TestClient, path: str, body: Any, headers: dict[str, str]) -> Any:
    response = client.post("/access/v1/" + path, json=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()


def _decision(client: TestClient, body: Any, headers: dict[str, str]) -> bool:
    answer = _post(client, "evaluation", body, headers)
    assert isinstance(answer["decision"], bool)
    assert isinstance(answer.get("context", {}), dict)
    return bool(answer["decision"])


# ---- access evaluation ------------------------------------------------------------------

@pytest.mark.parametrize(("subject", "action", "expected"), [
    (ALICE, READ, True), (ALICE, WRITE, True), (BOB, READ, True), (BOB, WRITE, False), (ALICE, DELETE, False),
])
def test_fixture_decisions(
    client: TestClient, pdp: dict[str, str], subject: dict[str, str], action: dict[str, str], expected: bool
) -> None:
    assert _decision(client, {"subject": subject, "action": action, "resource": RECORD_1}, pdp) is expected


def test_context_properties_and_unknown_fields_are_accepted_and_change_nothing(
    client: TestClient, pdp: dict[str, str]
) -> None:
    base = {"subject": ALICE, "action": READ, "resource": RECORD_1}
    variants = [
        {**base, "context": {"time": "2025-06-27T18:03-07:00", "ip": "192.168.1.1"}},
        {"subject": {**ALICE, "properties": {"department": "Sales", "role": "manager"}},
         "action": {"name": "read", "properties": {"method": "GET"}},
         "resource": {**RECORD_1, "properties": {"status": "active", "owner": "bob"}}},
        {**base, "foo": "bar", "futureField": {"nested": True}},
    ]
    for body in variants:
        assert _decision(client, body, pdp) is True


def test_asserted_properties_grant_nothing(client: TestClient, pdp: dict[str, str]) -> None:
    body = {"subject": {**BOB, "properties": {"role": "admin"}}, "action": WRITE,
            "resource": {**RECORD_2, "properties": {"status": "archived"}}}
    assert _decision(client, body, pdp) is False


def test_unknown_subjects_resources_and_names_are_denied_not_errors(client: TestClient, pdp: dict[str, str]) -> None:
    for body in [
        {"subject": {"type": "spaceship", "id": "enterprise"}, "action": READ, "resource": RECORD_1},
        {"subject": {"type": "user", "id": "nobody"}, "action": READ, "resource": RECORD_1},
        {"subject": ALICE, "action": READ, "resource": {"type": "algorithm", "id": "no-such-record"}},
        {"subject": ALICE, "action": {"name": "can_fly"}, "resource": RECORD_1},
        {"subject": ALICE, "action": {"name": "Can Read"}, "resource": RECORD_1},
        {"subject": {"type": "user", "id": "*"}, "action": READ, "resource": RECORD_1},
        {"subject": ALICE, "action": READ, "resource": {"type": "record", "id": "../etc"}},
    ]:
        assert _decision(client, body, pdp) is False, body


def test_the_same_request_gets_the_same_decision(client: TestClient, pdp: dict[str, str]) -> None:
    body = {"subject": ALICE, "action": READ, "resource": RECORD_1}
    assert {_decision(client, body, pdp) for _ in range(5)} == {True}


def test_the_request_id_is_echoed(client: TestClient, pdp: dict[str, str]) -> None:
    request_id = "bfe9eb29-ab87-4ca3-be83-a1d5d8305716"
    response = client.post("/access/v1/evaluation", json={"subject": ALICE, "action": READ, "resource": RECORD_1},
                           headers={**pdp, "X-Request-ID": request_id})
    assert response.headers["X-Request-ID"] == request_id
    without = client.post("/access/v1/evaluation", json={"subject": ALICE, "action": READ, "resource": RECORD_1},
                          headers=pdp)
    assert without.status_code == 200 and without.headers["X-Request-ID"]


BAD_EVALUATIONS = [
    ({"action": READ, "resource": RECORD_1}, "subject"),
    ({"subject": ALICE, "resource": RECORD_1}, "action"),
    ({"subject": ALICE, "action": READ}, "resource"),
    ({"subject": {"id": "alice"}, "action": READ, "resource": RECORD_1}, "subject.type"),
    ({"subject": {"type": "user"}, "action": READ, "resource": RECORD_1}, "subject.id"),
    ({"subject": ALICE, "action": {}, "resource": RECORD_1}, "action.name"),
    ({"subject": ALICE, "action": READ, "resource": {"id": "record-1"}}, "resource.type"),
    ({"subject": ALICE, "action": READ, "resource": {"type": "algorithm"}}, "resource.id"),
    ({"subject": "alice", "action": READ, "resource": RECORD_1}, "subject"),
    ({"subject": ALICE, "action": {"name": 123}, "resource": RECORD_1}, "action.name"),
    ([{"subject": ALICE}], "body"),
]


@pytest.mark.parametrize(("body", "field"), BAD_EVALUATIONS)
def test_missing_or_mistyped_fields_are_400_naming_them(
    client: TestClient, pdp: dict[str, str], body: Any, field: str
) -> None:
    response = client.post("/access/v1/evaluation", json=body, headers=pdp)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["field"] == field


@pytest.mark.parametrize(("content", "content_type"), [
    (b"", "application/json"), (b"{not json", "application/json"),
    (b'{"subject": {"type": "user", "id": "alice"}}', "text/plain"), (b"null", "application/json"),
])
def test_bodies_that_are_not_a_json_object_are_400(
    client: TestClient, pdp: dict[str, str], content: bytes, content_type: str
) -> None:
    response = client.post("/access/v1/evaluation", content=content, headers={**pdp, "Content-Type": content_type})
    assert response.status_code == 400, response.text


# ---- who may ask -------------------------------------------------------------------------

def test_authenticated_like_v1_check(client: TestClient, runtime: Runtime, pdp: dict[str, str]) -> None:
    body = {"subject": ALICE, "action": READ, "resource": RECORD_1}
    assert client.post("/access/v1/evaluation", json=body).status_code == 401
    feed_reader = service_key(runtime, "changes:read")
    assert client.post("/access/v1/evaluation", json=body, headers=feed_reader).status_code == 403
    assert client.post("/access/v1/evaluation", json=body, headers=auth("bob")).status_code == 403  # about someone else
    assert _decision(client, body, auth("alice")) is True  # about itself
    for path, search in [("search/resource", {"subject": ALICE, "action": READ, "resource": {"type": "algorithm"}}),
                         ("search/action", {"subject": ALICE, "resource": RECORD_1})]:
        assert client.post("/access/v1/" + path, json=search, headers=auth("bob")).status_code == 403
        assert client.post("/access/v1/" + path, json=search, headers=auth("alice")).status_code == 200
    outsider = client.post("/access/v1/search/subject", json={"subject": {"type": "user"}, "action": READ,
                                                                "resource": RECORD_1}, headers=auth("mallory"))
    assert outsider.status_code == 403  # who may read a resource is for those who may read it


# ---- access evaluations -------------------------------------------------------------------

def _decisions(client: TestClient, body: Any, headers: dict[str, str]) -> list[bool]:
    answer = _post(client, "evaluations", body, headers)
    return [item["decision"] for item in answer["evaluations"]]


def test_evaluations_with_defaults_and_overrides_in_order(client: TestClient, pdp: dict[str, str]) -> None:
    assert _decisions(client, {"subject": BOB, "resource": RECORD_1,
                               "evaluations": [{"action": READ}, {"action": WRITE}]}, pdp) == [True, False]
    assert _decisions(client, {"evaluations": [
        {"subject": ALICE, "action": READ, "resource": RECORD_1},
        {"subject": BOB, "action": WRITE, "resource": RECORD_1},
    ]}, pdp) == [True, False]
    assert _decisions(client, {"subject": ALICE, "action": WRITE, "resource": RECORD_1, "evaluations": [
        {}, {"subject": BOB}, {"resource": RECORD_2}, {"action": DELETE},
    ]}, pdp) == [True, False, True, False]
    with_context = {"subject": ALICE, "action": READ, "context": {"time": "2025-06-27T18:03-07:00"}, "evaluations": [
        {"resource": RECORD_1}, {"resource": RECORD_2, "context": {"source": "batch-override"}},
    ]}
    assert _decisions(client, with_context, pdp) == [True, True]


def test_a_malformed_item_is_a_denied_item(client: TestClient, pdp: dict[str, str]) -> None:
    body = {"subject": ALICE, "action": READ, "options": {"evaluations_semantic": "execute_all"},
            "evaluations": [{"resource": RECORD_1}, {}, {"resource": {"type": "algorithm"}}]}
    answer = _post(client, "evaluations", body, pdp)["evaluations"]
    assert [item["decision"] for item in answer] == [True, False, False]
    assert answer[1]["context"]["error"]["status"] == 400
    assert "resource" in answer[1]["context"]["error"]["message"]


def test_without_evaluations_it_is_a_single_evaluation(client: TestClient, pdp: dict[str, str]) -> None:
    extras: list[dict[str, Any]] = [{}, {"evaluations": []}]
    for extra in extras:
        answer = _post(client, "evaluations", {"subject": ALICE, "action": READ, "resource": RECORD_1, **extra}, pdp)
        assert answer["decision"] is True and "evaluations" not in answer
    missing = client.post("/access/v1/evaluations", json={"subject": ALICE, "action": READ}, headers=pdp)
    assert missing.status_code == 400


def test_short_circuit_semantics(client: TestClient, pdp: dict[str, str]) -> None:
    items = [{"subject": ALICE}, {"subject": BOB}, {"subject": ALICE}]
    body = {"action": WRITE, "resource": RECORD_1, "evaluations": items}
    assert _decisions(client, body, pdp) == [True, False, True]
    assert _decisions(client, {**body, "options": {"evaluations_semantic": "deny_on_first_deny"}}, pdp) == [True, False]
    assert _decisions(client, {**body, "options": {"evaluations_semantic": "permit_on_first_permit"}}, pdp) == [True]
    unknown = client.post("/access/v1/evaluations", json={**body, "options": {"evaluations_semantic": "maybe"}},
                          headers=pdp)
    assert unknown.status_code == 400
    assert unknown.json()["errors"][0]["field"] == "options.evaluations_semantic"


def test_more_than_1000_evaluations_is_400(client: TestClient, pdp: dict[str, str]) -> None:
    body = {"subject": ALICE, "action": READ, "evaluations": [{"resource": RECORD_1}] * 1001}
    assert client.post("/access/v1/evaluations", json=body, headers=pdp).status_code == 400


# ---- search -------------------------------------------------------------------------------

def _results(client: TestClient, path: str, body: Any, headers: dict[str, str]) -> list[dict[str, Any]]:
    answer = _post(client, "search/" + path, body, headers)
    assert isinstance(answer["results"], list)
    assert isinstance(answer["page"]["next_token"], str)
    return list(answer["results"])


def test_subject_search(client: TestClient, pdp: dict[str, str]) -> None:
    body = {"subject": {"type": "user"}, "action": READ, "resource": RECORD_1}
    expected = [{"type": "user", "id": u} for u in ("alice", "bob", "owen")]
    assert _results(client, "subject", body, pdp) == expected
    assert _results(client, "subject", {**body, "context": {"ip": "192.168.1.1"}}, pdp) == expected
    assert _results(client, "subject", {**body, "subject": ALICE}, pdp) == expected  # subject.id is ignored
    assert _results(client, "subject", {**body, "action": WRITE}, pdp) == [ALICE, {"type": "user", "id": "owen"}]
    assert _results(client, "subject", {**body, "subject": {"type": "spaceship"}}, pdp) == []
    assert _results(client, "subject", {**body, "resource": {"type": "algorithm", "id": "none"}}, pdp) == []


def test_resource_search(client: TestClient, pdp: dict[str, str]) -> None:
    body = {"subject": ALICE, "action": READ, "resource": {"type": "algorithm"}}
    assert _results(client, "resource", body, pdp) == [RECORD_1, RECORD_2]
    assert _results(client, "resource", {**body, "resource": RECORD_1}, pdp) == [RECORD_1, RECORD_2]  # id ignored
    assert _results(client, "resource", {**body, "action": WRITE, "subject": BOB}, pdp) == []
    assert _results(client, "resource", {**body, "resource": {"type": "spaceship"}}, pdp) == []
    assert _results(client, "resource", {**body, "subject": {"type": "user", "id": "nonexistent-user"}}, pdp) == []


def test_action_search(client: TestClient, pdp: dict[str, str]) -> None:
    names = [r["name"] for r in _results(client, "action", {"subject": ALICE, "resource": RECORD_1}, pdp)]
    assert {"read", "update"} <= set(names) and "delete" not in names
    assert [r["name"] for r in _results(client, "action", {"subject": BOB, "resource": RECORD_1}, pdp)] == ["read"]
    unknown = {"subject": {"type": "user", "id": "nonexistent-user"}, "resource": RECORD_1}
    assert _results(client, "action", unknown, pdp) == []
    assert _results(client, "action", {"subject": ALICE, "resource": {"type": "spaceship", "id": "x"}}, pdp) == []


def test_search_pages_with_tokens_bound_to_the_query(client: TestClient, pdp: dict[str, str]) -> None:
    body = {"subject": {"type": "user"}, "action": READ, "resource": RECORD_1, "page": {"limit": 1}}
    seen: list[str] = []
    token = None
    while True:
        page = {"limit": 1, **({"token": token} if token else {})}
        answer = _post(client, "search/subject", {**body, "page": page}, pdp)
        assert answer["page"]["count"] == len(answer["results"]) <= 1
        seen += [r["id"] for r in answer["results"]]
        token = answer["page"]["next_token"]
        if token == "":
            break
    assert seen == ["alice", "bob", "owen"]
    first = _post(client, "search/subject", body, pdp)["page"]["next_token"]
    changed = {**body, "action": WRITE, "page": {"token": first}}  # another query with this token: an error
    assert client.post("/access/v1/search/subject", json=changed, headers=pdp).status_code == 400
    forged = {**body, "page": {"token": first[:-1] + ("A" if first[-1] != "A" else "B")}}
    assert client.post("/access/v1/search/subject", json=forged, headers=pdp).status_code == 400


@pytest.mark.parametrize(("path", "body"), [
    ("subject", {"subject": {"type": "user"}, "resource": RECORD_1}),
    ("subject", {"subject": {"type": "user"}, "action": READ, "resource": {"type": "algorithm"}}),
    ("resource", {"action": READ, "resource": {"type": "algorithm"}}),
    ("resource", {"subject": {"type": "user"}, "action": READ, "resource": {"type": "algorithm"}}),
    ("action", {"subject": ALICE}),
    ("action", {"subject": {"type": "user"}, "resource": RECORD_1}),
    ("resource", {"subject": ALICE, "action": READ, "resource": {"type": "algorithm"}, "page": {"limit": 0}}),
])
def test_search_without_a_required_input_is_400(client: TestClient, pdp: dict[str, str], path: str, body: Any) -> None:
    response = client.post("/access/v1/search/" + path, json=body, headers=pdp)
    assert response.status_code == 400, response.text


# ---- metadata -----------------------------------------------------------------------------

def test_metadata_is_public_and_names_every_endpoint(client: TestClient) -> None:
    response = client.get("/.well-known/authzen-configuration")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    metadata = response.json()
    base = metadata["policy_decision_point"]
    assert base == "http://testserver"
    for name, path in [("access_evaluation_endpoint", "evaluation"), ("access_evaluations_endpoint", "evaluations"),
                       ("search_subject_endpoint", "search/subject"), ("search_resource_endpoint", "search/resource"),
                       ("search_action_endpoint", "search/action")]:
        assert metadata[name] == f"{base}/access/v1/{path}"
