"""What every console page shares: the session, the signed-in user, CSRF, the header, rendering.

Routes are plain functions that call authz/services with the user's Principal, exactly
as the API routers do; this module only turns their answers and errors into HTML.
"""

import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import HTMLResponse, RedirectResponse, Response

from api.console.oidc import OidcSignIn
from api.console.session import Session, SessionCodec
from api.problems import STATUS_OF
from authz.domain import ids
from authz.domain.errors import AuthzError, NotFound
from authz.domain.principal import Principal
from authz.engine.replica import Snapshot
from authz.mail.mailbox import DevMailbox
from authz.services import organizations
from authz.services.runtime import Runtime
from authz.settings import Settings

R = TypeVar("R", bound=Response)
log = logging.getLogger("authz.console")
TEMPLATES = Path(__file__).parent / "templates"
# Pages are the user's own data: never cached, never framed, no third-party anything.
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # The invitation page's URL holds a token: never send it to another site. (Not no-referrer:
    # browsers then send `Origin: null` with our own forms, and the CSRF check refuses those.)
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self' {form_action}; frame-ancestors 'none'; base-uri 'none'"
    ),
}


# One template environment for every console of the process: each template compiles once, not once per
# app (tests build hundreds), and nothing in it belongs to an app.
TEMPLATE_ENVIRONMENT = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]),
                                   trim_blocks=True, lstrip_blocks=True)


@dataclass
class Console:
    """Built once with the app: what the console routes need besides the runtime."""

    settings: Settings
    codec: SessionCodec
    oidc: OidcSignIn | None
    mailbox: DevMailbox | None = None
    env: Environment = field(init=False, default=TEMPLATE_ENVIRONMENT)

    @property
    def dev_login(self) -> bool:
        return self.settings.dev_login

    def is_admin(self, user_id: str | None) -> bool:
        return user_id is not None and user_id in self.settings.admins


class SignInRequired(Exception):
    """The page needs a signed-in user: go to the sign-in page and come back."""


class CsrfRefused(Exception):
    """A state-changing request that did not come from one of our own forms."""


@dataclass(frozen=True)
class ContextChoice:
    id: str  # "personal" or an org id (what the drop-down submits)
    context: str  # the service-level context: "user:<id>" or the org id
    label: str
    role: str | None


