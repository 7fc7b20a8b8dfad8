"""Decision queries: check, batch, explain, and the reverse queries.

Checks are answered from one published snapshot of this replica (DESIGN.md invariant 4):
the caller takes `replica.snapshot` (or awaits `replica.reached(min_revision)`) once and
passes it to every function here, so the answer and the revision it reports agree.
`explain` re-evaluates the request with pycasbin over the rules that can affect it.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from authz.domain import ids
from authz.domain.cursors import CursorCodec
from authz.domain.errors import Forbidden, Invalid, Malformed
from authz.domain.principal import SCOPE_CHECK, Principal
from authz.engine.replica import Snapshot
from authz.policy.model import build_enforcer, casbin_request
from authz.services.runtime import Runtime

MAX_BATCH = 1000
DEFAULT_LISTING_PAGE = 1000
MAX_LISTING_PAGE = 10000


class CheckRequest(NamedTuple):
    """A validated question: may `user` do `action` on `resource_type[:resource_id]` (in `context`)?

    A NamedTuple rather than a frozen dataclass: batches build up to 1000 per request, and
    a tuple is several times cheaper to create.
    """

    user: str
    action: str
    resource_type: str
    resource_id: str | None
    context: str | None


def subject_for(principal: Principal, subject: object | None, field: str = "subject") -> str:
    """Users ask about themselves; service keys with `check` ask about anyone."""
    if principal.is_user:
        if subject is not None and subject != principal.id:
            raise Forbidden("a user token may only ask about its own subject; omit `subject`")
        return principal.id
    if not principal.has_scope(SCOPE_CHECK):
        raise Forbidden("this service key lacks the `check` scope")
    if subject is None:
        raise Invalid("subject is required when a service key asks", field=field)
    return ids.user_id(subject, field)


def resolve_context(user: str, context: object | None, default: str | None, field: str = "context") -> str | None:
    """`personal`, `user:<id>` or an org id; `personal` means the subject's own account."""
    value = default if context is None else context
    if value is None:
        return None
    if value == ids.PERSONAL:
        return ids.personal_context(user)
    return ids.context(value, field)


def check_request(
    principal: Principal,
    *,
    subject: object | None,
    action: object,
    resource_type: object,
    resource_id: object | None,
    context: object | None,
    default_context: str | None,
) -> CheckRequest:
    """Validate a decision question; unknown names are not errors (they are simply denied)."""
    user = subject_for(principal, subject)
    clean_action = ids.name(action, "action")
    clean_type = ids.name(resource_type, "resource.type")
    clean_id = ids.resource_id(resource_id, "resource.id") if resource_id is not None else None
    clean_context = resolve_context(user, context, default_context)
    return CheckRequest(user, clean_action, clean_type, clean_id, clean_context)


BatchItem = tuple[object | None, object, object, object | None, object | None]
"""(subject, action, resource type, resource id, context) of one question in a batch."""


def check_requests(principal: Principal, items: Iterable[BatchItem], default_context: str | None) -> list[CheckRequest]:
    """Validate a batch; an invalid question is named by its position (`checks.<n>.<field>`).

    The position is only formatted when a question is invalid: a batch of 1000 valid
    questions pays for validation alone.
    """
    requests: list[CheckRequest] = []
    for subject, action, resource_type, resource_id, context in items:
        try:
            requests.append(check_request(
                principal, subject=subject, action=action, resource_type=resource_type,
                resource_id=resource_id, context=context, default_context=default_context,
            ))
        except Invalid as exc:
            prefix = f"checks.{len(requests)}."
            raise Invalid(prefix + exc.detail, field=prefix + (exc.field or "")) from None
    return requests


def check(snapshot: Snapshot, request: CheckRequest) -> bool:
    return snapshot.index.check(
        request.user, request.action, request.resource_type, request.resource_id, request.context, snapshot.clock
    )


def check_batch(snapshot: Snapshot, requests: list[CheckRequest]) -> list[bool]:
    index = snapshot.index
    clock = snapshot.clock
    return [index.check(r.user, r.action, r.resource_type, r.resource_id, r.context, clock) for r in requests]


