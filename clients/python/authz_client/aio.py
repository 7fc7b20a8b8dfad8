"""`AsyncAuthzClient`: the asyncio/trio client of the decision API, for async services and the guard.

The same flows as `AuthzClient` (the sans-IO core, `_core.Session`), performed with an
`httpx.AsyncClient` and `anyio.sleep` (anyio comes with httpx).
"""

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any, TypeVar

import anyio
import httpx

from authz_client import _core as core
from authz_client.cache import DecisionCache
from authz_client.models import BatchResult, Change, Check, CheckResult, ResourceLike, ResourceList, SubjectList
from authz_client.sync import DEFAULT_TIMEOUT, reply_of, request_options

T = TypeVar("T")


class AsyncAuthzClient(core.CallerViews):
    """The same as `AuthzClient`, awaitable. Create it where its event loop runs (e.g. a lifespan)."""

    def __init__(
        self,
        base_url: str,
        credential: str | None = None,
        *,
        account_context: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: core.Retry | None = None,
        cache_ttl: float | None = None,
        cache: DecisionCache | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._session = core.Session.configured(credential, account_context, retry, cache, cache_ttl)
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(
            base_url=self.base_url, timeout=timeout, limits=httpx.Limits(max_keepalive_connections=20)
        )

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> "AsyncAuthzClient":
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    # ---- the decision API (see AuthzClient for each method's meaning) ---------------------

    async def check(self, action: str, resource: ResourceLike, *, subject: str | None = None,
                    context: str | None = None, min_revision: int | None = None, explain: bool = False) -> CheckResult:
        """May the subject (default: the caller itself) do `action` on `resource`?"""
        return await self._run(self._session.check(action, resource, subject=subject, context=context,
                                                   min_revision=min_revision, explain=explain))

    async def check_batch(self, checks: Sequence[Check], *, min_revision: int | None = None) -> BatchResult:
        """Up to 1000 questions in one round trip; the answers come back in order."""
        return await self._run(self._session.check_batch(checks, min_revision))

    async def list_resources(self, action: str, resource_type: str, *, subject: str | None = None,
                             context: str | None = None, min_revision: int | None = None, limit: int | None = None,
                             cursor: str | None = None) -> ResourceList:
        """One page (by id) of the resources of `resource_type` the subject may do `action` on."""
        return await self._run(self._session.list_resources(action, resource_type, subject=subject, context=context,
                                                            min_revision=min_revision, limit=limit, cursor=cursor))

    def iter_resources(self, action: str, resource_type: str, *, subject: str | None = None,
                       context: str | None = None, page_size: int | None = None) -> AsyncGenerator[str, None]:
        """Every such resource id, page after page, each once (`async for`)."""
        return self._stream(self._session.iter_resources(action, resource_type, subject=subject, context=context,
                                                         page_size=page_size))

    async def list_subjects(self, action: str, resource: ResourceLike, *, min_revision: int | None = None,
                            limit: int | None = None, cursor: str | None = None) -> SubjectList:
        """One page (by id) of the users that may do `action` on `resource`."""
        return await self._run(self._session.list_subjects(action, resource, min_revision=min_revision, limit=limit,
                                                           cursor=cursor))

    def iter_subjects(self, action: str, resource: ResourceLike, *, page_size: int | None = None
                      ) -> AsyncGenerator[str, None]:
        """Every user id that may do `action` on `resource`, page after page (`async for`)."""
        return self._stream(self._session.iter_subjects(action, resource, page_size=page_size))

    def follow_changes(self, after: int = 0, *, backoff: core.Backoff | None = None) -> AsyncGenerator[Change, None]:
        """Every change after revision `after`, in order, for ever (see `AuthzClient.follow_changes`)."""
        return self._stream(self._session.follow_changes(after, backoff or core.Backoff()))

    # ---- performing the core's steps (as AuthzClient does, awaiting) ----------------------

    async def _run(self, flow: core.Flow[T]) -> T:
        outcome: core.Outcome = None
        try:
            while True:
                outcome = await self._perform(flow.send(outcome))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    async def _stream(self, flow: core.ItemFlow) -> AsyncGenerator[Any, None]:
        async with contextlib.AsyncExitStack() as held:
            try:
                lines: AsyncIterator[str] | None = None
                outcome: core.Outcome = None
                while True:
                    try:
                        step = flow.send(outcome)
                    except StopIteration:
                        return
                    if isinstance(step, core.Emit):
                        outcome = None
                        yield step.value
                        continue
                    if isinstance(step, core.Open | core.Sleep):
                        await held.aclose()
                    try:
                        if isinstance(step, core.Open):
                            response = await held.enter_async_context(self._http.stream(
                                step.request.method, step.request.path, **request_options(step.request)))
                            if response.status_code != 200:
                                await response.aread()
                                outcome = reply_of(response)
                            else:
                                lines, outcome = response.aiter_lines(), core.Opened()
                        elif isinstance(step, core.NextLine):
                            outcome = await anext(lines, None) if lines is not None else None
                        else:
                            outcome = await self._perform(step)
                    except httpx.TransportError as exc:
                        outcome = core.Failed(type(exc).__name__)
            finally:
                flow.close()

    async def _perform(self, step: core.Step) -> core.Outcome:
        if isinstance(step, core.Sleep):
            await anyio.sleep(step.seconds)
            return None
        assert isinstance(step, core.Send), f"{type(step).__name__} outside a stream"
        try:
            return reply_of(await self._http.request(step.request.method, step.request.path,
                                                     **request_options(step.request)))
        except httpx.TransportError as exc:
            return core.Failed(type(exc).__name__)


__all__ = ["AsyncAuthzClient"]
