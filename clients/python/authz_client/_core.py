"""The sans-IO core that both clients run: every request, retry, page and reconnect, as data.

An operation is a generator ("flow") that yields steps and receives their outcomes:

    Send(request)  -> Reply | Failed           one request, its whole answer
    Open(request)  -> Reply | Opened | Failed  a streamed request (a Reply only when it is not 200)
    NEXT_LINE      -> str | None | Failed      the next line of the open stream (None: it ended)
    Sleep(seconds) -> None
    Emit(value)    -> None                     one item for the caller (paging, the change feed)

and returns its result. `AuthzClient` and `AsyncAuthzClient` only perform the steps (with
httpx, blocking or awaiting); what to ask, how to read the answer, when to retry or
reconnect and from which revision is decided here once, and can be tested without a
network (tests/client/test_core.py). No module here imports httpx.
"""

import contextlib
import copy
import hashlib
import json
from collections.abc import Callable, Generator, Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Generic, Self, TypeVar

from authz_client.cache import DecisionCache
from authz_client.errors import AuthzError, Unavailable, error_for
from authz_client.jitter import JITTER
from authz_client.models import (
    BatchResult,
    Change,
    Check,
    CheckResult,
    Resource,
    ResourceLike,
    ResourceList,
    SubjectList,
)

T = TypeVar("T")
Item = TypeVar("Item")
USER_AGENT = "authz-client/1"
RETRY_STATUSES = frozenset({503})
CHANGES_PATH = "/v1/changes"
# The feed's server sends a keep-alive at least every 15 s, so a read may wait 60 s.
FEED_TIMEOUT = (5.0, 60.0)


# ---- the steps and their outcomes -----------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """An HTTP request, as data; `timeout` is (connect and write, read) seconds, None for the client's."""

    method: str
    path: str
    headers: Mapping[str, str]
    params: Mapping[str, str] | None = None
    json: Any = None
    timeout: tuple[float, float] | None = None


@dataclass(frozen=True)
class Reply:
    """A whole HTTP answer."""

    status: int
    headers: Mapping[str, str]  # lower-case names
    content: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.content)
        except ValueError:
            return None

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class Failed:
    """No (complete) HTTP answer: refused, reset, timed out. `kind` names the transport error."""

    kind: str


@dataclass(frozen=True)
class Opened:
    """A streamed request answered 200; its lines follow on NEXT_LINE."""


@dataclass(frozen=True)
class Send:
    request: Request


@dataclass(frozen=True)
class Open:
    request: Request


@dataclass(frozen=True)
class NextLine:
    pass


NEXT_LINE = NextLine()


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class Emit(Generic[Item]):
    value: Item


Step = Send | Open | NextLine | Sleep | Emit[Any]
Outcome = Reply | Failed | Opened | str | None
Flow = Generator[Step, Outcome, T]
ItemFlow = Generator[Step, Outcome, None]  # yields Emit(item) among its steps


# ---- policies: retries and reconnects ------------------------------------------------------


@dataclass(frozen=True)
class Retry:
    """Bounded retries of 503 answers and failed connections, with jittered exponential backoff.

    Every decision call is a read, so repeating it is safe. The wait before retry n is
    `backoff * 2**n` (at most `max_backoff`), from half to all of it at random, or the
    server's Retry-After when that is longer (still at most `max_backoff`).
    """

    attempts: int = 3
    backoff: float = 0.05
    max_backoff: float = 1.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.backoff < 0 or self.max_backoff < 0:
            raise ValueError("backoff must not be negative")

    def delay(self, attempt: int, retry_after: str | None) -> float:
        wait = min(self.max_backoff, self.backoff * (2.0**attempt)) * (0.5 + JITTER.random() / 2)
        if retry_after is not None:
            with contextlib.suppress(ValueError):  # an HTTP date or garbage: the backoff alone
                wait = max(wait, float(retry_after))
        return min(wait, self.max_backoff)


@dataclass
class Backoff:
    """Reconnect delays of a feed: doubling from `first` to `longest`, back to `first` after an event."""

    first: float = 0.2
    longest: float = 10.0
    current: float = 0.0

    def next(self) -> float:
        self.current = self.first if self.current == 0 else min(self.longest, self.current * 2)
        return self.current * (0.5 + JITTER.random() / 2)

    def reset(self) -> None:
        self.current = 0.0


# ---- reading answers -----------------------------------------------------------------------


@dataclass(frozen=True)
class Call(Generic[T]):
    """One decision-API call: its request body, how to read the answer, its cache key (checks only)."""

    path: str
    body: dict[str, Any]
    parse: Callable[[dict[str, Any]], T]
    params: dict[str, str] | None = None
    cache_key: Hashable | None = None
    min_revision: int | None = None


