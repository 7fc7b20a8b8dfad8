"""Organizations: my list and "create", profile and billing, members, invitations, the audit log.

Each handler calls the same service function as the matching /v1 route, with the
signed-in user's Principal; a button is rendered only where `page.can(...)` (the
decision /v1/check gives) allows it, and the service checks again on submit.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.datastructures import FormData
from starlette.responses import Response

from api.console.web import ConsoleRoute, Page, csrf_form, field_errors, problem_of
from authz.domain.errors import AuthzError, Invalid
from authz.domain.organizations import ISO_COUNTRIES
from authz.services import audit, invitations, lifecycle, members, organizations
from authz.services.views import OrganizationView

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
Form = Annotated[FormData, Depends(csrf_form)]
ADDRESS_FIELDS = ("line1", "line2", "postal_code", "city", "country")
AUDIT_PAGE = 25


def _address(form: FormData) -> dict[str, str]:
    return {name: str(form.get(f"billing_address.{name}") or "") for name in ADDRESS_FIELDS}


def _values(org: OrganizationView | None) -> dict[str, str]:
    if org is None:
        return {}
    values = {"name": org.name}
    if org.billing_address is not None:
        for name in ADDRESS_FIELDS:
            values[f"billing_address.{name}"] = getattr(org.billing_address, name) or ""
    return values


def _org_page(page: Page, org_id: str, template: str, status: int = 200, **values: Any) -> Response:
    """An org's page with its tabs: each tab shown only when the user may read what it shows."""
    org = organizations.get_organization(page.runtime, page.user, org_id)
    tabs = [("profile", "Profile", f"/orgs/{org.id}", True),
            ("members", "Members", f"/orgs/{org.id}/members", page.can("read", "member", org.id)),
            ("invitations", "Invitations", f"/orgs/{org.id}/invitations", page.can("read", "invitation", org.id)),
            ("tokens", "Backend tokens", f"/tokens?context={org.id}", page.can("read", "backend_token", org.id)),
            ("content", "Content", f"/?context={org.id}", True),
            ("audit", "Audit log", f"/orgs/{org.id}/audit", page.can("read", "audit", org.id))]
    return page.render(template, status=status, org=org, tabs=[t for t in tabs if t[3]], **values)


# ---- my organizations -----------------------------------------------------------------------

@router.get("/orgs")
def list_orgs(request: Request) -> Response:
    page = Page(request)
    return _orgs(page)


def _orgs(page: Page, status: int = 200, values: dict[str, str] | None = None, errors: dict[str, str] | None = None,
          error: str | None = None) -> Response:
    mine = organizations.list_organizations(page.runtime, page.user)
    archived = lifecycle.restorable_by(page.runtime, page.user)
    return page.render("orgs.html", status=status, orgs=mine, archived=archived, countries=sorted(ISO_COUNTRIES),
                       values=values or {"billing_address.country": ""}, errors=errors or {}, error=error)


@router.post("/orgs")
def create_org(request: Request, form: Form) -> Response:
    page = Page(request)
    values = {"name": str(form.get("name") or "")} | {f"billing_address.{k}": v for k, v in _address(form).items()}
    try:
        written = organizations.create_organization(page.runtime, page.user, values["name"], _address(form))
    except Invalid as exc:
        return _orgs(page, 422, values, field_errors(exc), None if exc.field else exc.detail)
    org = written.value
    return page.redirect(f"/orgs/{org.id}", f"Organization “{org.name}” created; you are its owner.")


# ---- profile and billing --------------------------------------------------------------------

@router.get("/orgs/{org_id}")
def org_profile(request: Request, org_id: str) -> Response:
    page = Page(request)
    return _profile(page, org_id)


def _profile(page: Page, org_id: str, status: int = 200, values: dict[str, str] | None = None,
             errors: dict[str, str] | None = None, error: str | None = None) -> Response:
    org = organizations.get_organization(page.runtime, page.user, org_id)
    return _org_page(
        page, org_id, "org_profile.html", status, tab="profile", countries=sorted(ISO_COUNTRIES),
        values=values or _values(org), errors=errors or {}, error=error,
        can_rename=page.can("update", "organization", org.id), can_bill=page.can("update", "billing", org.id),
        can_archive=page.can("delete", "organization", org.id),
        retention_days=round(page.runtime.settings.org_retention.total_seconds() / 86400),
    )


