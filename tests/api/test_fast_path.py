"""The decision fast path answers the plain valid request exactly as the FastAPI route does, and
leaves every other request to the route.

Each request is sent as it is, then again with `?explain=false` (a query string always takes
the route and changes nothing else). `authz_fast_path_total{outcome}` on /metrics says which
path answered each (`answered`, or why the fast path stepped aside), and the two answers must
be the same: status, body and the headers a caller reads.
"""

import logging
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from api.metrics import FAST_PATH_OUTCOMES
from authz.domain.limits import MAX_STORED_INT
from authz.services.runtime import Runtime
from authz.settings import Settings
from tests.conftest import ONE_DATABASE, add_member, auth, create_org, make_settings, service_key, user_token
from tests.metrics import by_label

pytestmark = ONE_DATABASE  # both paths answer from the replica: the database plays no part

HEADERS_THAT_MATTER = ("content-type", "content-length", "www-authenticate", "retry-after")
GROVER = {"type": "algorithm", "id": "grover"}
UNKNOWN_KEY = {"Authorization": "Bearer azk_" + "0" * 16 + "_" + "A" * 43}  # well-formed, never created


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url, min_revision_wait=0)  # a revision not reached: 503 at once


@pytest.fixture
def world(client: TestClient, runtime: Runtime) -> dict[str, Any]:
    org_id = create_org(client, "alice")
    add_member(runtime, org_id, "max", "maintainer")
    client.post("/v1/resources", json={"type": "algorithm", "id": "grover"}, headers=auth("alice", context=org_id))
    return {"org": org_id, "key": service_key(runtime, "check"), "admin": service_key(runtime, "admin")}


def fast_path_counts(client: TestClient) -> dict[str, float]:
    """authz_fast_path_total by outcome, as /metrics exports it."""
    counts = by_label(client.get("/metrics").text, "authz_fast_path_total", "outcome")
    assert counts, "authz_fast_path_total is not exported"
    return counts


def sent(client: TestClient, path: str, **request: Any) -> tuple[str, httpx.Response]:
    """The response, and the one fast-path outcome this request was counted under."""
    before = fast_path_counts(client)
    response = client.post(path, **request)
    after = fast_path_counts(client)
    counted = {outcome: after[outcome] - before.get(outcome, 0.0) for outcome in after
               if after[outcome] != before.get(outcome, 0.0)}
    assert list(counted.values()) == [1.0], counted
    return next(iter(counted)), response


def answer(response: httpx.Response) -> tuple[int, Any, dict[str, str]]:
    headers = {name: response.headers[name] for name in HEADERS_THAT_MATTER if name in response.headers}
    return response.status_code, response.json(), headers


def both_ways(client: TestClient, path: str, **request: Any) -> tuple[str, tuple[int, Any, dict[str, str]]]:
    """How the fast path took the request, and the answer, which the route gives identically."""
    outcome, as_sent = sent(client, path, **request)
    forced, by_route = sent(client, path + "?explain=false", **request)
    assert forced == "query_string"
    assert answer(as_sent) == answer(by_route), (path, request)
    return outcome, answer(as_sent)


