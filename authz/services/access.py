"""Authorization of the caller inside a write transaction, read from the database itself.

Writes decide on committed rows, not on this replica's memory, so a membership removed a
moment ago on another replica cannot authorize a write here. What a role may do is the
compiled answer of the policy in force (`CompiledRoles`), the one the decisions use.
"""

from sqlalchemy.orm import Session

from authz.domain import ids
from authz.domain.errors import Conflict, Forbidden, NotFound, OutsiderNotFound
from authz.domain.principal import Principal
from authz.store import rules
from authz.store.tables import Resource
from authz_client.decisions.roles import CompiledRoles


def owning_role(roles: CompiledRoles) -> str:
    """The role that owns a context in the policy in force (its `context_owner`)."""
    owner = roles.context_owner
    if owner is None:
        raise Conflict("the policy in force names no role that owns a context (context_owner); apply a policy")
    return owner


def role_in_context(session: Session, roles: CompiledRoles, user: str, context: str) -> str | None:
    """The user's role in the context now (an expired grant is no role); the owning role in their own account."""
    if context == ids.personal_context(user):
        return roles.context_owner
    return rules.role_in(session, ids.subject_of(user), context)


def role_on_resource(session: Session, user: str, resource_type: str, resource_id: str) -> str | None:
    return rules.role_in(session, ids.subject_of(user), ids.resource_scope(resource_type, resource_id))


def require_in_context(
    session: Session, roles: CompiledRoles, principal: Principal, action: str, object_type: str, context: str
) -> str:
    """The caller's role in `context`, if it grants `action` on `object_type`.

    Not a member: NotFound (a context's existence is not revealed). Member without the
    permission: Forbidden.
    """
    if not principal.is_user:
        raise Forbidden("this action needs a user token")
    role = role_in_context(session, roles, principal.id, context)
    if role is None:
        raise OutsiderNotFound("organization not found" if ids.is_org_id(context) else "context not found")
    if not roles.allows(role, object_type, action):
        raise Forbidden(f"role {role!r} may not {action} {object_type} in this context")
    return role


def require_on_resource(
    session: Session, roles: CompiledRoles, principal: Principal, action: str, resource: Resource
) -> None:
    """The caller's role in the resource's context or on the resource itself grants `action`."""
    if not principal.is_user:
        raise Forbidden("this action needs a user token")
    context_role = role_in_context(session, roles, principal.id, resource.context)
    resource_role = role_on_resource(session, principal.id, resource.type, resource.id)
    if context_role is None and resource_role is None:
        raise OutsiderNotFound("resource not found")
    held = [role for role in (context_role, resource_role) if role is not None]
    if any(roles.allows(role, resource.type, action) for role in held):
        return
    if not any(roles.allows(role, resource.type, "read") for role in held):
        raise NotFound("resource not found")
    raise Forbidden(f"you may not {action} this {resource.type}")