@router.post("/orgs/{org_id}")
def update_org(request: Request, org_id: str, form: Form) -> Response:
    page = Page(request)
    name = form.get("name")
    address = _address(form) if "billing_address.line1" in form else None
    values = {"name": str(name or "")} | ({f"billing_address.{k}": v for k, v in address.items()} if address else {})
    try:
        organizations.update_organization(page.runtime, page.user, org_id, name=name, address=address)
    except Invalid as exc:
        return _profile(page, org_id, 422, values, field_errors(exc))
    except AuthzError as exc:
        status, detail = problem_of(exc)
        if status == 404:
            raise
        return _profile(page, org_id, status, values, {}, detail)
    return page.redirect(f"/orgs/{org_id}", "Saved.")


# ---- archive and restore --------------------------------------------------------------------

@router.post("/orgs/{org_id}/archive")
def archive_org(request: Request, org_id: str, form: Form) -> Response:
    """DELETE /v1/organizations/{org_id}: archived, restorable by its owners within the retention."""
    page = Page(request)
    try:
        organizations.delete_organization(page.runtime, page.user, org_id)
    except AuthzError as exc:
        status, detail = problem_of(exc)
        if status == 404:
            raise
        return _profile(page, org_id, status, error=detail)
    return page.redirect("/orgs", "Organization archived: it is gone from every member's contexts. "
                                  "Its owners can restore it from this page until it is purged.")


@router.post("/orgs/{org_id}/restore")
def restore_org(request: Request, org_id: str, form: Form) -> Response:
    page = Page(request)
    try:
        written = lifecycle.restore_organization(page.runtime, page.user, org_id)
    except AuthzError as exc:
        status, detail = problem_of(exc)
        if status == 404:
            raise
        return _orgs(page, status, error=detail)
    return page.redirect(f"/orgs/{org_id}", f"Organization “{written.value.name}” restored, as it was.")


# ---- members --------------------------------------------------------------------------------

@router.get("/orgs/{org_id}/members")
def org_members(request: Request, org_id: str) -> Response:
    page = Page(request)
    return _members(page, org_id)


def _members(page: Page, org_id: str, status: int = 200, error: str | None = None,
             error_user: str | None = None) -> Response:
    people = members.list_members(page.runtime, page.user, org_id)
    owner_role = page.snapshot.index.roles.context_owner  # the policy's context_owner
    owners = sum(1 for m in people if m.role == owner_role)
    return _org_page(
        page, org_id, "members.html", status, tab="members", members=people, owners=owners, owner_role=owner_role,
        roles=list(page.runtime.policy.roles), can_change=page.can("update", "member", org_id),
        can_remove=page.can("delete", "member", org_id), error=error, error_user=error_user,
    )


@router.post("/orgs/{org_id}/members/{user_id}/role")
def change_member_role(request: Request, org_id: str, user_id: str, form: Form) -> Response:
    page = Page(request)
    role = form.get("role")
    try:
        written = members.change_role(page.runtime, page.user, org_id, user_id, role)
    except AuthzError as exc:
        status, detail = problem_of(exc)
        if status == 404 and "organization" in detail:
            raise
        return _members(page, org_id, status, detail, user_id)
    return page.redirect(f"/orgs/{org_id}/members", f"{user_id} is now {written.value.role}.")


@router.post("/orgs/{org_id}/members/{user_id}/remove")
def remove_member(request: Request, org_id: str, user_id: str, form: Form) -> Response:
    page = Page(request)
    leaving = user_id == page.user_id
    try:
        members.remove_member(page.runtime, page.user, org_id, user_id)
    except AuthzError as exc:
        status, detail = problem_of(exc)
        if status == 404 and "organization" in detail:
            raise
        return _members(page, org_id, status, detail, user_id)
    if leaving:
        return page.redirect("/orgs", "You left the organization.")
    return page.redirect(f"/orgs/{org_id}/members", f"{user_id} was removed.")


# ---- invitations ----------------------------------------------------------------------------

