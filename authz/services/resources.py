"""Content registered in a context: algorithms, services, jobs, ... and their own roles.

A resource's context is written once, at registration, and never updated (invariant 6).
"""

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from authz.domain import ids
from authz.domain.errors import Conflict, Forbidden, Invalid, NotFound
from authz.domain.grants import expiry_instant, expiry_value, requested_expiry
from authz.domain.principal import Principal
from authz.services.access import require_in_context, require_on_resource
from authz.services.members import valid_role
from authz.services.runtime import Runtime, Written
from authz.services.views import ResourceView
from authz.store import rules
from authz.store.rules import Rule
from authz.store.tables import Resource


def _view(row: Resource) -> ResourceView:
    return ResourceView(row.type, row.id, row.context, row.created_by, row.created_at)


def content_type(rt: Runtime, value: object, field: str = "type") -> str:
    name = ids.name(value, field)
    if name not in rt.policy.content_types():
        raise Invalid(f"{field} must be a content type: {', '.join(sorted(rt.policy.content_types()))}", field=field)
    return name


def _load(session: Session, resource_type: str, resource_id: str) -> Resource:
    row = session.get(Resource, (resource_type, resource_id))
    if row is None:
        raise NotFound("resource not found")
    return row


def register_resource(
    rt: Runtime, principal: Principal, context: str, resource_type: object, resource_id: object
) -> Written[ResourceView]:
    """Register content in `context` (needs `create` on its type there)."""
    clean_type = content_type(rt, resource_type)
    clean_id = ids.resource_id(resource_id)
    with rt.unit_of_work(principal) as uow:
        try:
            uow.lock_context(context)  # serialized with the context's deletion: no orphaned content
        except NotFound:
            raise NotFound("organization not found" if ids.is_org_id(context) else "context not found") from None
        require_in_context(uow.session, rt.roles, principal, "create", clean_type, context)
        existing = uow.session.get(Resource, (clean_type, clean_id))
        if existing is not None:
            if existing.context == context:
                raise Conflict(f"{clean_type}:{clean_id} is already registered in this context")
            raise Conflict(f"{clean_type}:{clean_id} is already registered; a resource's context never changes")
        row = Resource(type=clean_type, id=clean_id, context=context, created_by=principal.id, created_at=uow.now)
        uow.session.add(row)
        uow.record({"op": "add_resource", "type": clean_type, "id": clean_id, "context": context})
        uow.audit("resource.create", context=context, target=f"{clean_type}:{clean_id}")
        try:
            revision = uow.commit()
        except IntegrityError as exc:  # registered concurrently by someone else
            raise Conflict(f"{clean_type}:{clean_id} is already registered") from exc
    return Written(_view(row), revision)


def get_resource(rt: Runtime, principal: Principal, resource_type: object, resource_id: object) -> ResourceView:
    clean_type = content_type(rt, resource_type)
    clean_id = ids.resource_id(resource_id)
    with rt.database.session() as session:
        row = _load(session, clean_type, clean_id)
        require_on_resource(session, rt.roles, principal, "read", row)
        return _view(row)


def delete_resource(rt: Runtime, principal: Principal, resource_type: object, resource_id: object) -> Written[None]:
    clean_type = content_type(rt, resource_type)
    clean_id = ids.resource_id(resource_id)
    with rt.unit_of_work(principal) as uow:
        row = uow.lock_resource(clean_type, clean_id)
        require_on_resource(uow.session, rt.roles, principal, "delete", row)
        for rule in uow.rules_where("g", v2=ids.resource_scope(clean_type, clean_id)):
            uow.remove_rule(rule)
        uow.session.delete(row)
        uow.record({"op": "remove_resource", "type": clean_type, "id": clean_id})
        uow.audit("resource.delete", context=row.context, target=f"{clean_type}:{clean_id}")
        revision = uow.commit()
    return Written(None, revision)


