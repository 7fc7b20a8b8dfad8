"""`AsyncAuthzClient`: the asyncio/trio client of the decision API, for async services and the guard."""

import copy
from collections.abc import AsyncIterator, Sequence
from typing import TypeVar

import anyio
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
from authz.client.sync import DEFAULT_TIMEOUT

T = TypeVar("T")


class AsyncAuthzClient:
    """The same as `AuthzClient`, awaitable. Create it where its event loop runs (e.g. a lifespan)."""

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
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._credential = credential
        self._account_context = account_context
        self._retry = retry or proto.Retry()
        self._cache = cache if cache is not None else (DecisionCache(cache_ttl) if cache_ttl else None)
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(
            base_url=self.base_url, timeout=timeout, limits=httpx.Limits(max_keepalive_connections=20)
        )

    def with_credential(self, credential: str | None, *, account_context: str | None = None) -> "AsyncAuthzClient":
        """The same connections and cache, asking as another caller (in another account context)."""
        view = copy.copy(self)
        view._credential = credential
        view._account_context = account_context
        view._owns_http = False
        return view

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> "AsyncAuthzClient":
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def check(
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
        result = await self._send(call)
        if self._cache is not None and call.cache_key is not None:
            self._cache.put(call.cache_key, result)
        return result

    async def check_batch(self, checks: Sequence[Check], *, min_revision: int | None = None) -> BatchResult:
        """Up to 1000 questions in one round trip; the answers come back in order."""
        return await self._send(proto.batch_call(checks, min_revision))

    async def list_resources(
        self, action: str, resource_type: str, *, subject: str | None = None, context: str | None = None,
        min_revision: int | None = None, limit: int | None = None, cursor: str | None = None,
    ) -> ResourceList:
        """One page (by id) of the resources of `resource_type` the subject may do `action` on."""
        return await self._send(proto.list_resources_call(
            action, resource_type, subject=subject, context=context, min_revision=min_revision,
            limit=limit, cursor=cursor))

    async def iter_resources(
        self, action: str, resource_type: str, *, subject: str | None = None, context: str | None = None,
        page_size: int | None = None,
    ) -> AsyncIterator[str]:
        """Every such resource id, page after page, each once (fetches the next page as you iterate)."""
        cursor: str | None = None
        while True:
            page = await self.list_resources(action, resource_type, subject=subject, context=context,
                                             limit=page_size, cursor=cursor)
            for resource_id in page.resources:
                yield resource_id
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def list_subjects(
        self, action: str, resource: ResourceLike, *, min_revision: int | None = None, limit: int | None = None,
        cursor: str | None = None,
    ) -> SubjectList:
        """One page (by id) of the users that may do `action` on `resource`."""
        return await self._send(proto.list_subjects_call(action, Resource.of(resource), min_revision, limit, cursor))

    async def iter_subjects(
        self, action: str, resource: ResourceLike, *, page_size: int | None = None
    ) -> AsyncIterator[str]:
        """Every user id that may do `action` on `resource`, page after page."""
        cursor: str | None = None
        while True:
            page = await self.list_subjects(action, resource, limit=page_size, cursor=cursor)
            for subject in page.subjects:
                yield subject
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def follow_changes(self, after: int = 0, *, backoff: proto.Backoff | None = None) -> AsyncIterator[Change]:
        """Every change after revision `after`, in order, for ever (see `AuthzClient.follow_changes`)."""
        last = after
        delays = backoff or proto.Backoff()
        while True:
            try:
                async with self._http.stream("GET", proto.CHANGES_PATH, params={"after": last},
                                             headers=proto.feed_headers(self._credential, last),
                                             timeout=proto.FEED_TIMEOUT) as response:
                    if response.status_code != 200:
                        await response.aread()
                        failure = proto.feed_failure(response)
                        if failure is not None:
                            raise failure
                    else:
                        parser = proto.EventParser()
                        async for line in response.aiter_lines():
                            change = parser.line(line)
                            if change is not None and change.revision > last:
                                last = change.revision
                                delays.reset()
                                yield change
            except httpx.TransportError:
                pass
            await anyio.sleep(delays.next())

    async def _send(self, call: proto.Call[T]) -> T:
        headers = proto.headers(self._credential, self._account_context)
        failure: AuthzError | None = None
        for attempt in range(self._retry.attempts):
            retry_after = None
            try:
                response = await self._http.post(call.path, json=call.body, params=call.params, headers=headers)
            except httpx.TransportError as exc:
                failure = proto.unreachable(exc)
            else:
                if not proto.should_retry(response):
                    return proto.read_answer(response, call)
                failure = proto.error_of(response)
                retry_after = response.headers.get("retry-after")
            if attempt + 1 < self._retry.attempts:
                await anyio.sleep(self._retry.delay(attempt, retry_after))
        assert failure is not None
        raise failure