def test_checks_answer_the_same_both_ways(client: TestClient, world: dict[str, Any]) -> None:
    key, org = world["key"], world["org"]
    json_header = {"Content-Type": "application/json"}
    cases: list[tuple[dict[str, Any], str, int]] = [
        ({"headers": key, "json": {"subject": "max", "action": "update", "resource": GROVER}}, "answered", 200),
        ({"headers": key, "json": {"subject": "max", "action": "delete", "resource": GROVER}}, "answered", 200),
        ({"headers": key, "json": {"subject": "max", "action": "create", "resource": {"type": "job"}, "context": org}},
         "answered", 200),
        ({"headers": key, "json": {"subject": "max", "action": "read", "resource": GROVER, "min_revision": 0}},
         "answered", 200),
        ({"headers": auth("max"), "json": {"action": "read", "resource": GROVER}}, "answered", 200),
        ({"headers": auth("max", context=org), "json": {"action": "create", "resource": {"type": "job"}}},
         "answered", 200),
        ({"headers": auth("max", context="org_" + "0" * 24), "json": {"action": "create", "resource": {"type": "job"}}},
         "answered", 200),  # a context it is no member of: not allowed
        ({"headers": {**key, "Content-Type": "application/merge-patch+json; charset=UTF-8"},
          "content": b'{"subject": "max", "action": "read", "resource": {"type": "job"}}'}, "answered", 200),
        # stepped aside: the route answers
        ({"headers": key, "json": {"subject": "*", "action": "read", "resource": GROVER}}, "refused", 422),
        ({"headers": key, "json": {"action": "read", "resource": GROVER}}, "refused", 422),  # a key names the subject
        ({"headers": world["admin"], "json": {"subject": "max", "action": "read", "resource": GROVER}},
         "refused", 403),  # no check scope
        ({"headers": auth("max"), "json": {"subject": "alice", "action": "read", "resource": GROVER}},
         "refused", 403),  # a user asks only about itself
        ({"headers": key, "json": {"subject": "max", "action": "read", "resource": GROVER, "extra": 1}},
         "invalid_body", 422),
        ({"headers": key, "json": {"subject": "max", "action": "read", "resource": {"type": "job", "id": 2**70}}},
         "invalid_body", 422),
        ({"headers": {**key, **json_header}, "content": b'{"subject": "max", "action": '}, "invalid_body", 400),
        ({"headers": {**key, **json_header}, "content": b""}, "invalid_body", 422),
        ({"headers": {**key, "X-Account-Context": "x" * 2001},
          "json": {"subject": "max", "action": "read", "resource": GROVER}}, "invalid_header", 422),
        ({"headers": {**key, "Content-Type": "application/x-www-form-urlencoded"}, "content": b"action=read"},
         "not_json", 415),
        ({"headers": {"Authorization": "Bearer azk_nope"},
          "json": {"subject": "max", "action": "read", "resource": GROVER}}, "unauthenticated", 401),
        ({"headers": {"Authorization": f"Bearer {user_token('max', secret='another-secret-' + 'y' * 32)}"},
          "json": {"action": "read", "resource": GROVER}}, "unauthenticated", 401),
        ({"json": {"subject": "max", "action": "read", "resource": GROVER}}, "unauthenticated", 401),
        ({"json": {"action": 5}}, "invalid_body", 401),  # the credential first, as on every route
        ({"headers": UNKNOWN_KEY, "json": {"subject": "max", "action": "read", "resource": GROVER}},
         "unknown_service_key", 401),
        ({"headers": key,
          "json": {"subject": "max", "action": "read", "resource": GROVER, "min_revision": MAX_STORED_INT}},
         "min_revision_wait", 503),
    ]
    for request, expected_outcome, expected_status in cases:
        outcome, (status, body, headers) = both_ways(client, "/v1/check", **request)
        assert (outcome, status) == (expected_outcome, expected_status), (request, body)
        if status == 200:
            assert set(body) == {"allowed", "revision"} and headers["content-type"] == "application/json"
        else:
            assert headers["content-type"] == "application/problem+json", (request, body)


def test_a_body_without_content_type_is_read_as_json_by_the_route(client: TestClient, world: dict[str, Any]) -> None:
    """As /v1/check always has: the fast path leaves it to the route, which answers it."""
    content = b'{"subject": "max", "action": "update", "resource": {"type": "algorithm", "id": "grover"}}'
    request = httpx.Request("POST", "http://testserver/v1/check", content=content, headers=world["key"])
    assert "content-type" not in request.headers
    before = fast_path_counts(client)
    response = client.send(request)
    assert response.status_code == 200, response.text
    assert response.json()["allowed"] is True
    assert fast_path_counts(client)["not_json"] == before["not_json"] + 1


def test_batches_answer_the_same_both_ways(client: TestClient, world: dict[str, Any]) -> None:
    key = world["key"]
    item = {"subject": "max", "action": "update", "resource": GROVER}
    cases: list[tuple[dict[str, Any], str, int]] = [
        ({"headers": key, "json": {"checks": [item, {**item, "action": "delete"}]}}, "answered", 200),
        ({"headers": key, "json": {"checks": []}}, "answered", 200),
        ({"headers": key, "json": {"checks": [item, {**item, "subject": "a,b"}]}}, "refused", 422),
        ({"headers": key, "json": {"checks": [item] * 1001}}, "invalid_body", 422),
        ({"headers": {**key, "X-Account-Context": "x" * 2001}, "json": {"checks": [item]}}, "invalid_header", 422),
        ({"headers": UNKNOWN_KEY, "json": {"checks": [item]}}, "unknown_service_key", 401),
        ({"headers": key, "json": {"checks": [item], "min_revision": MAX_STORED_INT}}, "min_revision_wait", 503),
    ]
    for request, expected_outcome, expected_status in cases:
        outcome, (status, body, _) = both_ways(client, "/v1/check/batch", **request)
        assert (outcome, status) == (expected_outcome, expected_status), (request, body)
    _, (_, body, _) = both_ways(client, "/v1/check/batch", headers=key,
                                json={"checks": [item, {**item, "action": "delete"}]})
    assert body["results"] == [{"allowed": True}, {"allowed": False}]


