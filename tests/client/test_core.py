"""The sans-IO core without a network: its flows driven step by step, and both clients over one fake server.

The first half answers each step of a flow by hand (what a driver would do), so retries,
paging and the change feed's resume are checked as the requests they produce. The second
half runs `AuthzClient` and `AsyncAuthzClient` over the same scripted transport and asserts
they send the very same requests: the two flavours share one request loop.
"""

import asyncio
import json
import random
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from authz_client import (
    AsyncAuthzClient,
    AuthzClient,
    Backoff,
    DecisionCache,
    Forbidden,
    InvalidRequest,
    Retry,
    Unauthenticated,
    Unavailable,
)
from authz_client import _core as core

JSON = {"content-type": "application/json"}


def reply(status: int, body: Any, headers: dict[str, str] | None = None) -> core.Reply:
    return core.Reply(status, JSON | (headers or {}), json.dumps(body).encode())


def problem(status: int, detail: str, **extra: Any) -> core.Reply:
    return reply(status, {"type": "urn:authz:problem:x", "title": "t", "status": status, "detail": detail, **extra})


class Driver:
    """Runs a flow, answering each step with the next scripted outcome; records the steps."""

    def __init__(self, flow: Any) -> None:
        self.flow = flow
        self.steps: list[core.Step] = []
        self.emitted: list[Any] = []

    def run(self, outcomes: list[core.Outcome]) -> Any:
        answers = iter(outcomes)
        outcome: core.Outcome = None
        try:
            while True:
                step = self.flow.send(outcome)
                self.steps.append(step)
                if isinstance(step, core.Emit):
                    self.emitted.append(step.value)
                    outcome = None
                elif isinstance(step, core.Sleep):
                    outcome = None
                else:
                    outcome = next(answers)
        except StopIteration as done:
            return done.value

    def requests(self) -> list[core.Request]:
        return [s.request for s in self.steps if isinstance(s, core.Send | core.Open)]

    def sleeps(self) -> list[float]:
        return [s.seconds for s in self.steps if isinstance(s, core.Sleep)]


def session(**kwargs: Any) -> core.Session:
    return core.Session("key-1", None, Retry(attempts=3, backoff=0.1, max_backoff=2.0), **kwargs)


def check_flow(s: core.Session, **kwargs: Any) -> Any:
    options = {"subject": None, "context": None, "min_revision": None, "explain": False} | kwargs
    return s.check("read", "algorithm:grover", **options)


# ---- retries -----------------------------------------------------------------------------------


def test_a_503_is_retried_with_backoff_and_retry_after_then_answered() -> None:
    driver = Driver(check_flow(session()))
    result = driver.run([problem(503, "behind"), problem(503, "behind"), reply(200, {"allowed": True, "revision": 7})])
    assert result.allowed and result.revision == 7
    assert len(driver.requests()) == 3
    assert len(driver.sleeps()) == 2 and all(0 < s <= 2.0 for s in driver.sleeps())
    sent = driver.requests()[0]
    assert (sent.method, sent.path, sent.json) == ("POST", "/v1/check", {
        "action": "read", "resource": {"type": "algorithm", "id": "grover"}})
    assert sent.headers["Authorization"] == "Bearer key-1"

    honoured = Driver(check_flow(session()))
    honoured.run([core.Reply(503, {"retry-after": "1.5"}, b"{}"), reply(200, {"allowed": False, "revision": 1})])
    assert honoured.sleeps() == [1.5]  # the server's Retry-After, longer than the backoff


def test_retries_are_bounded_and_no_answer_is_unavailable_without_a_status() -> None:
    driver = Driver(check_flow(session()))
    with pytest.raises(Unavailable) as caught:
        driver.run([problem(503, "behind")] * 3)
    assert caught.value.status == 503 and caught.value.detail == "behind"
    assert len(driver.requests()) == 3 and len(driver.sleeps()) == 2  # no sleep after the last attempt

    unreachable = Driver(check_flow(session()))
    with pytest.raises(Unavailable) as caught:
        unreachable.run([core.Failed("ConnectError")] * 3)
    assert caught.value.status is None and "ConnectError" in caught.value.detail


