"""`AuthzClient`: the blocking client of the decision API, for scripts and threaded services."""

import copy
import time
from collections.abc import Iterator, Sequence
from typing import TypeVar

import httpx

from authz.client import _protocol as proto
from authz.client.cache import DecisionCache
from authz.client.errors import AuthzError
from authz.client.models import (
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
DEFAULT_TIMEOUT = httpx.Timeout(5.0, connect=2.0)


class AuthzClient:
    """Asks authz at `base_url` with `credential` (a service key `azk_...` or a user's token).

    One pooled HTTP connection set per client (reuse it; it is thread-safe). 503 answers and
    failed connections are retried with bounded backoff (`retry`). With `cache_ttl` set,
    `check` answers are kept that many seconds, never served older than a `min_revision`
    the caller passes. `with_credential` gives a view for another caller (a guard forwarding
    each request's token) sharing the connections and the cache.
    """

    def __init__(
        self,
        base_url: str,
        credential: str | None = None,
        *,
        account_context: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: proto.Retry | None = None,
        cache_ttl: float | None = None,
        cache: DecisionCache | None = None,
        http_client: httpx.Client | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._credential = credential
        self._account_context = account_context
        self._retry = retry or proto.Retry()
        self._cache = cache if cache is not None else (DecisionCache(cache_ttl) if cache_ttl else None)
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(
            base_url=self.base_url, timeout=timeout, limits=httpx.Limits(max_keepalive_connections=20)
        )

    # ---- lifecycle ------------------------------------------------------------------------

    def with_credential(self, credential: str | None, *, account_context: str | None = None) -> "AuthzClient":
        """The same connections and cache, asking as another caller (in another account context)."""
        view = copy.copy(self)
        view._credential = credential
        view._account_context = account_context
        view._owns_http = False
        return view

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> "AuthzClient":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # ---- the decision API -----------------------------------------------------------------

    def check(
        self,
        action: str,
        resource: ResourceLike,
        *,
        subject: str | None = None,
        context: str | None = None,
        min_revision: int | None = None,
        explain: bool = False,
    ) -> CheckResult:
        """May the subject (default: the caller itself) do `action` on `resource`?"""
        call = proto.check_call(
            proto.fingerprint(self._credential), self._account_context, action, Resource.of(resource),
            subject=subject, context=context, min_revision=min_revision, explain=explain,
            cacheable=self._cache is not None,
        )
        if self._cache is not None and call.cache_key is not None:
            hit = self._cache.get(call.cache_key, min_revision)
            if hit is not None:
                return CheckResult(hit.allowed, hit.revision, hit.explanation, cached=True)
        result = self._send(call)
        if self._cache is not None and call.cache_key is not None:
            self._cache.put(call.cache_key, result)
        return result

    def check_batch(self, checks: Sequence[Check], *, min_revision: int | None = None) -> BatchResult:
        """Up to 1000 questions in one round trip; the answers come back in order."""
        return self._send(proto.batch_call(checks, min_revision))

    def list_resources(
        self, action: str, resource_type: str, *, subject: str | None = None, context: str | None = None,
        min_revision: int | None = None, limit: int | None = None, cursor: str | None = None,
    ) -> ResourceList:
        """One page (by id) of the resources of `resource_type` the subject may do `action` on."""
        return self._send(proto.list_resources_call(
            action, resource_type, subject=subject, context=context, min_revision=min_revision,
            limit=limit, cursor=cursor))

    def iter_resources(
        self, action: str, resource_type: str, *, subject: str | None = None, context: str | None = None,
        page_size: int | None = None,
    ) -> Iterator[str]:
        """Every such resource id, page after page, each once (fetches the next page as you iterate)."""
        cursor: str | None = None
        while True:
            page = self.list_resources(action, resource_type, subject=subject, context=context,
                                       limit=page_size, cursor=cursor)
            yield from page.resources
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def list_subjects(
        self, action: str, resource: ResourceLike, *, min_revision: int | None = None, limit: int | None = None,
        cursor: str | None = None,
    ) -> SubjectList:
        """One page (by id) of the users that may do `action` on `resource`."""
        return self._send(proto.list_subjects_call(action, Resource.of(resource), min_revision, limit, cursor))

    def iter_subjects(self, action: str, resource: ResourceLike, *, page_size: int | None = None) -> Iterator[str]:
        """Every user id that may do `action` on `resource`, page after page."""
        cursor: str | None = None
        while True:
            page = self.list_subjects(action, resource, limit=page_size, cursor=cursor)
            yield from page.subjects
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def follow_changes(self, after: int = 0, *, backoff: proto.Backoff | None = None) -> Iterator[Change]:
        """Every change after revision `after`, in order, for ever: server-sent events that resume.

        A dropped connection, a restarting server or a 5xx is retried with backoff from the
        last revision received (`Last-Event-ID`), so no change is lost or repeated. A 401,
        403 or 422 is raised. Needs a service key with `changes:read`. Stop by breaking out.
        """
        last = after
        delays = backoff or proto.Backoff()
        while True:
            try:
                with self._http.stream("GET", proto.CHANGES_PATH, params={"after": last},
                                       headers=proto.feed_headers(self._credential, last),
                                       timeout=proto.FEED_TIMEOUT) as response:
                    if response.status_code != 200:
                        response.read()
                        failure = proto.feed_failure(response)
                        if failure is not None:
                            raise failure
                    else:
                        parser = proto.EventParser()
                        for line in response.iter_lines():
                            change = parser.line(line)
                            if change is not None and change.revision > last:
                                last = change.revision
                                delays.reset()
                                yield change
            except httpx.TransportError:
                pass
            time.sleep(delays.next())

    # ---- sending --------------------------------------------------------------------------

    def _send(self, call: proto.Call[T]) -> T:
        headers = proto.headers(self._credential, self._account_context)
        failure: AuthzError | None = None
        for attempt in range(self._retry.attempts):
            retry_after = None
            try:
                response = self._http.post(call.path, json=call.body, params=call.params, headers=headers)
            except httpx.TransportError as exc:
                failure = proto.unreachable(exc)
            else:
                if not proto.should_retry(response):
                    return proto.read_answer(response, call)
                failure = proto.error_of(response)
                retry_after = response.headers.get("retry-after")
            if attempt + 1 < self._retry.attempts:
                time.sleep(self._retry.delay(attempt, retry_after))
        assert failure is not None
        raise failure
