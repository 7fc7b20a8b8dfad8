"""The console: server-rendered pages for people, at `/`, on the same services as the API.

`install_console(app, settings, provider)` adds its routes and static files; see
README.md "The console" for the pages and settings.
"""

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from api.console import routes_admin, routes_context, routes_invitation, routes_orgs, routes_session
from api.console.oidc import OidcSignIn
from api.console.session import SessionCodec
from api.console.web import Console
from api.oidc_keys import OidcProvider
from api.routing import serve_routes
from authz.settings import Settings

STATIC = Path(__file__).parent / "static"


def install_console(app: FastAPI, settings: Settings, provider: OidcProvider | None) -> Console:
    console = Console(settings, SessionCodec(settings), OidcSignIn.from_settings(settings, provider))
    app.state.console = console
    serve_routes(app, *(module.router for module in (
        routes_session, routes_invitation, routes_orgs, routes_context, routes_admin)))
    app.mount("/static/console", StaticFiles(directory=STATIC), name="console-static")
    return console
