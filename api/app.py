"""The FastAPI application factory: `create_app(settings)`."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api.auth import TokenVerifier
from api.metrics import Metrics
from api.middleware import RequestMiddleware
from api.problems import install_problem_handlers
from api.routers import audit, decisions, me, operations, organizations, policy, resources
from authz.bootstrap import open_runtime
from authz.engine.follower import Follower
from authz.services.runtime import Runtime
from authz.settings import Settings

log = logging.getLogger("authz.api")


def create_app(settings: Settings, runtime: Runtime | None = None) -> FastAPI:
    """Build the app; the lifespan opens the database (or uses `runtime`) and follows the changelog."""
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        current = runtime or open_runtime(settings)
        follower = Follower(current.replica, current.database, settings.sync_poll_interval)
        app.state.runtime = current
        app.state.follower = follower
        app.state.token_verifier = TokenVerifier.from_settings(settings)
        follower.start()
        log.info("authz ready", extra={"revision": current.replica.revision, "database": current.database.engine.url.render_as_string(hide_password=True)})
        try:
            yield
        finally:
            follower.stop()
            if runtime is None:
                current.database.dispose()

    app = FastAPI(
        title="authz",
        version="1.0",
        description="Organizations, memberships and authorization decisions of the platform.",
        lifespan=lifespan,
    )
    app.state.metrics = metrics
    app.state.settings = settings
    install_problem_handlers(app)
    for module in (operations, me, organizations, resources, decisions, policy, audit):
        app.include_router(module.router)
    app.add_middleware(RequestMiddleware, metrics=metrics, max_body_bytes=settings.max_body_bytes)
    return app


def app_from_environment() -> FastAPI:
    """For `uvicorn --factory` (several workers): settings from the environment."""
    return create_app(Settings())
