"""Signing in (OpenID Connect, or the development sign-in), signing out, the development mailbox."""

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response

from api.console.oidc import CALLBACK_PATH, STATE_COOKIE, STATE_MAX_AGE, STATE_SALT, SignInFailed
from api.console.session import new_session, secure_cookies
from api.console.web import ConsoleRoute, Page, csrf_form, local_path, with_query
from authz.domain import ids
from authz.domain import invitations as inv
from authz.domain.errors import Invalid, NotFound

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
Form = Annotated[FormData, Depends(csrf_form)]


def _dev_only(page: Page) -> None:
    """The development sign-in and mailbox do not exist unless AUTHZ_DEV_LOGIN is on."""
    if not page.console.dev_login:
        raise NotFound("no such page")


@router.get("/signin")
def signin_page(request: Request, next: str = "/") -> Response:
    page = Page(request)
    target = local_path(next)
    if page.session.signed_in:
        return page.redirect(target)
    return page.render("signin.html", next=target, oidc=page.console.oidc is not None, error=None, values={},
                       errors={})


@router.get("/signin/oidc")
def signin_oidc(request: Request, next: str = "/") -> Response:
    page = Page(request)
    if page.console.oidc is None:
        raise NotFound("OpenID Connect sign-in is not configured (AUTHZ_OIDC_ISSUER, AUTHZ_OIDC_CLIENT_ID)")
    try:
        started = page.console.oidc.start(local_path(next))
    except SignInFailed as exc:
        return page.render("signin.html", status=503, next=local_path(next), oidc=True, error=str(exc),
                           values={}, errors={})
    response = RedirectResponse(started.url, status_code=303)
    response.set_cookie(STATE_COOKIE, page.console.codec.dumps(started.pending, STATE_SALT), max_age=STATE_MAX_AGE,
                        path=CALLBACK_PATH, httponly=True, samesite="lax", secure=secure_cookies(request))
    return page.finish(response)


@router.get(CALLBACK_PATH)
def oidc_callback(request: Request) -> Response:
    page = Page(request)
    if page.console.oidc is None:
        raise NotFound("OpenID Connect sign-in is not configured")
    pending: dict[str, str] = {}
    raw = request.cookies.get(STATE_COOKIE)
    try:
        if raw is None:
            raise SignInFailed("this sign-in has expired or was started in another browser; please sign in again")
        try:
            pending = page.console.codec.loads(raw, STATE_SALT, STATE_MAX_AGE)
        except Exception:  # noqa: BLE001 - expired or tampered cookie: same answer
            raise SignInFailed("this sign-in has expired; please sign in again") from None
        identity = page.console.oidc.finish(pending, dict(request.query_params))
    except SignInFailed as exc:
        response: Response = page.render("signin.html", status=400, next=local_path(pending.get("next", "/")),
                                          oidc=True, error=str(exc), values={}, errors={})
        response.delete_cookie(STATE_COOKIE, path=CALLBACK_PATH)
        return response
    page.session = page.console.codec.signed_in(identity.user_id, identity.email, identity.email_verified, "oidc")
    response = page.redirect(pending.get("next", "/"))
    response.delete_cookie(STATE_COOKIE, path=CALLBACK_PATH)
    return response


@router.post("/signout")
def signout(request: Request, form: Form) -> Response:
    page = Page(request)
    next_path = local_path(str(form.get("next") or "/"))
    page.session = new_session()  # anonymous, with a new CSRF token
    page.session.say("You are signed out.")
    if next_path != "/":
        return page.redirect(with_query("/signin", next=next_path))
    return page.redirect("/")


# ---- development only ---------------------------------------------------------------------

@router.get("/dev/signin")
def dev_signin_page(request: Request, next: str = "/") -> Response:
    page = Page(request)
    _dev_only(page)
    return page.render("signin.html", next=local_path(next), oidc=page.console.oidc is not None, error=None,
                       values={}, errors={})


@router.post("/dev/signin")
def dev_signin(request: Request, form: Form) -> Response:
    page = Page(request)
    _dev_only(page)
    values = {"user_id": str(form.get("user_id") or "").strip(), "email": str(form.get("email") or "").strip()}
    next_path = local_path(str(form.get("next") or "/"))
    try:
        user = ids.user_id(values["user_id"], "user_id")
        email = inv.email(values["email"]) if values["email"] else None
    except Invalid as exc:
        field = "email" if exc.field != "user_id" else "user_id"
        return page.render("signin.html", status=422, next=next_path, oidc=page.console.oidc is not None,
                           error=None, values=values, errors={field: exc.detail})
    # The development sign-in vouches for the email, as a provider with verified addresses would.
    page.session = page.console.codec.signed_in(user, email, email is not None, "dev")
    return page.redirect(next_path, f"Signed in as {user} (development sign-in).")


@router.get("/dev/mailbox")
def dev_mailbox(request: Request) -> Response:
    page = Page(request)
    _dev_only(page)
    mails = page.console.mailbox.mails() if page.console.mailbox is not None else []
    return page.render("mailbox.html", mails=mails)
