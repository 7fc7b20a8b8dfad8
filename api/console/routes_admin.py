"""For admins (AUTHZ_ADMIN_USERS): the policy in force, and the "why" explorer.

The explorer asks exactly what `POST /v1/check?explain=true` answers a service key with
the `check` scope: any subject, any action, any resource → the decision and its reason.
"""

from fastapi import APIRouter, Request
from starlette.responses import Response

from api.console.web import ConsoleRoute, Page, field_errors
from authz.domain.errors import Forbidden, Invalid
from authz.domain.principal import SCOPE_CHECK, Principal
from authz.services import decisions, policy_admin

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)


def _admin(page: Page) -> Principal:
    user = page.user
    if not page.console.is_admin(user.id):
        raise Forbidden("only the platform's admins (AUTHZ_ADMIN_USERS) see the policy and the explorer")
    # The explorer asks about any subject, as a service key with `check` may.
    return Principal(kind="service", id=f"console-admin:{user.id}", scopes=frozenset({SCOPE_CHECK}),
                     request_id=user.request_id)


@router.get("/admin/policy")
def policy_page(request: Request) -> Response:
    page = Page(request)
    _admin(page)
    policy = page.runtime.policy
    compiled = page.runtime.roles
    roles = list(policy.roles)
    matrix = [
        (type_name, [(action, [compiled.allows(role, type_name, action) for role in roles])
                     for action in type_.actions])
        for type_name, type_ in policy.types.items()
    ]
    return page.render("admin_policy.html", policy=policy_admin.policy_in_force(page.runtime), roles=roles,
                       role_docs=policy.roles, matrix=matrix)


@router.get("/admin/why")
def why_page(request: Request, subject: str = "", action: str = "", type: str = "", id: str = "",
             context: str = "") -> Response:
    page = Page(request)
    asker = _admin(page)
    values = {"subject": subject, "action": action, "type": type, "id": id, "context": context}
    result = None
    errors: dict[str, str] = {}
    status = 200
    if any(values.values()):
        try:
            for name in ("subject", "action", "type"):
                if not values[name].strip():
                    raise Invalid(f"{name} is required", field=name)
            question = decisions.check_request(
                asker, subject=subject.strip(), action=action.strip(), resource_type=type.strip(),
                resource_id=id.strip() or None, context=context.strip() or None, default_context=None,
            )
            result = decisions.explain(page.runtime, page.snapshot, question)
            result["revision"] = page.snapshot.revision
        except Invalid as exc:
            errors = field_errors(exc) or {"subject": exc.detail}
            errors = {_form_field(k): v for k, v in errors.items()}
            status = 422
    return page.render("admin_why.html", status=status, values=values, errors=errors, result=result,
                       actions=sorted({a for t in page.runtime.policy.types.values() for a in t.actions}),
                       types=sorted(page.runtime.policy.types))


def _form_field(field: str) -> str:
    """The API's field names (`resource.type`) as this form's (`type`)."""
    return {"resource.type": "type", "resource.id": "id"}.get(field, field)
