"""The routes of authz's routers, served by every app of the process as they are.

`app.include_router` (FastAPI 0.16x) wraps the router and builds each of its routes again for that app,
on the first request that reaches them: about 65 ms of CPU for authz's 88 routes, which the first request
of every process paid (and every test, which builds an app of its own), and each later request then
walked the wrapped routers' version counters before matching. A router's own `APIRoute`s are complete
once its module is imported and hold nothing of an app (authz uses no `dependency_overrides`, no
router lifespans and no nested routers), so an app lists them directly.
"""

from fastapi import APIRouter, FastAPI


def serve_routes(app: FastAPI, *routers: APIRouter) -> None:
    """Append the routers' routes, in order, to the app's; call before the app serves or documents
    anything (its OpenAPI document is cached from the routes it first sees)."""
    app.router.routes.extend(route for router in routers for route in router.routes)