@router.get("/orgs/{org_id}/invitations")
def org_invitations(request: Request, org_id: str) -> Response:
    page = Page(request)
    return _invitations(page, org_id)


def _invitations(page: Page, org_id: str, status: int = 200, values: dict[str, str] | None = None,
                 errors: dict[str, str] | None = None, error: str | None = None) -> Response:
    rows = invitations.list_invitations(page.runtime, page.user, org_id)
    roles = list(page.runtime.policy.roles)
    compiled = page.snapshot.index.roles
    least = min(roles, key=lambda role: (len(compiled.effective.get(role, ())), role))  # viewer, as shipped
    return _org_page(
        page, org_id, "invitations.html", status, tab="invitations", invitations=rows,
        roles=roles, values=values or {"role": least}, errors=errors or {}, error=error,
        can_invite=page.can("create", "invitation", org_id), can_revoke=page.can("delete", "invitation", org_id),
    )


@router.post("/orgs/{org_id}/invitations")
def invite(request: Request, org_id: str, form: Form) -> Response:
    page = Page(request)
    values = {"email": str(form.get("email") or ""), "role": str(form.get("role") or ""),
              "expires_at": str(form.get("expires_at") or "").strip()}
    try:
        written = invitations.create_invitation(page.runtime, page.user, org_id, values["email"], values["role"],
                                                expires_at=utc_instant(values["expires_at"]))
    except AuthzError as exc:
        status, detail = problem_of(exc)
        if status == 404:
            raise
        if status == 409:  # already a member / already invited: about the email field
            return _invitations(page, org_id, status, values, {"email": detail})
        return _invitations(page, org_id, status, values, field_errors(exc), None if exc.field else detail)
    _wake_mail(page)
    return page.redirect(f"/orgs/{org_id}/invitations",
                         f"Invitation sent to {written.value.email} as {written.value.role}.")


@router.post("/orgs/{org_id}/invitations/{invitation_id}/resend")
def resend(request: Request, org_id: str, invitation_id: str, form: Form) -> Response:
    page = Page(request)
    try:
        written = invitations.resend_invitation(page.runtime, page.user, org_id, invitation_id)
    except AuthzError as exc:
        status, detail = problem_of(exc)
        if status == 404 and "organization" in detail:
            raise
        return _invitations(page, org_id, status, error=detail)
    _wake_mail(page)
    return page.redirect(f"/orgs/{org_id}/invitations",
                         f"Invitation to {written.value.email} resent; the previous link no longer works.")


@router.post("/orgs/{org_id}/invitations/{invitation_id}/revoke")
def revoke(request: Request, org_id: str, invitation_id: str, form: Form) -> Response:
    page = Page(request)
    try:
        invitations.revoke_invitation(page.runtime, page.user, org_id, invitation_id)
    except AuthzError as exc:
        status, detail = problem_of(exc)
        if status == 404 and "organization" in detail:
            raise
        return _invitations(page, org_id, status, error=detail)
    return page.redirect(f"/orgs/{org_id}/invitations", "Invitation revoked; its link no longer works.")


def utc_instant(value: str) -> str | None:
    """A `datetime-local` field (no zone; the form says UTC) as the RFC 3339 the services expect."""
    if not value:
        return None
    has_zone = value.endswith("Z") or "+" in value[10:] or "-" in value[10:]
    return value if has_zone else value + "+00:00"


def _wake_mail(page: Page) -> None:
    sender = getattr(page.request.app.state, "mail_sender", None)
    if sender is not None:
        sender.wake()  # send now rather than at the next poll


# ---- audit ----------------------------------------------------------------------------------

@router.get("/orgs/{org_id}/audit")
def org_audit(request: Request, org_id: str, before: int | None = None) -> Response:
    page = Page(request)
    if before is not None and before < 1:
        raise Invalid("before must be a positive entry id", field="before")
    entries = audit.list_audit(page.runtime, page.user, org_id, limit=AUDIT_PAGE, before=before)
    next_before = entries[-1].id if len(entries) == AUDIT_PAGE else None
    return _org_page(page, org_id, "audit.html", tab="audit", entries=entries, next_before=next_before,
                     first_page=before is None)
