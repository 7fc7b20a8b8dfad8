"""The sidecar's app: the decision routers of the service over a replica fed by the change feed.

One implementation: the routes, the fast path, authentication, staleness and `min_revision`
handling are the service's own (`api.routers.*`, `api.fast_path`, `api.auth`); only the
replica's source differs (`authz.engine.feed_follower`, the client's follower, instead of the database),
and with it where a service key new to the replica is looked for (`FeedKeyCache`). Forward-auth's
routes are part of the policy the upstream sends (snapshot and feed), so no policy directory is read here.
Writes, secrets and the console are not here: every other path is a 404 naming the upstream.
"""

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, cast

from fastapi import FastAPI, Request, Response

from api import tracing
from api.app import install_common, install_middleware
from api.auth import Authenticator, ServiceKeyCache, TokenVerifier
from api.metrics import Metrics
from api.oidc_keys import OidcProvider
from api.problems import problem
from api.routers import authzen, decisions, forward_auth, operations
from api.routing import serve_routes
from authz.domain.cursors import CursorCodec, derive_key
from authz.domain.errors import Unavailable
from authz.engine.feed_catch_up import CATCH_UP_OUTCOMES, FeedCatchUp
from authz.engine.feed_follower import ReplicaFeed, follow_upstream
from authz.engine.replica import Replica, ServiceKeyRecord
from authz.services.runtime import Runtime
from authz.services.service_keys import is_unknown_here
from authz.settings import Settings
from authz.store.database import Database

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

log = logging.getLogger("authz.sidecar")
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class NoDatabase:
    """Stands where the service has its database: the sidecar has none, and says so if asked."""

    is_postgres = False

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream

    def session(self) -> Any:
        raise Unavailable(f"the sidecar has no database; send this to the upstream {self.upstream}")

    def dispose(self) -> None:
        pass


class FeedKeyCache(ServiceKeyCache):
    """The service's key cache, catching up with the upstream where the service reads its database.

    A key works at the sidecar the moment `service-key create` returns upstream (API.md),
    even while its creation is still on its way down the change feed, or the feed is slow
    or stalled (a reconnect, a stream held up by a proxy). A well-formed key whose id the
    replica does not know makes the sidecar read the upstream's changelog now
    (`ReplicaFeed.catch_up`, with its own `changes:read` key) and verify the key again.
    Every such request shares one catch-up (`FeedCatchUp`): one at a time, at most
    CATCH_UPS_PER_SECOND whatever the request rate, a request waiting at most
    CATCH_UP_WAIT seconds and each call upstream at most CATCH_UP_TIMEOUT. A key still
    unknown after it, or with the upstream unreachable, is refused (401); known keys are
    verified from the replica alone. The catch-up applies the changelog in order through
    the follower's own path, so it never brings back a key the replica has seen revoked
    (a revocation arrives by the feed, or by a catch-up that reads it first). Before the
    first snapshot there is nothing to catch up from: keys are refused, decisions are 503.
    `authz_sidecar_key_catch_ups_total{outcome}` counts the catch-ups.
    """

    CATCH_UPS_PER_SECOND = 4.0
    CATCH_UP_WAIT = 3.0
    CATCH_UP_TIMEOUT = 2.0

    def __init__(self, feed: ReplicaFeed, metrics: Metrics) -> None:
        super().__init__()
        counted = {outcome: metrics.key_catch_ups.labels(outcome) for outcome in CATCH_UP_OUTCOMES}
        self.catch_up = FeedCatchUp(lambda: feed.catch_up(self.CATCH_UP_TIMEOUT),
                                    per_second=self.CATCH_UPS_PER_SECOND, wait=self.CATCH_UP_WAIT,
                                    on_done=lambda outcome: counted[outcome].inc())

    async def lookup(self, runtime: Runtime, credential: str) -> ServiceKeyRecord | None:
        if runtime.replica.revision >= 0 and is_unknown_here(runtime, credential):
            await self.catch_up.fresh()
        return self.verify(runtime, credential)


def create_sidecar_app(settings: Settings, upstream: str, key: str, *,
                       tracer_provider: "TracerProvider | None" = None) -> FastAPI:
    """The sidecar: snapshot and change feed from `upstream` (with `key`), decisions answered here."""
    upstream = upstream.rstrip("/")
    metrics = Metrics()
    if tracer_provider is None and tracing.tracing_configured(settings):
        from opentelemetry import trace

        tracer_provider = tracing.provider_from_settings(settings)
        trace.set_tracer_provider(tracer_provider)
    oidc = OidcProvider.from_settings(settings)
    cursor_key = settings.cursor_key.get_secret_value().encode() if settings.cursor_key else secrets.token_bytes(32)
    runtime = Runtime(settings=settings, database=cast(Database, NoDatabase(upstream)), replica=Replica(),
                      cursors=CursorCodec(derive_key(cursor_key, "paging cursors")))

    follower, feed = follow_upstream(runtime.replica, upstream, key, read_timeout=max(60.0, settings.max_staleness),
                                     max_backoff=settings.upstream_max_backoff)
    key_cache = FeedKeyCache(feed, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.runtime = runtime
        app.state.follower = follower
        app.state.authenticator = Authenticator(runtime, key_cache, TokenVerifier.from_settings(settings, oidc))
        follower.start()  # decisions answer 503 until the snapshot is loaded
        log.info("authz sidecar following %s", upstream)
        try:
            yield
        finally:
            key_cache.catch_up.close()
            follower.stop()
            if oidc is not None:
                oidc.close()

    app = FastAPI(title="authz sidecar", version="1.0", lifespan=lifespan, telemetry=tracing.FASTAPI_TELEMETRY,
                  description=f"Decisions answered locally, following {upstream}.")
    install_common(app, settings, metrics)
    app.state.upstream = upstream
    serve_routes(app, *(module.router for module in (decisions, operations, forward_auth, authzen)))

    @app.api_route("/{path:path}", methods=ALL_METHODS, include_in_schema=False)
    async def elsewhere(request: Request, path: str) -> Response:
        return problem(404, f"the sidecar answers decisions only; send {request.method} /{path} "
                            f"to the upstream {upstream}")

    install_middleware(app, settings, metrics, tracer_provider)
    return app
