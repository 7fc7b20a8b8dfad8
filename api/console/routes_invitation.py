"""The page an invitation email links to: AUTHZ_PUBLIC_URL/invitations/accept?token=…

It asks to sign in first (and comes back to the link afterwards), then shows the
organization, the role and who invited, with accept and decline; or explains why the
link cannot be used (expired, used, revoked, meant for another account).
"""

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.datastructures import FormData
from starlette.responses import Response

from api.console.web import ConsoleRoute, Page, csrf_form, problem_of, with_query
from authz.domain.errors import AuthzError
from authz.mail.message import ACCEPT_PATH
from authz.services import invitations

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
Form = Annotated[FormData, Depends(csrf_form)]
PATH = ACCEPT_PATH.split("?")[0]  # /invitations/accept


def _render(page: Page, token: str, status: int = 200, error: str | None = None) -> Response:
    link = with_query(PATH, token=token)
    if not page.session.signed_in:
        return page.render("invitation.html", status=status, token=token, link=link, preview=None,
                           signin=with_query("/signin", next=link), error=error)
    try:
        preview = invitations.preview_invitation(page.runtime, page.user, token)
    except AuthzError as exc:
        code, detail = problem_of(exc)
        return page.render("invitation.html", status=code, token=token, link=link, preview=None, signin=None,
                           error=detail)
    if error is None and not preview.for_caller:
        status = 403
    return page.render("invitation.html", status=status, token=token, link=link, preview=preview, signin=None,
                       error=error)


@router.get(PATH)
def invitation_page(request: Request, token: str = "") -> Response:
    return _render(Page(request), token)


@router.post(PATH)
def accept(request: Request, form: Form) -> Response:
    page = Page(request)
    token = str(form.get("token") or "")
    try:
        written = invitations.accept_invitation(page.runtime, page.user, token)
    except AuthzError as exc:
        status, detail = problem_of(exc)
        return _render(page, token, status, detail)
    joined = written.value
    return page.redirect(f"/orgs/{joined.organization_id}",
                         f"Welcome! You are now a {joined.role} of this organization. "
                         "Choose it in the account drop-down to work in it.")


@router.post("/invitations/decline")
def decline(request: Request, form: Form) -> Response:
    page = Page(request)
    token = str(form.get("token") or "")
    try:
        invitations.decline_invitation(page.runtime, page.user, token)
    except AuthzError as exc:
        status, detail = problem_of(exc)
        return _render(page, token, status, detail)
    return page.redirect("/", "You declined the invitation; the link no longer works.")