def explain(rt: Runtime, snapshot: Snapshot, request: CheckRequest) -> dict[str, Any]:
    """The decision with its reason: the role and policy rule that allowed it, or why not.

    pycasbin evaluates the request over the policy rules and the subject's own role rules
    in that context and on that resource (no other rule can change this decision).
    """
    index = snapshot.index
    decision = index.decide(request.user, request.action, request.resource_type, request.resource_id, request.context,
                            snapshot.clock)
    if decision.via == "unknown_resource" or (request.resource_id is not None and decision.role is None):
        # A subject with no role where the resource lives learns exactly what an unknown id
        # tells it: not the owning org, not the owner of a personal account (API.md, Decisions).
        return {"allowed": False, "explanation": {
            "context": None, "role": None, "via": "unknown_resource",
            "reason": f"{request.resource_type}:{request.resource_id} is not a registered resource you have a role on",
        }}
    explanation: dict[str, Any] = {"context": decision.context, "role": decision.role, "via": decision.via}
    if decision.context is None:
        explanation["reason"] = "no context: give `context` for a type-level action"
        return {"allowed": False, "explanation": explanation}
    subject = ids.subject_of(request.user)
    scope = ids.resource_scope(request.resource_type, request.resource_id) if request.resource_id else ""
    assert snapshot.policy is not None, "a loaded snapshot has its policy"
    rules = list(snapshot.policy.rules())
    context_role = index.role_in(request.user, decision.context, snapshot.clock)
    if context_role is not None and decision.context != subject:
        rules.append(("g", subject, context_role, decision.context))
    scoped_role = (index.resource_role(request.user, request.resource_type, request.resource_id, snapshot.clock)
                   if request.resource_id else None)
    if scoped_role is not None:
        rules.append(("g", subject, scoped_role, scope))
    enforcer = build_enforcer(rt.settings.policy_model, rules)
    allowed, rule = enforcer.enforce_ex(
        *casbin_request(subject, decision.context, request.resource_type, scope, request.action)
    )
    if allowed != decision.allowed:  # the compiled index and Casbin must agree
        raise RuntimeError(f"decision mismatch for {request}: index={decision.allowed} casbin={allowed}")
    if allowed:
        explanation["rule"] = ["p", *rule]
        how = {"personal": "owns this personal account", "resource": "has this role on the resource"}.get(
            decision.via, "is a member with this role"
        )
        explanation["reason"] = (f"{request.user} {how}: {decision.role!r}, "
                                 f"which may {request.action} {request.resource_type}")
    elif decision.role is None:
        explanation["reason"] = f"{request.user} has no role in this context"
    else:
        explanation["reason"] = f"role {decision.role!r} does not grant {request.action} on {request.resource_type}"
    return {"allowed": allowed, "explanation": explanation}


@dataclass(frozen=True)
class Listing:
    """One page of a reverse query, the revision it was read at, and the next page's cursor."""

    items: list[str]
    revision: int
    next_cursor: str | None


def page_limit(limit: object) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LISTING_PAGE:
        raise Invalid(f"limit must be an integer from 1 to {MAX_LISTING_PAGE}", field="limit")
    return limit


def _after(cursors: CursorCodec, query: tuple[str, ...], cursor: object | None) -> str | None:
    if cursor is None:
        return None
    if not isinstance(cursor, str):
        raise Invalid("cursor must be a string", field="cursor")
    position = cursors.decode(query, cursor)
    if not isinstance(position, str):
        raise Malformed("cursor is not a cursor of this listing", field="cursor")
    return position


def _listing(cursors: CursorCodec, query: tuple[str, ...], found: list[str], limit: int, revision: int) -> Listing:
    """`found` holds up to limit + 1 ids: one more than the page says whether another page follows."""
    if len(found) > limit:
        page = found[:limit]
        return Listing(page, revision, cursors.encode(query, page[-1]))
    return Listing(found, revision, None)


def list_resources(
    snapshot: Snapshot,
    principal: Principal,
    *,
    cursors: CursorCodec,
    subject: object | None,
    action: object,
    resource_type: object,
    context: object | None,
    default_context: str | None,
    limit: object = DEFAULT_LISTING_PAGE,
    cursor: object | None = None,
) -> Listing:
    """A page of the resources of `resource_type` the subject may do `action` on (in `context`, if given).

    Ordered by id; the cursor is a keyset position (the last id shown), authenticated and
    bound to this query, so an id that exists for the whole walk is shown exactly once,
    whatever changes between pages and whichever replica serves them.
    """
    user = subject_for(principal, subject)
    clean_action = ids.name(action, "action")
    clean_type = ids.name(resource_type, "type")
    clean_context = resolve_context(user, context, default_context)
    size = page_limit(limit)
    query = ("list-resources", user, clean_action, clean_type, clean_context or "")
    after = _after(cursors, query, cursor)
    found = snapshot.index.list_resources(user, clean_action, clean_type, clean_context, after, size + 1,
                                          snapshot.clock)
    return _listing(cursors, query, found, size, snapshot.revision)


def list_subjects(
    snapshot: Snapshot, principal: Principal, *, cursors: CursorCodec, action: object, resource_type: object,
    resource_id: object | None, limit: object = DEFAULT_LISTING_PAGE, cursor: object | None = None,
) -> Listing:
    """A page of the users who may do `action` on the resource, ordered by id (paged like `list_resources`).

    A service key needs `check`; a user may ask only about a resource it may read itself.
    """
    clean_action = ids.name(action, "action")
    clean_type = ids.name(resource_type, "resource.type")
    if resource_id is None:
        raise Invalid("resource.id is required", field="resource.id")
    clean_id = ids.resource_id(resource_id, "resource.id")
    size = page_limit(limit)
    if principal.is_user:
        if not snapshot.index.check(principal.id, "read", clean_type, clean_id, None, snapshot.clock):
            raise Forbidden("you may not read this resource")
    elif not principal.has_scope(SCOPE_CHECK):
        raise Forbidden("this service key lacks the `check` scope")
    query = ("list-subjects", clean_action, clean_type, clean_id)
    after = _after(cursors, query, cursor)
    found = snapshot.index.list_subjects(clean_action, clean_type, clean_id, after, size + 1, snapshot.clock)
    return _listing(cursors, query, found, size, snapshot.revision)