def test_a_stale_replica_is_left_to_the_route_which_fails_closed(client: TestClient, runtime: Runtime,
                                                                   world: dict[str, Any],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # The replica says it last read the database longer ago than allowed, whatever a background thread
    # does meanwhile (setting `last_sync` once raced the follower's last poll on a loaded machine).
    monkeypatch.setattr(runtime.replica, "staleness", lambda: runtime.settings.max_staleness + 1)
    for path, body in (("/v1/check", {"subject": "max", "action": "read", "resource": GROVER}),
                       ("/v1/check/batch", {"checks": [{"subject": "max", "action": "read", "resource": GROVER}]})):
        outcome, (status, _, headers) = both_ways(client, path, headers=world["key"], json=body)
        assert (outcome, status, headers["retry-after"]) == ("unavailable", 503, "1")


def test_explain_is_answered_by_the_route(client: TestClient, world: dict[str, Any]) -> None:
    outcome, response = sent(client, "/v1/check?explain=true", headers=world["key"],
                             json={"subject": "max", "action": "update", "resource": GROVER})
    assert outcome == "query_string"
    assert response.status_code == 200 and response.json()["explanation"]["role"] == "maintainer"
    outcome, response = sent(client, "/v1/check?explain=maybe", headers=world["key"],
                             json={"subject": "max", "action": "update", "resource": GROVER})
    assert (outcome, response.status_code, response.json()["errors"][0]["field"]) == ("query_string", 422, "explain")


def test_a_fault_of_the_fast_path_is_counted_logged_and_answered_by_the_route(
    client: TestClient, world: dict[str, Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("a bug in the fast path")

    monkeypatch.setattr("api.fast_path._snapshot_at", broken)  # used by the fast path only
    with caplog.at_level(logging.ERROR, logger="authz.api"):
        outcome, response = sent(client, "/v1/check", headers=world["key"],
                                 json={"subject": "max", "action": "update", "resource": GROVER})
    assert outcome == "error"
    assert response.status_code == 200 and response.json()["allowed"] is True
    [record] = [r for r in caplog.records if "fast path failed" in r.getMessage()]
    assert record.exc_info is not None and "a bug in the fast path" in str(record.exc_info[1])


def test_a_fault_in_the_shared_decision_code_is_a_logged_500_problem(
    client: TestClient, world: dict[str, Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(*_: object) -> bool:
        raise RuntimeError("a bug in the decision")

    monkeypatch.setattr("authz.services.decisions.check", broken)
    with caplog.at_level(logging.ERROR, logger="authz.api"):
        outcome, response = sent(client, "/v1/check", headers=world["key"],
                                 json={"subject": "max", "action": "update", "resource": GROVER})
    assert outcome == "error"
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert "a bug in the decision" not in response.text  # the traceback is in the log, not the answer
    messages = [r.getMessage() for r in caplog.records if r.exc_info]
    assert any("fast path failed" in m for m in messages) and "unhandled error" in messages


def test_every_outcome_is_exported_and_the_fast_path_is_counted_and_logged_like_the_route(
    client: TestClient, world: dict[str, Any],
) -> None:
    assert set(fast_path_counts(client)) == set(FAST_PATH_OUTCOMES)
    before = fast_path_counts(client)["answered"]
    client.post(
        "/v1/check",
        json={"subject": "max", "action": "read", "resource": {"type": "job"}, "context": "personal"},
        headers=world["key"],
    )
    metrics = client.get("/metrics").text
    assert 'authz_http_requests_total{method="POST",route="/v1/check",status="200"} 1.0' in metrics
    assert 'authz_decisions_total{outcome="allowed"} 1.0' in metrics
    assert fast_path_counts(client)["answered"] == before + 1
