"""The OpenID AuthZEN Authorization API 1.0, mapped onto authz's own decisions and listings.

AuthZEN speaks of a subject `{type, id}`, an action `{name}` and a resource `{type, id}`.
Here a subject of type `user` is an authz user; any other subject type is unknown to
authz, so it is denied and found in no search. `properties` and `context` are accepted
and ignored: authz decides from its own data (roles, memberships, resources), never from
attributes the caller asserts. A name or id that cannot exist in authz (it fails authz's
identifier patterns) is denied like an unknown one, with the reason in the decision's
context, rather than failing the request.

Authorization of the caller is /v1/check's: a user token may ask only about itself, a
service key with `check` about anyone (`decisions.subject_for`).
"""

from dataclasses import dataclass
from typing import Any

from authz.domain import ids
from authz.domain.cursors import CursorCodec
from authz.domain.errors import Forbidden, Invalid
from authz.domain.principal import SCOPE_CHECK, Principal
from authz.engine.replica import Snapshot
from authz.services import decisions

USER = "user"
SEMANTICS = ("execute_all", "deny_on_first_deny", "permit_on_first_permit")


@dataclass(frozen=True)
class Question:
    """One access evaluation: entity types, ids and the action name, as sent."""

    subject_type: str
    subject_id: str
    action: str
    resource_type: str
    resource_id: str


def evaluate(snapshot: Snapshot, principal: Principal, question: Question) -> dict[str, Any]:
    """`{"decision": bool}`, with `context.reason` when the question names what cannot exist."""
    may_ask(principal, question.subject_id)
    if question.subject_type != USER:
        return _denied(f"subject type {question.subject_type!r} is not known here (only {USER!r})")
    try:
        request = decisions.check_request(
            principal, subject=question.subject_id, action=question.action, resource_type=question.resource_type,
            resource_id=question.resource_id, context=None, default_context=None,
        )
    except Invalid as exc:
        return _denied(exc.detail)
    return {"decision": decisions.check(snapshot, request)}


def evaluate_all(
    snapshot: Snapshot, principal: Principal, items: list[Question | str], semantic: str
) -> list[dict[str, Any]]:
    """Each question in order; a str item is the reason an item was malformed (denied, as the spec says).

    `deny_on_first_deny` stops after the first denial, `permit_on_first_permit` after the
    first permit; the answer then has fewer items than the request.
    """
    if semantic not in SEMANTICS:
        raise Invalid(f"options.evaluations_semantic must be one of {', '.join(SEMANTICS)}",
                      field="options.evaluations_semantic")
    results: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, str):
            result: dict[str, Any] = {"decision": False, "context": {"error": {"status": 400, "message": item}}}
        else:
            result = evaluate(snapshot, principal, item)
        results.append(result)
        if semantic == "deny_on_first_deny" and not result["decision"]:
            break
        if semantic == "permit_on_first_permit" and result["decision"]:
            break
    return results


@dataclass(frozen=True)
class Found:
    results: list[dict[str, str]]
    next_token: str  # "" on the last page, as AuthZEN says


def search_subjects(snapshot: Snapshot, principal: Principal, *, cursors: CursorCodec, subject_type: str, action: str,
                    resource_type: str, resource_id: str, limit: int, token: str | None) -> Found:
    """Users who may do `action` on the resource (paged like /v1/list-subjects)."""
    may_ask(principal, None)
    if subject_type != USER or not _plausible(action, resource_type):
        return Found([], "")
    listing = decisions.list_subjects(snapshot, principal, cursors=cursors, action=action, resource_type=resource_type,
                                      resource_id=resource_id, limit=limit, cursor=token or None)
    return Found([{"type": USER, "id": user} for user in listing.items], listing.next_cursor or "")


def search_resources(snapshot: Snapshot, principal: Principal, *, cursors: CursorCodec, subject_type: str,
                     subject_id: str, action: str, resource_type: str, limit: int, token: str | None) -> Found:
    """Resources of `resource_type` the user may do `action` on (paged like /v1/list-resources)."""
    may_ask(principal, subject_id)
    if subject_type != USER or not _plausible(action, resource_type):
        return Found([], "")
    try:
        ids.user_id(subject_id)
    except Invalid:
        return Found([], "")  # no such user can exist
    listing = decisions.list_resources(snapshot, principal, cursors=cursors, subject=subject_id, action=action,
                                       resource_type=resource_type, context=None, default_context=None, limit=limit,
                                       cursor=token or None)
    return Found([{"type": resource_type, "id": resource_id} for resource_id in listing.items],
                 listing.next_cursor or "")


def search_actions(snapshot: Snapshot, principal: Principal, *, subject_type: str, subject_id: str, resource_type: str,
                   resource_id: str) -> Found:
    """The policy's actions on `resource_type` the user may do on this resource, by name."""
    may_ask(principal, subject_id)
    object_type = snapshot.policy.types.get(resource_type) if snapshot.policy is not None else None
    if subject_type != USER or object_type is None:
        return Found([], "")
    names = []
    for action in sorted(object_type.actions):
        try:
            request = decisions.check_request(principal, subject=subject_id, action=action,
                                              resource_type=resource_type, resource_id=resource_id,
                                              context=None, default_context=None)
        except Invalid:
            return Found([], "")  # an id no user or resource can have
        if decisions.check(snapshot, request):
            names.append(action)
    return Found([{"name": name} for name in names], "")


def may_ask(principal: Principal, subject_id: str | None) -> None:
    """As /v1/check: a user token asks only about itself; a service key needs `check`."""
    if principal.is_user:
        if subject_id is not None and subject_id != principal.id:
            raise Forbidden("a user token may only ask about its own subject")
    elif not principal.has_scope(SCOPE_CHECK):
        raise Forbidden("this service key lacks the `check` scope")


def _plausible(*names: str) -> bool:
    """False when a name cannot be an authz action or type (then nothing can match it)."""
    try:
        for value in names:
            ids.name(value, "name")
    except Invalid:
        return False
    return True


def _denied(reason: str) -> dict[str, Any]:
    return {"decision": False, "context": {"reason": reason}}