def error_of(reply: Reply) -> AuthzError:
    """The typed error of a non-200 answer, with its problem+json fields."""
    return error_for(reply.status, reply.json(), reply.text)


def unreachable(failed: Failed) -> Unavailable:
    """No HTTP answer at all: `status` is None."""
    error = Unavailable(f"authz is unreachable: {failed.kind}")
    error.status = None
    return error


def read_answer(reply: Reply, call: Call[T]) -> T:
    """The parsed answer of a 200, or the typed error of anything else."""
    if reply.status != 200:
        raise error_of(reply)
    data = reply.json()
    if not isinstance(data, dict):
        raise AuthzError("authz answered 200 without a JSON object", status=200)
    try:
        return call.parse(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise AuthzError(f"unexpected answer from authz: {type(exc).__name__}", status=200, body=data) from None


def feed_failure(reply: Reply) -> AuthzError | None:
    """None when a feed answer is worth retrying (5xx, 429); the error to raise otherwise (401, 403, 422)."""
    if reply.status >= 500 or reply.status == 429:
        return None
    return error_of(reply)


class EventParser:
    """Server-sent events, line by line: returns each complete `change` event's data as a Change."""

    def __init__(self) -> None:
        self._data: list[str] = []
        self._event = "message"

    def line(self, text: str) -> Change | None:
        if text == "":
            data, self._data = self._data, []
            event, self._event = self._event, "message"
            if not data or event != "change":
                return None
            return Change.from_json(json.loads("\n".join(data)))
        if text.startswith(":"):
            return None
        name, _, value = text.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        return None  # `id` repeats the revision the data carries; `retry` is the server's hint


# ---- the operations ------------------------------------------------------------------------


def fingerprint(credential: str | None) -> str:
    """Cache keys name the caller by a hash, so the cache never holds a credential."""
    return hashlib.sha256(credential.encode()).hexdigest()[:32] if credential else ""


def _with_given(body: dict[str, Any], **optional: Any) -> dict[str, Any]:
    """`body` plus each optional field the caller gave (absent fields keep the server's default)."""
    return body | {name: value for name, value in optional.items() if value is not None}


def _revision(data: dict[str, Any]) -> int:
    return int(data["revision"])


@dataclass(frozen=True)
class Session:
    """Who asks (credential, account context) and how (retries, cache): builds every operation's flow.

    Immutable; `as_caller` gives another caller's session sharing the retry policy and the cache.
    """

    credential: str | None = None
    account_context: str | None = None
    retry: Retry = field(default_factory=Retry)
    cache: DecisionCache | None = None

    @classmethod
    def configured(cls, credential: str | None, account_context: str | None, retry: Retry | None,
                   cache: DecisionCache | None, cache_ttl: float | None) -> "Session":
        """A client's session from its constructor's arguments (a given cache wins over `cache_ttl`)."""
        if cache is None and cache_ttl:
            cache = DecisionCache(cache_ttl)
        return cls(credential, account_context, retry or Retry(), cache)

    def as_caller(self, credential: str | None, account_context: str | None) -> "Session":
        return replace(self, credential=credential, account_context=account_context)

    def headers(self) -> dict[str, str]:
        values = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if self.credential:
            values["Authorization"] = f"Bearer {self.credential}"
        if self.account_context:
            values["X-Account-Context"] = self.account_context
        return values

    # -- one call, retried

    def send(self, call: Call[T]) -> Flow[T]:
        """POST the call; a 503 or no answer is retried `retry.attempts` times in all, then raised."""
        request = Request("POST", call.path, self.headers(), call.params, call.body)
        failure: AuthzError | None = None
        for attempt in range(self.retry.attempts):
            retry_after = None
            outcome = yield Send(request)
            if isinstance(outcome, Failed):
                failure = unreachable(outcome)
            else:
                assert isinstance(outcome, Reply)
                if outcome.status not in RETRY_STATUSES:
                    return read_answer(outcome, call)
                failure = error_of(outcome)
                retry_after = outcome.headers.get("retry-after")
            if attempt + 1 < self.retry.attempts:
                yield Sleep(self.retry.delay(attempt, retry_after))
        assert failure is not None
        raise failure

    # -- the decision API

    def check(self, action: str, resource: ResourceLike, *, subject: str | None, context: str | None,
              min_revision: int | None, explain: bool) -> Flow[CheckResult]:
        """A check, answered from the cache when it holds one at least as new as `min_revision`."""
        target = Resource.of(resource)
        body = _with_given({"action": action, "resource": target.to_json()},
                           subject=subject, context=context, min_revision=min_revision)

        def parse(data: dict[str, Any]) -> CheckResult:
            return CheckResult(bool(data["allowed"]), _revision(data), data.get("explanation"))

        key = None
        if self.cache is not None and not explain:
            key = (fingerprint(self.credential), self.account_context, subject, action, target.type, target.id, context)
            hit = self.cache.get(key, min_revision)
            if hit is not None:
                return CheckResult(hit.allowed, hit.revision, hit.explanation, cached=True)
        result = yield from self.send(Call("/v1/check", body, parse, {"explain": "true"} if explain else None))
        if self.cache is not None and key is not None:
            self.cache.put(key, result)
        return result

    def check_batch(self, checks: Sequence[Check], min_revision: int | None) -> Flow[BatchResult]:
        body = _with_given({"checks": [c.to_json() for c in checks]}, min_revision=min_revision)
        return self.send(Call("/v1/check/batch", body, lambda data: BatchResult(
            tuple(bool(r["allowed"]) for r in data["results"]), _revision(data))))

    def list_resources(self, action: str, resource_type: str, *, subject: str | None, context: str | None,
                       min_revision: int | None, limit: int | None, cursor: str | None) -> Flow[ResourceList]:
        body = _with_given({"action": action, "type": resource_type}, subject=subject, context=context,
                           min_revision=min_revision, limit=limit, cursor=cursor)
        return self.send(Call("/v1/list-resources", body, lambda data: ResourceList(
            tuple(str(r) for r in data["resources"]), _revision(data), data.get("next_cursor"))))

    def list_subjects(self, action: str, resource: ResourceLike, *, min_revision: int | None, limit: int | None,
                      cursor: str | None) -> Flow[SubjectList]:
        body = _with_given({"action": action, "resource": Resource.of(resource).to_json()},
                           min_revision=min_revision, limit=limit, cursor=cursor)
        return self.send(Call("/v1/list-subjects", body, lambda data: SubjectList(
            tuple(str(s) for s in data["subjects"]), _revision(data), data.get("next_cursor"))))

    def iter_resources(self, action: str, resource_type: str, *, subject: str | None, context: str | None,
                       page_size: int | None) -> ItemFlow:
        """Every resource id, page after page: emits each, fetching the next page when they run out."""
        cursor: str | None = None
        while True:
            page = yield from self.list_resources(action, resource_type, subject=subject, context=context,
                                                  min_revision=None, limit=page_size, cursor=cursor)
            for resource_id in page.resources:
                yield Emit(resource_id)
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def iter_subjects(self, action: str, resource: ResourceLike, *, page_size: int | None) -> ItemFlow:
        cursor: str | None = None
        while True:
            page = yield from self.list_subjects(action, resource, min_revision=None, limit=page_size, cursor=cursor)
            for subject in page.subjects:
                yield Emit(subject)
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    # -- the change feed

    def feed_request(self, last: int) -> Request:
        headers = self.headers() | {"Accept": "text/event-stream"}
        if last > 0:
            headers["Last-Event-ID"] = str(last)
        return Request("GET", CHANGES_PATH, headers, {"after": str(last)}, timeout=FEED_TIMEOUT)

    def follow_changes(self, after: int, backoff: Backoff) -> ItemFlow:
        """Emits every change after revision `after`, in order, for ever.

        A failed connection, a stream that ends or breaks, a 5xx or 429 reconnects after a
        backoff delay from the last revision emitted, so nothing is lost or repeated; any
        other answer (401, 403, 422) is raised.
        """
        last = after
        while True:
            outcome = yield Open(self.feed_request(last))
            if isinstance(outcome, Reply):
                failure = feed_failure(outcome)
                if failure is not None:
                    raise failure
            elif isinstance(outcome, Opened):
                parser = EventParser()
                while isinstance(line := (yield NEXT_LINE), str):
                    change = parser.line(line)
                    if change is not None and change.revision > last:
                        last = change.revision
                        backoff.reset()
                        yield Emit(change)
            yield Sleep(backoff.next())


class CallerViews:
    """`with_credential`, the same for the sync and the async client (the flavours differ only in I/O)."""

    _session: Session
    _owns_http: bool

    def with_credential(self, credential: str | None, *, account_context: str | None = None) -> Self:
        """The same connections and cache, asking as another caller (in another account context)."""
        view = copy.copy(self)
        view._owns_http = False  # the original closes the connections
        view._session = self._session.as_caller(credential, account_context)
        return view
