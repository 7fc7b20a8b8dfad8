"""Pages of the selected account context: its content (with per-resource roles) and its backend tokens.

The context comes from the header's drop-down with each request (`?context=` on a
page, a hidden `context` field in a form), never from the session: a reload of `/`
goes back to the personal account. Every form says which context it acts in.
"""

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.datastructures import FormData
from starlette.responses import Response

from api.console.web import ConsoleRoute, ContextChoice, Page, csrf_form, field_errors, problem_of, with_query
from authz.domain import ids
from authz.domain.errors import AuthzError, Invalid, NotFound
from authz.services import backend_tokens, resources

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
Form = Annotated[FormData, Depends(csrf_form)]
MAX_SHOWN = 200  # resources on one page; the API's list-resources pages through the rest
RESOURCE_ACTIONS = ("read", "update", "execute", "delete", "share")
KNOWN_PROVIDERS = ("ibm", "ionq", "aws-braket", "dwave", "rigetti", "quantinuum")


@dataclass(frozen=True)
class ContentRow:
    type: str
    id: str
    may: list[str]  # the actions the user may do on it (each one a check)
    roles: dict[str, str] | None  # its own roles, when the user may share it


def _page_context(page: Page, value: object) -> ContextChoice:
    return page.context(value)


def _context_url(path: str, choice: ContextChoice) -> str:
    return with_query(path, context=None if choice.id == ids.PERSONAL else choice.id)


# ---- content --------------------------------------------------------------------------------

@router.get("/")
def home(request: Request, context: str | None = None) -> Response:
    page = Page(request)
    if not page.session.signed_in:
        return page.render("landing.html")
    return _content(page, _page_context(page, context))


def _content(page: Page, choice: ContextChoice, status: int = 200, values: dict[str, str] | None = None,
             errors: dict[str, str] | None = None, error: str | None = None,
             error_resource: str | None = None) -> Response:
    policy = page.runtime.policy
    index = page.snapshot.index
    user = page.user_id
    shown: list[tuple[str, str, list[str]]] = []
    types = sorted(policy.content_types())
    total = 0
    for resource_type in types:
        found = index.list_resources(user, "read", resource_type, choice.context, clock=page.snapshot.clock)
        total += len(found)
        for resource_id in found[: max(0, MAX_SHOWN - len(shown))]:
            shown.append((resource_type, resource_id,
                          [a for a in RESOURCE_ACTIONS if page.can_on(a, resource_type, resource_id)]))
    # One query for the own roles of every resource shown that the user may share.
    shared = resources.shared_roles(page.runtime, page.user, [(t, i) for t, i, may in shown if "share" in may])
    rows = [ContentRow(t, i, may, shared.get((t, i))) for t, i, may in shown]
    creatable = [t for t in types if page.can("create", t, choice.context)]
    return page.render(
        "content.html", status=status, selected=choice, rows=rows, total=total, creatable=creatable,
        roles=list(policy.roles), values=values or {"type": creatable[0] if creatable else ""}, errors=errors or {},
        error=error, error_resource=error_resource, max_shown=MAX_SHOWN,
    )


@router.post("/resources")
def register(request: Request, form: Form) -> Response:
    page = Page(request)
    choice = _page_context(page, form.get("context"))
    values = {"type": str(form.get("type") or ""), "id": str(form.get("id") or "").strip()}
    try:
        resources.register_resource(page.runtime, page.user, choice.context, values["type"], values["id"])
    except AuthzError as exc:
        status, detail = problem_of(exc)
        errors = field_errors(exc) or ({"id": detail} if status == 409 else {})
        return _content(page, choice, status, values, errors, None if errors else detail)
    return page.redirect(_context_url("/", choice),
                         f"{values['type']}:{values['id']} registered in {_where(choice)}.")


def _where(choice: ContextChoice) -> str:
    return "your personal account" if choice.id == ids.PERSONAL else f"“{choice.label}”"


def _resource_action(page: Page, form: FormData, resource_type: str, resource_id: str, action: str) -> Response:
    choice = _page_context(page, form.get("context"))
    label = f"{resource_type}:{resource_id}"
    try:
        if action == "delete":
            resources.delete_resource(page.runtime, page.user, resource_type, resource_id)
            message = f"{label} deleted."
        elif action == "share":
            user_id, role = form.get("user_id"), form.get("role")
            resources.set_resource_role(page.runtime, page.user, resource_type, resource_id, user_id, role)
            message = f"{user_id} is now {role} of {label}."
        else:
            user_id = str(form.get("user_id") or "")
            resources.remove_resource_role(page.runtime, page.user, resource_type, resource_id, user_id)
            message = f"{user_id} no longer has a role of its own on {label}."
    except AuthzError as exc:
        status, detail = problem_of(exc)
        return _content(page, choice, status, error=detail, error_resource=label)
    return page.redirect(_context_url("/", choice), message)


@router.post("/resources/{resource_type}/{resource_id}/delete")
def delete_resource(request: Request, resource_type: str, resource_id: str, form: Form) -> Response:
    return _resource_action(Page(request), form, resource_type, resource_id, "delete")


@router.post("/resources/{resource_type}/{resource_id}/roles")
def share_resource(request: Request, resource_type: str, resource_id: str, form: Form) -> Response:
    return _resource_action(Page(request), form, resource_type, resource_id, "share")


@router.post("/resources/{resource_type}/{resource_id}/roles/remove")
def unshare_resource(request: Request, resource_type: str, resource_id: str, form: Form) -> Response:
    return _resource_action(Page(request), form, resource_type, resource_id, "unshare")


# ---- backend tokens -------------------------------------------------------------------------

@router.get("/tokens")
def tokens_page(request: Request, context: str | None = None) -> Response:
    page = Page(request)
    return _tokens(page, _page_context(page, context))


def _tokens(page: Page, choice: ContextChoice, status: int = 200, values: dict[str, str] | None = None,
            errors: dict[str, str] | None = None, error: str | None = None) -> Response:
    rows = backend_tokens.list_backend_tokens(page.runtime, page.user, choice.context)
    return page.render(
        "tokens.html", status=status, selected=choice, tokens=rows, providers=KNOWN_PROVIDERS,
        can_set=page.can("set", "backend_token", choice.context),
        can_delete=page.can("delete", "backend_token", choice.context),
        values=values or {}, errors=errors or {}, error=error,
    )


@router.post("/tokens")
def set_token(request: Request, form: Form) -> Response:
    page = Page(request)
    choice = _page_context(page, form.get("context"))
    provider = str(form.get("provider") or "").strip()
    try:
        view = backend_tokens.set_backend_token(page.runtime, page.user, choice.context, provider, form.get("token"))
    except AuthzError as exc:
        status, detail = problem_of(exc)
        # The secret is never sent back into the form, not even after an error.
        return _tokens(page, choice, status, {"provider": provider}, field_errors(exc),
                       None if exc.field else detail)
    return page.redirect(_context_url("/tokens", choice),
                         f"The {view.provider} token of {_where(choice)} is set (ends in …{view.hint}).")


@router.post("/tokens/{provider}/delete")
def delete_token(request: Request, provider: str, form: Form) -> Response:
    page = Page(request)
    choice = _page_context(page, form.get("context"))
    try:
        backend_tokens.delete_backend_token(page.runtime, page.user, choice.context, provider)
    except AuthzError as exc:
        status, detail = problem_of(exc)
        if isinstance(exc, (NotFound, Invalid)) or status == 403:
            return _tokens(page, choice, status, error=detail)
        raise
    return page.redirect(_context_url("/tokens", choice), f"The {provider} token of {_where(choice)} was deleted.")