def test_other_errors_are_raised_at_once_and_typed() -> None:
    for answer, kind in [(problem(422, "bad", errors=[{"field": "action", "message": "m"}]), InvalidRequest),
                         (problem(401, "invalid token"), Unauthenticated), (problem(403, "no"), Forbidden)]:
        driver = Driver(check_flow(session()))
        with pytest.raises(kind):
            driver.run([answer])
        assert len(driver.requests()) == 1 and driver.sleeps() == []


def test_a_cached_answer_sends_nothing_and_never_serves_older_than_min_revision() -> None:
    s = session(cache=DecisionCache(ttl=60))
    Driver(check_flow(s)).run([reply(200, {"allowed": True, "revision": 5})])
    hit = Driver(check_flow(s, min_revision=5))
    assert hit.run([]).cached and hit.requests() == []
    miss = Driver(check_flow(s, min_revision=6))
    assert not miss.run([reply(200, {"allowed": False, "revision": 6})]).cached
    other = Driver(check_flow(s.as_caller("key-2", None)))  # another caller never reads this one's answers
    assert not other.run([reply(200, {"allowed": True, "revision": 6})]).cached


# ---- paging ------------------------------------------------------------------------------------


def test_paging_emits_every_item_and_passes_each_cursor_on() -> None:
    driver = Driver(session().iter_resources("read", "algorithm", subject="alice", context=None, page_size=2))
    driver.run([
        reply(200, {"resources": ["a", "b"], "revision": 3, "next_cursor": "c1"}),
        problem(503, "behind"),  # a page is retried like any call
        reply(200, {"resources": ["c", "d"], "revision": 3, "next_cursor": "c2"}),
        reply(200, {"resources": ["e"], "revision": 4, "next_cursor": None}),
    ])
    assert driver.emitted == ["a", "b", "c", "d", "e"]
    cursors = [r.json.get("cursor") for r in driver.requests()]
    assert cursors == [None, "c1", "c1", "c2"]
    assert all(r.json["limit"] == 2 and r.json["subject"] == "alice" for r in driver.requests())


# ---- the change feed -----------------------------------------------------------------------------


def events(*revisions: int) -> list[str]:
    lines = ["retry: 1000", ""]
    for revision in revisions:
        data = json.dumps({"revision": revision, "at": "t", "kind": "relationships", "ops": []})
        lines += [f"id: {revision}", "event: change", f"data: {data}", "", ": keep-alive", ""]
    return lines


def test_the_feed_resumes_after_the_last_change_whatever_breaks() -> None:
    driver = Driver(session().follow_changes(10, Backoff(first=0.01)))
    with pytest.raises(Forbidden):
        driver.run([
            core.Opened(), *events(11, 12), None,           # the stream ends (a restart)
            core.Failed("ConnectError"),                   # nothing listens yet
            problem(503, "starting"),                      # not ready yet
            core.Opened(), *events(12, 13)[:6], core.Failed("RemoteProtocolError"),  # 12 again (ignored), then cut
            core.Opened(), *events(13), None,
            problem(403, "the key lacks changes:read"),    # revoked: raised, not retried
        ])
    assert [c.revision for c in driver.emitted] == [11, 12, 13]
    opens = driver.requests()
    assert [(r.params or {})["after"] for r in opens] == ["10", "12", "12", "12", "12", "13"]
    assert [r.headers.get("Last-Event-ID") for r in opens] == ["10", "12", "12", "12", "12", "13"]
    assert all(r.headers["Accept"] == "text/event-stream" and r.timeout == core.FEED_TIMEOUT for r in opens)
    assert len(driver.sleeps()) == 5  # one before each reconnect, none before raising


def test_the_feed_backoff_doubles_while_failing_and_resets_after_a_change() -> None:
    backoff = Backoff(first=1.0, longest=4.0)
    driver = Driver(session().follow_changes(0, backoff))
    with pytest.raises(Unauthenticated):
        driver.run([core.Failed("ConnectError")] * 4 + [core.Opened(), *events(1), None, problem(401, "expired")])
    first_four, after_change = driver.sleeps()[:4], driver.sleeps()[4]
    assert 0.5 <= first_four[0] <= 1.0 and 1.0 <= first_four[1] <= 2.0
    assert 2.0 <= first_four[2] <= 4.0 and 2.0 <= first_four[3] <= 4.0  # doubled, capped at `longest`
    assert 0.5 <= after_change <= 1.0  # a change came in: back to `first`
    assert "Last-Event-ID" not in driver.requests()[0].headers  # from the start: no id to resume after


