"""The FastAPI application factory: `create_app(settings)`."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI

from api import tracing
from api.auth import Authenticator, ServiceKeyCache, TokenVerifier
from api.console import install_console
from api.fast_path import DecisionFastPath
from api.metrics import Metrics
from api.middleware import RequestMiddleware
from api.oidc_keys import OidcProvider
from api.problems import install_problem_handlers
from api.routers import (
    audit,
    authzen,
    backend_tokens,
    changes,
    decisions,
    forward_auth,
    invitations,
    me,
    operations,
    organizations,
    policy,
    resources,
    snapshot,
)
from api.routing import serve_routes
from api.serving import ServerShutdown
from authz.bootstrap import open_runtime
from authz.engine.follower import Follower
from authz.logging_setup import configure_logging
from authz.mail.mailbox import DevMailbox
from authz.mail.sender import OutboxSender
from authz.periodic import PeriodicThread
from authz.services import lifecycle
from authz.services.expiry import ExpirySweeper
from authz.services.runtime import Runtime
from authz.settings import Settings
from authz.startup_checks import check_settings, settings_from_environment

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

log = logging.getLogger("authz.api")


def create_app(settings: Settings, runtime: Runtime | None = None, *,
               tracer_provider: "TracerProvider | None" = None) -> FastAPI:
    """Build the app; the lifespan opens the database (or uses `runtime`) and follows the changelog.

    Traces go to `tracer_provider` (tests), or to the exporter the OTEL_* variables configure
    (`api.tracing`); with neither, nothing is traced.
    """
    metrics = Metrics()
    if tracer_provider is None and tracing.tracing_configured(settings):
        from opentelemetry import trace

        tracer_provider = tracing.provider_from_settings(settings)
        trace.set_tracer_provider(tracer_provider)  # also for spans outside a request (the mail sender)
    # One provider object: bearer tokens and the console's sign-in share its keys (rotation-safe).
    oidc = OidcProvider.from_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        current = runtime or open_runtime(settings)
        if tracer_provider is not None:
            tracing.instrument_engine(current.database.engine, tracer_provider)
        follower = Follower(current.replica, current.database, settings.sync_poll_interval)
        # Delivers the outbox (invitation emails); its state is the outbox table only.
        mail_sender = OutboxSender.from_settings(settings, current.database, clock=lambda: current.clock())
        if settings.dev_login:
            log.warning("AUTHZ_DEV_LOGIN is on: anyone can sign in to the console as anyone, and "
                        "/dev/mailbox shows every email sent with its working link; development only")
            mailbox = DevMailbox(mail_sender.transport)
            mail_sender.transport = mailbox
            console.mailbox = mailbox
        app.state.mail_sender = mail_sender
        sweeper = ExpirySweeper(current, settings.expiry_sweep_interval)
        app.state.runtime = current
        app.state.follower = follower
        app.state.authenticator = Authenticator(current, ServiceKeyCache(), TokenVerifier.from_settings(settings, oidc))
        if current.policy.routes.source is None:  # routes come with the policy in force, as every replica's
            log.warning("the policy in force has no routes.yaml: forward-auth denies every request")
        # Purges archived orgs past the retention; every replica may run it (claims are row locks).
        purger = PeriodicThread("authz-org-purger", settings.purge_interval, lambda: lifecycle.purge_job(current))
        app.state.org_purger = purger
        follower.start()
        sweeper.start()
        if settings.mail_sender:
            mail_sender.start()
        if settings.org_purger:
            purger.start()
        database = current.database.engine.url.render_as_string(hide_password=True)
        log.info("authz ready", extra={"revision": current.replica.revision, "database": database})
        try:
            yield
        finally:
            follower.stop()
            sweeper.stop()
            mail_sender.stop()
            purger.stop()
            if runtime is None:
                current.database.dispose()
            if oidc is not None:
                oidc.close()

    app = FastAPI(
        title="authz",
        version="1.0",
        description="Organizations, memberships and authorization decisions of the platform.",
        lifespan=lifespan,
        telemetry=tracing.FASTAPI_TELEMETRY,
    )
    install_common(app, settings, metrics)
    # decisions first: routes are matched in order, and /v1/check is the hot path.
    serve_routes(app, *(module.router for module in (
        decisions, operations, me, organizations, resources, policy, audit, backend_tokens,
        forward_auth, changes, snapshot, authzen, invitations)))
    # The console's pages at / (HTML; not part of the OpenAPI document).
    console = install_console(app, settings, oidc)
    install_middleware(app, settings, metrics, tracer_provider)
    return app


def install_common(app: FastAPI, settings: Settings, metrics: Metrics) -> None:
    """What every app of authz has (the service and the sidecar): state and problem+json errors."""
    app.state.metrics = metrics
    app.state.settings = settings
    app.state.shutdown = ServerShutdown()  # set by api.serving when the server stops
    install_problem_handlers(app)


def install_middleware(app: FastAPI, settings: Settings, metrics: Metrics,
                       tracer_provider: "TracerProvider | None") -> None:
    """The decision fast path, request accounting and tracing (the service and the sidecar)."""
    # Added first, so it runs inside RequestMiddleware (which counts and logs every request).
    app.add_middleware(DecisionFastPath, metrics=metrics)
    app.add_middleware(RequestMiddleware, metrics=metrics, max_body_bytes=settings.max_body_bytes,
                       tracing=tracer_provider is not None)
    if tracer_provider is not None:
        tracing.instrument_app(app, tracer_provider)


def app_from_environment() -> FastAPI:
    """For `uvicorn --factory` (`authz serve --workers N`): settings from the environment.

    Each worker is a new interpreter started by uvicorn's supervisor, so it configures its
    own logging here exactly as `authz serve` does for one process (else no access log).
    """
    settings = settings_from_environment()
    check_settings(settings)
    configure_logging(settings.log_level)
    return create_app(settings)
