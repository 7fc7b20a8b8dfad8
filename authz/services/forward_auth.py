"""Forward-auth: decide a request a proxy is about to pass to a protected service.

nginx `auth_request`, Traefik ForwardAuth and Envoy's HTTP `ext_authz` each describe the
original request differently; `original_request` reads all three and refuses when they
disagree (so a client cannot add a second, friendlier description of its own request).
`authorize_original` maps it through the routes of the snapshot's policy and answers from
the same snapshot, so the mapping and the decision are of one revision, the same on every
replica and sidecar. Every refusal is a decision with a reason, never an exception: the
proxy only understands 200, 401 and 403.
"""

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from authz.domain import ids
from authz.domain.errors import Invalid
from authz.domain.principal import Principal
from authz.engine.replica import Snapshot
from authz.policy.route_table import ROUTES_FILE, RouteMatch, validated_id

log = logging.getLogger("authz.forward_auth")
MAX_LOGGED_PATH = 200


@dataclass(frozen=True)
class OriginalRequest:
    """The method and URI of the request the proxy asks about.

    `refusal` is set when the description itself is unacceptable (two disagreeing
    descriptions, a malformed method): such a request is denied, with that reason.
    """

    method: str
    uri: str
    refusal: tuple[str, str] | None = None  # (field, reason)

    @property
    def full_path(self) -> str:
        """The path without query string or fragment."""
        return self.uri.split("#", 1)[0].split("?", 1)[0]

    @property
    def path(self) -> str:
        """The path for logs: no query string (it may hold secrets), shortened."""
        path = self.full_path
        return path if len(path) <= MAX_LOGGED_PATH else path[:MAX_LOGGED_PATH] + "…"


@dataclass(frozen=True)
class ForwardDecision:
    """The answer for the proxy: allowed or not, why, and what the upstream may learn."""

    allowed: bool
    reason: str
    subject: str | None = None
    context: str | None = None
    match: RouteMatch | None = None
    field: str | None = None  # the input that was refused, when one was


_METHOD_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _method(value: str) -> str | None:
    method = value.strip().upper()
    if not method or len(method) > 16 or not set(method) <= _METHOD_CHARS:
        return None
    return method


def original_request(own_method: str, suffix: str | None, headers: Mapping[str, str]) -> OriginalRequest:
    """The original request, from X-Original-*, X-Forwarded-* or the path after /v1/authorize.

    `headers` has lower-case names. A method header may be absent: nginx subrequests and
    Envoy checks carry the original method themselves. Raises `Invalid` (naming
    X-Original-URI) only when nothing describes the request: the proxy is misconfigured.
    """
    candidates: list[tuple[str, str | None, str]] = []  # (field, method, uri)
    for prefix, uri_field, method_field in (
        ("x-original", "X-Original-URI", "X-Original-Method"),
        ("x-forwarded", "X-Forwarded-Uri", "X-Forwarded-Method"),
    ):
        uri = headers.get(f"{prefix}-uri")
        if uri:
            method_header = headers.get(f"{prefix}-method")
            if method_header is None:
                candidates.append((uri_field, _method(own_method), uri))
            else:
                candidates.append((method_field, _method(method_header), uri))
    if suffix:  # Envoy ext_authz: the original path appended to the check path, with its own method
        candidates.append(("path", _method(own_method), suffix))
    if not candidates:
        raise Invalid(
            "no original request: send X-Original-Method/X-Original-URI (nginx), "
            "X-Forwarded-Method/X-Forwarded-Uri (Traefik) or append the path (Envoy)",
            field="X-Original-URI",
        )
    first_field, first_method, first_uri = candidates[0]
    first = OriginalRequest(first_method or "?", first_uri)
    for field, method, _ in candidates:
        if method is None:
            return OriginalRequest(first.method, first.uri, (field, f"{field} is not an HTTP method"))
    for field, method, uri in candidates[1:]:
        other = OriginalRequest(method or "?", uri)
        if (other.method, other.full_path) != (first.method, first.full_path):
            conflict = (field, f"{first_field} and {field} describe different requests")
            return OriginalRequest(first.method, first.uri, conflict)
    return first


def _context(principal: Principal, header: str | None) -> str:
    value = header or ids.PERSONAL
    if value == ids.PERSONAL:
        return ids.personal_context(principal.id)
    try:
        return ids.org_id(value, "X-Account-Context")
    except Invalid:
        raise Invalid("X-Account-Context must be `personal` or an organization id", field="X-Account-Context") from None


def _deny(request: OriginalRequest, reason: str, *, field: str | None = None, level: int = logging.INFO,
          subject: str | None = None, context: str | None = None, match: RouteMatch | None = None) -> ForwardDecision:
    log.log(level, "forward-auth denied: %s", reason,
            extra={"method": request.method, "path": request.path, "reason": reason})
    return ForwardDecision(False, reason, subject, context, match, field)


def authorize_original(
    snapshot: Snapshot, principal: Principal, request: OriginalRequest, account_context: str | None
) -> ForwardDecision:
    """May `principal` make `request`? Mapped by the routes of `snapshot`'s policy, decided by its index.

    Unknown routes, hostile paths and ids are denied; so is everything while the policy has no route file.
    """
    if request.refusal is not None:
        field, reason = request.refusal
        return _deny(request, reason, field=field, level=logging.WARNING)
    if not principal.is_user:
        return _deny(request, "forward-auth decides for user tokens; a service key is not a user")
    assert snapshot.policy is not None, "requests are answered from a loaded snapshot (require_fresh)"
    routes = snapshot.policy.routes
    try:
        found = routes.match(request.method, request.uri)
    except Invalid as exc:
        return _deny(request, f"refused path: {exc.detail}", field=exc.field, level=logging.WARNING)
    if found is None:
        where = "the route file" if routes.source is not None else f"the policy (it has no {ROUTES_FILE})"
        return _deny(request, f"no route in {where} for {request.method} {request.path}",
                     field="path", level=logging.WARNING)
    try:
        match = validated_id(found)
        context = match.context if match.context is not None else _context(principal, account_context)
        if context == ids.PERSONAL:
            context = ids.personal_context(principal.id)
    except Invalid as exc:
        return _deny(request, exc.detail, field=exc.field, level=logging.WARNING, match=found)
    index = snapshot.index
    if match.resource_id is not None:
        resource_context = index.context_of(match.resource_type, match.resource_id)
        context = resource_context if resource_context is not None else context
    allowed = index.check(principal.id, match.action, match.resource_type, match.resource_id, context, snapshot.clock)
    if not allowed:
        return _deny(request, f"{principal.id} may not {match.describe()}", subject=principal.id, match=match,
                     context=context)
    return ForwardDecision(True, f"{principal.id} may {match.describe()}", principal.id, context, match)