def test_delays_leave_the_applications_random_alone() -> None:
    # An application that seeds the global `random` (or Hypothesis, which checks that nothing moves it)
    # must get the same numbers whatever the client's retries and reconnects did meanwhile.
    before = random.getstate()
    Retry(attempts=3, backoff=0.1).delay(1, None)
    Backoff().next()
    assert random.getstate() == before


# ---- one loop, two flavours --------------------------------------------------------------------


def scripted(answers: list[Callable[[httpx.Request], httpx.Response]]) -> tuple[httpx.MockTransport, list[str]]:
    """A transport answering each request with the next answer; records method, URL, headers and body."""
    seen: list[str] = []
    queue: Iterator[Callable[[httpx.Request], httpx.Response]] = iter(answers)

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(json.dumps([request.method, str(request.url), request.headers.get("authorization"),
                                request.headers.get("last-event-id"), request.content.decode()]))
        return next(queue)(request)

    return httpx.MockTransport(handle), seen


def answer(status: int, body: Any, headers: dict[str, str] | None = None) -> Callable[[httpx.Request], httpx.Response]:
    return lambda _: httpx.Response(status, json=body, headers=headers)


def stream(*revisions: int) -> Callable[[httpx.Request], httpx.Response]:
    body = "\n".join(events(*revisions)) + "\n"
    return lambda _: httpx.Response(200, content=body.encode(), headers={"content-type": "text/event-stream"})


SCRIPT = [
    answer(503, {"detail": "behind"}, {"retry-after": "0"}), answer(200, {"allowed": True, "revision": 2}),
    answer(200, {"resources": ["a"], "revision": 2, "next_cursor": "n"}),
    answer(200, {"resources": ["b"], "revision": 2, "next_cursor": None}),
    answer(422, {"detail": "bad", "errors": [{"field": "action", "message": "m"}]}),
    stream(1, 2), answer(502, {}), stream(2, 3),
]
RETRY = Retry(attempts=2, backoff=0.0)


def test_the_sync_and_async_clients_send_the_same_requests_and_read_the_same_answers() -> None:
    transport, sync_seen = scripted(SCRIPT)
    with AuthzClient("http://authz", "k", retry=RETRY, http_client=httpx.Client(
            base_url="http://authz", transport=transport)) as client:
        sync_results: list[Any] = [client.check("read", "algorithm:x").allowed,
                                   list(client.iter_resources("read", "algorithm", page_size=1))]
        with pytest.raises(InvalidRequest):
            client.check("Read!", "algorithm:x")
        changes = client.follow_changes(0, backoff=Backoff(first=0.001, longest=0.001))
        sync_results.append([next(changes).revision for _ in range(3)])
        changes.close()

    async def scenario() -> tuple[list[Any], list[str]]:
        transport, seen = scripted(SCRIPT)
        async with AsyncAuthzClient("http://authz", "k", retry=RETRY, http_client=httpx.AsyncClient(
                base_url="http://authz", transport=transport)) as client:
            results: list[Any] = [(await client.check("read", "algorithm:x")).allowed,
                                  [r async for r in client.iter_resources("read", "algorithm", page_size=1)]]
            with pytest.raises(InvalidRequest):
                await client.check("Read!", "algorithm:x")
            revisions = []
            async for change in client.follow_changes(0, backoff=Backoff(first=0.001, longest=0.001)):
                revisions.append(change.revision)
                if len(revisions) == 3:
                    break
            results.append(revisions)
        return results, seen

    async_results, async_seen = asyncio.run(scenario())
    assert sync_results == async_results == [True, ["a", "b"], [1, 2, 3]]
    assert sync_seen == async_seen
    assert len(sync_seen) == 8  # check twice (503 retried), two pages, the 422, three feed connections
    assert json.loads(sync_seen[-1])[1:4] == ["http://authz/v1/changes?after=2", "Bearer k", "2"]