class Page:
    """One request to the console: its session, user, and the helpers routes use."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self.console: Console = request.app.state.console
        self.runtime: Runtime = request.app.state.runtime
        self.session: Session = self.console.codec.read(request)
        # One published snapshot for the whole page: every button it shows is decided at one revision.
        self.snapshot: Snapshot = self.runtime.replica.snapshot
        self._contexts: list[ContextChoice] | None = None

    # ---- who ----------------------------------------------------------------------------------

    @property
    def user(self) -> Principal:
        if not self.session.signed_in:
            raise SignInRequired()
        return self.session.principal(self.request)

    @property
    def user_id(self) -> str:
        return self.user.id

    def can(self, action: str, object_type: str, context: str) -> bool:
        """The same decision /v1/check gives (type-level, in `context`): decides which buttons show."""
        return self.snapshot.index.check(self.user_id, action, object_type, None, context, self.snapshot.clock)

    def can_on(self, action: str, resource_type: str, resource_id: str) -> bool:
        return self.snapshot.index.check(self.user_id, action, resource_type, resource_id, None, self.snapshot.clock)

    # ---- the account context ---------------------------------------------------------------

    def contexts(self) -> list[ContextChoice]:
        """Personal, then each org the user belongs to (the header's drop-down)."""
        if self._contexts is None:
            user = self.user
            personal_role = self.snapshot.index.roles.context_owner  # the policy's context_owner
            choices = [ContextChoice(ids.PERSONAL, ids.personal_context(user.id), "Personal account", personal_role)]
            for org in organizations.list_organizations(self.runtime, user):
                choices.append(ContextChoice(org.id, org.id, org.name, org.role))
            self._contexts = choices
        return self._contexts

    def _header_contexts(self) -> list[ContextChoice]:
        try:
            return self.contexts()
        except Exception:  # e.g. the database is down: the page still renders, without it
            log.warning("the account drop-down could not be filled", exc_info=True)
            return []

    def context(self, value: object) -> ContextChoice:
        """The chosen context: personal when absent; an org the user is not in is 404 (not revealed)."""
        wanted = value if isinstance(value, str) and value else ids.PERSONAL
        for choice in self.contexts():
            if choice.id == wanted:
                return choice
        raise NotFound("organization not found")

    # ---- responses --------------------------------------------------------------------------

    def render(self, template: str, status: int = 200, **values: Any) -> HTMLResponse:
        signed_in = self.session.signed_in
        values.setdefault("selected", None)
        base = {
            "page": self,
            "session": self.session,
            "csrf": self.session.csrf,
            "flash": self.session.take_flash(),
            "contexts": self._header_contexts() if signed_in else [],
            "is_admin": self.console.is_admin(self.session.user_id),
            "dev_login": self.console.dev_login,
            "path": self.request.url.path,
        }
        html = self.console.env.get_template(template).render(**base, **values)
        response = HTMLResponse(html, status_code=status)
        return self.finish(response)

    def redirect(self, url: str, message: str | None = None) -> RedirectResponse:
        """After a successful form: 303 to a page (never an open redirect: local paths only)."""
        if message:
            self.session.say(message)
        response = RedirectResponse(local_path(url), status_code=303)
        return self.finish(response)

    def finish(self, response: R) -> R:
        self.console.codec.write(self.request, response, self.session)
        provider = ""
        if self.console.oidc is not None:
            parts = urlsplit(self.console.oidc.provider.issuer)
            provider = f"{parts.scheme}://{parts.netloc}"
        for name, value in SECURITY_HEADERS.items():
            response.headers[name] = value.format(form_action=provider).replace("  ", " ")
        return response


def local_path(url: str) -> str:
    """`url` if it is a path on this site, else "/": sign-in's `next` can never leave the console."""
    if not url.startswith("/") or url.startswith("//") or "\\" in url or any(ord(c) < 32 for c in url):
        return "/"
    parts = urlsplit(url)
    if parts.scheme or parts.netloc:
        return "/"
    return url


def with_query(path: str, **params: str | None) -> str:
    present = {k: v for k, v in params.items() if v}
    return f"{path}?{urlencode(present)}" if present else path


def problem_of(exc: AuthzError) -> tuple[int, str]:
    """The status and detail the API would answer for this error (one source of wording)."""
    status = next((code for kind, code in STATUS_OF.items() if isinstance(exc, kind)), 400)
    return status, exc.detail


def field_errors(exc: AuthzError) -> dict[str, str]:
    """{field: message} for an Invalid naming a field; the page shows it beside that field."""
    return {exc.field: exc.detail} if exc.field else {}


def same_origin(request: Request) -> bool:
    """Is this POST from a page of this site? (Origin, else Sec-Fetch-Site; browsers send one of them.)"""
    origin = request.headers.get("origin")
    if origin is not None and origin != "null":
        own = f"{request.url.scheme}://{request.url.netloc}"
        return origin == own
    if origin == "null":
        return False
    return request.headers.get("sec-fetch-site", "same-origin") in ("same-origin", "none")


async def csrf_form(request: Request) -> FormData:
    """The form of a state-changing request, if it came from our own page with the session's token."""
    if not same_origin(request):
        raise CsrfRefused("this form was sent from another site")
    form = await request.form()
    session = request.app.state.console.codec.read(request)
    if not session.csrf_matches(form.get("csrf")):
        raise CsrfRefused("this form has expired or did not come from the console; reload the page and try again")
    return form


class ConsoleRoute(APIRoute):
    """Console routes answer HTML: sign-in redirects, CSRF refusals and service errors become pages."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequired:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                if request.method != "GET":
                    target = "/"
                return RedirectResponse(with_query("/signin", next=target), status_code=303)
            except CsrfRefused as exc:
                return error_page(request, 403, "Request refused", str(exc))
            except AuthzError as exc:
                status, detail = problem_of(exc)
                return error_page(request, status, _TITLES.get(status, "Error"), detail)
            except RequestValidationError as exc:
                fields = ", ".join(".".join(str(p) for p in e.get("loc", ())[1:]) for e in exc.errors()[:3])
                return error_page(request, 422, "Invalid request", f"invalid value for: {fields or 'the request'}")
            except StarletteHTTPException:
                raise  # the framework's own answers (e.g. an unreadable form body)
            except Exception:  # a page, not a stack trace; the log has the details
                log.exception("console page failed", extra={"route": request.url.path})
                return error_page(request, 500, "Something went wrong",
                                  "an internal error occurred; it has been logged. Please try again.")

        return handle


_TITLES = {403: "Not allowed", 404: "Not found", 409: "Conflict", 410: "Gone", 422: "Invalid request",
           503: "Temporarily unavailable"}


def error_page(request: Request, status: int, title: str, detail: str) -> Response:
    page = Page(request)
    return page.render("error.html", status=status, title=title, detail=detail)
