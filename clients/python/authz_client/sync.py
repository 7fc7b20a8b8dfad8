"""`AuthzClient`: the blocking client of the decision API, for scripts and threaded services.

Each method builds its flow in the sans-IO core (`_core.Session`) and runs it here: this
module only performs the steps with an `httpx.Client` and `time.sleep`.
"""

import contextlib
import time
from collections.abc import Generator, Iterator, Sequence
from typing import Any, TypeVar

import httpx

from authz_client import _core as core
from authz_client.cache import DecisionCache
from authz_client.models import BatchResult, Change, Check, CheckResult, ResourceLike, ResourceList, SubjectList

T = TypeVar("T")
DEFAULT_TIMEOUT = httpx.Timeout(5.0, connect=2.0)


def reply_of(response: httpx.Response) -> core.Reply:
    """What the core reads of an answer whose body was read."""
    return core.Reply(response.status_code, {k.lower(): v for k, v in response.headers.items()}, response.content)


def request_options(request: core.Request) -> dict[str, Any]:
    """httpx's keyword arguments for a request of the core."""
    options: dict[str, Any] = {"headers": dict(request.headers), "params": request.params, "json": request.json}
    if request.timeout is not None:
        options["timeout"] = httpx.Timeout(request.timeout[0], read=request.timeout[1])
    return options


class AuthzClient(core.CallerViews):
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
        retry: core.Retry | None = None,
        cache_ttl: float | None = None,
        cache: DecisionCache | None = None,
        http_client: httpx.Client | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._session = core.Session.configured(credential, account_context, retry, cache, cache_ttl)
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(
            base_url=self.base_url, timeout=timeout, limits=httpx.Limits(max_keepalive_connections=20)
        )

    # ---- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> "AuthzClient":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # ---- the decision API -----------------------------------------------------------------

    def check(self, action: str, resource: ResourceLike, *, subject: str | None = None, context: str | None = None,
              min_revision: int | None = None, explain: bool = False) -> CheckResult:
        """May the subject (default: the caller itself) do `action` on `resource`?"""
        return self._run(self._session.check(action, resource, subject=subject, context=context,
                                             min_revision=min_revision, explain=explain))

    def check_batch(self, checks: Sequence[Check], *, min_revision: int | None = None) -> BatchResult:
        """Up to 1000 questions in one round trip; the answers come back in order."""
        return self._run(self._session.check_batch(checks, min_revision))

    def list_resources(self, action: str, resource_type: str, *, subject: str | None = None,
                       context: str | None = None, min_revision: int | None = None, limit: int | None = None,
                       cursor: str | None = None) -> ResourceList:
        """One page (by id) of the resources of `resource_type` the subject may do `action` on."""
        return self._run(self._session.list_resources(action, resource_type, subject=subject, context=context,
                                                      min_revision=min_revision, limit=limit, cursor=cursor))

    def iter_resources(self, action: str, resource_type: str, *, subject: str | None = None,
                       context: str | None = None, page_size: int | None = None) -> Generator[str, None, None]:
        """Every such resource id, page after page, each once (fetches the next page as you iterate)."""
        return self._stream(self._session.iter_resources(action, resource_type, subject=subject, context=context,
                                                         page_size=page_size))

    def list_subjects(self, action: str, resource: ResourceLike, *, min_revision: int | None = None,
                      limit: int | None = None, cursor: str | None = None) -> SubjectList:
        """One page (by id) of the users that may do `action` on `resource`."""
        return self._run(self._session.list_subjects(action, resource, min_revision=min_revision, limit=limit,
                                                     cursor=cursor))

    def iter_subjects(self, action: str, resource: ResourceLike, *, page_size: int | None = None
                      ) -> Generator[str, None, None]:
        """Every user id that may do `action` on `resource`, page after page."""
        return self._stream(self._session.iter_subjects(action, resource, page_size=page_size))

    def follow_changes(self, after: int = 0, *, backoff: core.Backoff | None = None) -> Generator[Change, None, None]:
        """Every change after revision `after`, in order, for ever: server-sent events that resume.

        A dropped connection, a restarting server or a 5xx is retried with backoff from the
        last revision received (`Last-Event-ID`), so no change is lost or repeated. A 401,
        403 or 422 is raised. Needs a service key with `changes:read`. Stop by breaking out.
        """
        return self._stream(self._session.follow_changes(after, backoff or core.Backoff()))

    # ---- performing the core's steps ------------------------------------------------------

    def _run(self, flow: core.Flow[T]) -> T:
        """The result of a flow that emits nothing (one call and its retries)."""
        outcome: core.Outcome = None
        try:
            while True:
                outcome = self._perform(flow.send(outcome))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    def _stream(self, flow: core.ItemFlow) -> Generator[Any, None, None]:
        """The items a flow emits, performing its other steps in between. At most one stream is
        open: it is closed before reconnecting or sleeping, and when the caller stops iterating."""
        with contextlib.ExitStack() as held, contextlib.closing(flow):
            lines: Iterator[str] = iter(())
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
                    held.close()
                try:
                    if isinstance(step, core.Open):
                        response = held.enter_context(self._http.stream(step.request.method, step.request.path,
                                                                        **request_options(step.request)))
                        if response.status_code != 200:
                            response.read()
                            outcome = reply_of(response)
                        else:
                            lines, outcome = response.iter_lines(), core.Opened()
                    elif isinstance(step, core.NextLine):
                        outcome = next(lines, None)
                    else:
                        outcome = self._perform(step)
                except httpx.TransportError as exc:
                    outcome = core.Failed(type(exc).__name__)

    def _perform(self, step: core.Step) -> core.Outcome:
        """One request (its whole answer) or one sleep."""
        if isinstance(step, core.Sleep):
            time.sleep(step.seconds)
            return None
        assert isinstance(step, core.Send), f"{type(step).__name__} outside a stream"
        try:
            return reply_of(self._http.request(step.request.method, step.request.path,
                                               **request_options(step.request)))
        except httpx.TransportError as exc:
            return core.Failed(type(exc).__name__)


__all__ = ["DEFAULT_TIMEOUT", "AuthzClient"]
