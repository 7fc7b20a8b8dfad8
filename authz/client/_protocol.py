"""What the sync and async clients share: request bodies, answers, errors, retry delays.

Only sending and sleeping differ between the two; everything else lives here so they
cannot drift apart.
"""

import hashlib
import json
import random
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import httpx

from authz.client.errors import AuthzError, Unavailable, error_for
from authz.client.models import BatchResult, Change, Check, CheckResult, Resource, ResourceList, SubjectList

T = TypeVar("T")
USER_AGENT = "authz-client/1"
RETRY_STATUSES = frozenset({503})


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
        wait = min(self.max_backoff, self.backoff * (2**attempt)) * (0.5 + random.random() / 2)  # noqa: S311
        if retry_after is not None:
            try:
                wait = max(wait, float(retry_after))
            except ValueError:
                pass
        return min(wait, self.max_backoff)


@dataclass(frozen=True)
class Call(Generic[T]):
    """One API call: where, what, how to read the answer, and its cache key (checks only)."""

    path: str
    body: dict[str, Any]
    parse: Callable[[dict[str, Any]], T]
    params: dict[str, str] | None = None
    cache_key: Hashable | None = None
    min_revision: int | None = None


def fingerprint(credential: str | None) -> str:
    """Cache keys name the caller by a hash, so the cache never holds a credential."""
    return hashlib.sha256(credential.encode()).hexdigest()[:32] if credential else ""


def headers(credential: str | None, account_context: str | None) -> dict[str, str]:
    values = {"Accept": "application/json", "User-Agent": USER_AGENT}
    if credential:
        values["Authorization"] = f"Bearer {credential}"
    if account_context:
        values["X-Account-Context"] = account_context
    return values


def _revision(data: dict[str, Any]) -> int:
    return int(data["revision"])


def check_call(
    caller: str, account_context: str | None, action: str, resource: Resource, *,
    subject: str | None, context: str | None, min_revision: int | None, explain: bool, cacheable: bool,
) -> Call[CheckResult]:
    body = _with_given({"action": action, "resource": resource.to_json()},
                       subject=subject, context=context, min_revision=min_revision)

    def parse(data: dict[str, Any]) -> CheckResult:
        return CheckResult(bool(data["allowed"]), _revision(data), data.get("explanation"))

    key = (caller, account_context, subject, action, resource.type, resource.id, context) if cacheable and not explain else None
    return Call("/v1/check", body, parse, {"explain": "true"} if explain else None, key, min_revision)


def batch_call(checks: Sequence[Check], min_revision: int | None) -> Call[BatchResult]:
    body = _with_given({"checks": [c.to_json() for c in checks]}, min_revision=min_revision)

    def parse(data: dict[str, Any]) -> BatchResult:
        return BatchResult(tuple(bool(r["allowed"]) for r in data["results"]), _revision(data))

    return Call("/v1/check/batch", body, parse)


def list_resources_call(action: str, resource_type: str, *, subject: str | None, context: str | None,
                        min_revision: int | None, limit: int | None = None,
                        cursor: str | None = None) -> Call[ResourceList]:
    body = _with_given({"action": action, "type": resource_type}, subject=subject, context=context,
                       min_revision=min_revision, limit=limit, cursor=cursor)
    return Call("/v1/list-resources", body, lambda data: ResourceList(
        tuple(str(r) for r in data["resources"]), _revision(data), data.get("next_cursor")))


def list_subjects_call(action: str, resource: Resource, min_revision: int | None, limit: int | None = None,
                       cursor: str | None = None) -> Call[SubjectList]:
    body = _with_given({"action": action, "resource": resource.to_json()}, min_revision=min_revision,
                       limit=limit, cursor=cursor)
    return Call("/v1/list-subjects", body, lambda data: SubjectList(
        tuple(str(s) for s in data["subjects"]), _revision(data), data.get("next_cursor")))


# ---- the change feed (server-sent events) ---------------------------------------------------

CHANGES_PATH = "/v1/changes"
FEED_TIMEOUT = httpx.Timeout(5.0, read=60.0)  # the server sends a keep-alive at least every 15 s


def feed_headers(credential: str | None, last_revision: int) -> dict[str, str]:
    values = headers(credential, None) | {"Accept": "text/event-stream"}
    if last_revision > 0:
        values["Last-Event-ID"] = str(last_revision)
    return values


class EventParser:
    """Server-sent events, line by line: yields the `data` of each complete `change` event with its id."""

    def __init__(self) -> None:
        self._data: list[str] = []
        self._id: str | None = None
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
        elif name == "id":
            self._id = value
        return None


def feed_failure(response: httpx.Response) -> AuthzError | None:
    """None when a feed answer is worth retrying (5xx, 429); the error to raise otherwise (401, 403, 422)."""
    if response.status_code == 200:
        return None
    if response.status_code >= 500 or response.status_code == 429:
        return None
    return error_of(response)


@dataclass
class Backoff:
    """Reconnect delays of a feed: doubling from `first` to `longest`, back to `first` after an event."""

    first: float = 0.2
    longest: float = 10.0
    current: float = 0.0

    def next(self) -> float:
        self.current = self.first if self.current == 0 else min(self.longest, self.current * 2)
        return self.current * (0.5 + random.random() / 2)  # noqa: S311

    def reset(self) -> None:
        self.current = 0.0


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def error_of(response: httpx.Response) -> AuthzError:
    """The typed error of a non-200 answer, with its problem+json fields."""
    return error_for(response.status_code, _json(response), response.text)


def read_answer(response: httpx.Response, call: Call[T]) -> T:
    """The parsed answer of a 200, or the typed error of anything else."""
    if response.status_code != 200:
        raise error_of(response)
    data = _json(response)
    if not isinstance(data, dict):
        raise AuthzError("authz answered 200 without a JSON object", status=200)
    try:
        return call.parse(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise AuthzError(f"unexpected answer from authz: {type(exc).__name__}", status=200, body=data) from None


def should_retry(response: httpx.Response) -> bool:
    return response.status_code in RETRY_STATUSES


def unreachable(exc: httpx.TransportError) -> Unavailable:
    """No HTTP answer at all (refused, reset, timed out): `status` is None."""
    error = Unavailable(f"authz is unreachable: {type(exc).__name__}")
    error.status = None
    return error


def _with_given(body: dict[str, Any], **optional: Any) -> dict[str, Any]:
    """`body` plus each optional field the caller gave (absent fields keep the server's default)."""
    return body | {name: value for name, value in optional.items() if value is not None}