def list_resource_members(
    rt: Runtime, principal: Principal, resource_type: object, resource_id: object
) -> list[dict[str, object]]:
    """The resource's own roles in force, by user id: `{user_id, role, expires_at}` (needs `share`)."""
    clean_type = content_type(rt, resource_type)
    clean_id = ids.resource_id(resource_id)
    with rt.database.session() as session:
        row = _load(session, clean_type, clean_id)
        require_on_resource(session, rt.roles, principal, "share", row)
        scope = ids.resource_scope(clean_type, clean_id)
        found: list[dict[str, object]] = [{"user_id": ids.user_of(subject), "role": role,
                  "expires_at": expiry_instant(expiry) if expiry else None}
                 for subject, role, _, expiry in rules.grants_in(session, [scope], rt.clock())]
    return sorted(found, key=lambda member: str(member["user_id"]))


def shared_roles(
    rt: Runtime, principal: Principal, resources: list[tuple[str, str]]
) -> dict[tuple[str, str], dict[str, str]]:
    """The own roles of several resources in one query: user id → role, for those the caller may share.

    For listing pages (the console's content page): the `share` decision is this replica's,
    as for every read; resources the caller may not share are left out of the answer.
    """
    if not principal.is_user:
        raise Forbidden("this needs a user token")
    snapshot = rt.replica.snapshot
    allowed = {ids.resource_scope(t, i): (t, i) for t, i in resources
               if snapshot.index.check(principal.id, "share", t, i, None, snapshot.clock)}
    found: dict[tuple[str, str], dict[str, str]] = {key: {} for key in allowed.values()}
    if allowed:
        with rt.database.session() as session:
            for subject, role, scope, _ in rules.grants_in(session, list(allowed), rt.clock()):
                found[allowed[scope]][ids.user_of(subject)] = role
    return found


def set_resource_role(
    rt: Runtime, principal: Principal, resource_type: object, resource_id: object, user_id: object, role: object,
    expires_at: object = None,
) -> Written[dict[str, object]]:
    """Give a user a role on one resource (until `expires_at`, if given); it adds to the role it has
    in the context, never takes away."""
    clean_type = content_type(rt, resource_type)
    clean_id = ids.resource_id(resource_id)
    user = ids.user_id(user_id)
    new_role = valid_role(rt, role)
    scope = ids.resource_scope(clean_type, clean_id)
    with rt.unit_of_work(principal) as uow:
        row = uow.lock_resource(clean_type, clean_id)  # serialized with its deletion: no role outlives it
        until = requested_expiry(expires_at, uow.now)
        require_on_resource(uow.session, rt.roles, principal, "share", row)
        wanted: Rule = ("g", ids.subject_of(user), new_role, scope)
        if until is not None:
            wanted = (*wanted, expiry_value(until))
        view: dict[str, object] = {"user_id": user, "role": new_role, "expires_at": until}
        current = uow.rules_where("g", v0=ids.subject_of(user), v2=scope)
        if current == [wanted]:
            return Written(view, None)
        for rule in current:
            uow.remove_rule(rule)
        uow.add_rule(wanted)
        detail: dict[str, object] = {"user_id": user, "role": new_role}
        if until is not None:
            detail["expires_at"] = wanted[4]
        uow.audit("resource.share", context=row.context, target=scope, detail=detail)
        revision = uow.commit()
    return Written(view, revision)


def remove_resource_role(
    rt: Runtime, principal: Principal, resource_type: object, resource_id: object, user_id: object
) -> Written[None]:
    clean_type = content_type(rt, resource_type)
    clean_id = ids.resource_id(resource_id)
    user = ids.user_id(user_id)
    scope = ids.resource_scope(clean_type, clean_id)
    with rt.unit_of_work(principal) as uow:
        row = uow.lock_resource(clean_type, clean_id)
        require_on_resource(uow.session, rt.roles, principal, "share", row)
        current = uow.rules_where("g", v0=ids.subject_of(user), v2=scope)
        if not current:
            raise NotFound("that user has no role on this resource")
        for rule in current:
            uow.remove_rule(rule)
        uow.audit("resource.unshare", context=row.context, target=scope, detail={"user_id": user})
        revision = uow.commit()
    return Written(None, revision)

