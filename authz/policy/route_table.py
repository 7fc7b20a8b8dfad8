"""The route table forward-auth matches against, and its JSON form in the policy document.

A route maps `METHOD /path/{param}` to (object type, id from a path parameter or none,
action). The table is part of the policy in force (`PolicyDocument.routes`): applied with
it at one revision, stored with it, carried with it by the changelog and `GET /v1/snapshot`,
so every replica and sidecar maps a request exactly as the others do at that revision.
`authz.policy.routes` reads and validates the file `policies/routes.yaml` into one.

Matching is strict on purpose: a concrete path is split on `/` before percent-decoding, so
an encoded slash can never create a segment; empty, `.` and `..` segments are refused
outright (never resolved), so `/algorithms/../orgs` cannot reach another route; the
query string and fragment are ignored. A literal segment wins over a parameter.
"""

import re
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import unquote, urlsplit

from authz.domain import ids
from authz.domain.errors import Invalid
from authz.policy.yaml_nodes import refuse

ROUTES_FILE = "routes.yaml"  # in the policy directory, beside the role/permission files

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
MAX_PATH_LENGTH = 4096

_LITERAL = re.compile(r"[A-Za-z0-9._~:@-]+")
_PARAM = re.compile(r"\{([a-z_][a-z0-9_]{0,63})\}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Route:
    """One line of the route file."""

    method: str
    template: str
    segments: tuple[str | None, ...]  # a literal, or None for a parameter
    params: tuple[str | None, ...]  # the parameter's name at each parameter segment
    resource_type: str
    action: str
    id_param: str | None
    context_param: str | None
    # Where the route file said it (`authz routes test`); a route read back from the stored
    # policy has none, and neither is part of what the route means.
    file: str | None = field(default=None, compare=False)
    line: int | None = field(default=None, compare=False)

    @property
    def name(self) -> str:
        return f"{self.method} {self.template}"

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.file is not None else "the policy in force"

    def to_json(self) -> dict[str, str]:
        """As written in routes.yaml: type and action, and the id or context parameter when given."""
        spec = {"type": self.resource_type, "action": self.action}
        if self.id_param is not None:
            spec["id"] = self.id_param
        if self.context_param is not None:
            spec["context"] = self.context_param
        return spec

    def specificity(self) -> tuple[int, ...]:
        """Literals before parameters, segment by segment: the most specific route wins."""
        return tuple(1 if s is None else 0 for s in self.segments)


@dataclass(frozen=True)
class RouteMatch:
    """What a concrete request maps to; ids are raw path text, validated by the caller."""

    route: Route
    resource_type: str
    action: str
    resource_id: str | None
    context: str | None  # from a path parameter (`context:`), else None

    def describe(self) -> str:
        target = f"{self.resource_type}:{self.resource_id}" if self.resource_id is not None else self.resource_type
        where = f" in context {self.context}" if self.context is not None else ""
        return f"{self.action} {target}{where}"


@dataclass(frozen=True)
class RouteTable:
    """The routes of one file, indexed by method and segment count for matching."""

    routes: tuple[Route, ...] = ()
    # The file they came from (`routes.yaml` when read back from the stored policy); None when
    # the policy directory has none, which forward-auth answers by denying every request.
    source: str | None = field(default=None, compare=False)
    _by_shape: dict[tuple[str, int], tuple[Route, ...]] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, routes: list[Route], source: str | None) -> "RouteTable":
        by_shape: dict[tuple[str, int], list[Route]] = {}
        for route in routes:
            by_shape.setdefault((route.method, len(route.segments)), []).append(route)
        ordered = {key: tuple(sorted(group, key=Route.specificity)) for key, group in by_shape.items()}
        return cls(tuple(routes), source, ordered)

    def __len__(self) -> int:
        return len(self.routes)

    def to_json(self) -> dict[str, dict[str, str]] | None:
        """The routes as routes.yaml writes them (`{"GET /a/{id}": {"type": ..., ...}}`); None without a file."""
        if self.source is None:
            return None
        return {route.name: route.to_json() for route in self.routes}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> "RouteTable":
        """The table of `to_json`; None (no route file, or a policy stored before routes were) is no routes."""
        if data is None:
            return cls.of([], None)
        routes = []
        for key, spec in data.items():
            pattern = RoutePattern.parse(key)
            routes.append(Route(method=pattern.method, template=pattern.template, segments=pattern.segments,
                                params=pattern.params, resource_type=spec["type"], action=spec["action"],
                                id_param=spec.get("id"), context_param=spec.get("context")))
        return cls.of(routes, ROUTES_FILE)

    def match(self, method: str, path: str) -> RouteMatch | None:
        """The route of `method path` (a concrete URI, query allowed), or None when none applies.

        Raises `Invalid` (field "path") for paths that are refused before any matching:
        traversal, empty segments, control characters, undecodable escapes.
        """
        segments = split_path(path)
        verb = method.upper()
        found = self._match(verb, segments)
        if found is None and verb == "HEAD":  # HEAD is GET without a body
            found = self._match("GET", segments)
        return found

    def _match(self, method: str, segments: list[str]) -> RouteMatch | None:
        for route in self._by_shape.get((method, len(segments)), ()):
            values: dict[str, str] = {}
            for expected, name, actual in zip(route.segments, route.params, segments, strict=True):
                if expected is None:
                    assert name is not None
                    values[name] = actual
                elif expected != actual:
                    break
            else:
                return RouteMatch(
                    route=route,
                    resource_type=route.resource_type,
                    action=route.action,
                    resource_id=values[route.id_param] if route.id_param else None,
                    context=values[route.context_param] if route.context_param else None,
                )
        return None


def split_path(uri: str) -> list[str]:
    """The decoded segments of a request URI's path; refuses anything that could be read two ways."""
    if len(uri) > MAX_PATH_LENGTH:
        raise Invalid(f"the path is longer than {MAX_PATH_LENGTH} characters", field="path")
    if uri.startswith(("http://", "https://")):  # absolute-form request target
        uri = urlsplit(uri).path or "/"
    path = uri.split("#", 1)[0].split("?", 1)[0]
    if not path.startswith("/"):
        raise Invalid("the path must start with /", field="path")
    if path == "/":
        return []
    raw_segments = path[1:].split("/")
    segments: list[str] = []
    for raw in raw_segments:
        try:
            segment = unquote(raw, errors="strict")
        except UnicodeDecodeError:
            raise Invalid("the path has a percent-escape that is not UTF-8", field="path") from None
        if segment == "":
            raise Invalid("the path has an empty segment (// or a trailing /)", field="path")
        if segment in (".", ".."):
            raise Invalid("the path has a . or .. segment; traversal is refused", field="path")
        if "/" in segment or "\\" in segment:
            raise Invalid("the path has an encoded slash or a backslash", field="path")
        if _CONTROL.search(segment):
            raise Invalid("the path has a control character", field="path")
        segments.append(segment)
    return segments


class RoutePattern(NamedTuple):
    """A route's key, `METHOD /path/{param}`, split into what matching needs."""

    key: str  # as written in the file
    method: str
    template: str
    segments: tuple[str | None, ...]  # a literal, or None for a parameter
    params: tuple[str | None, ...]  # the parameter's name at each parameter segment

    @classmethod
    def parse(cls, key: object) -> "RoutePattern":
        """The pattern of a route key; refuses (pydantic error) anything but `METHOD /template`."""
        text = str(key)
        method, _, template = text.partition(" ")
        template = template.strip()
        if method not in METHODS or not template:
            raise refuse(f"route {text!r} must be `METHOD /path` with METHOD one of {', '.join(METHODS)}")
        segments, params = _parse_template(template)
        return cls(text, method, template, segments, params)


def _parse_template(template: str) -> tuple[tuple[str | None, ...], tuple[str | None, ...]]:
    if not template.startswith("/"):
        raise refuse(f"path template {template!r} must start with /")
    if any(c in template for c in "?#%*\\ ") or _CONTROL.search(template):
        raise refuse(f"path template {template!r} may not contain ? # % * \\ or spaces")
    if template == "/":
        return (), ()
    segments: list[str | None] = []
    params: list[str | None] = []
    for part in template[1:].split("/"):
        param = _PARAM.fullmatch(part)
        if param is not None:
            name = param.group(1)
            if name in params:
                raise refuse(f"path template {template!r} uses parameter {{{name}}} twice")
            segments.append(None)
            params.append(name)
        elif part in ("", ".", ".."):
            raise refuse(f"path template {template!r} has an empty, . or .. segment")
        elif "{" in part or "}" in part:
            raise refuse(f"path template {template!r}: a parameter must be a whole segment like {{id}}")
        elif _LITERAL.fullmatch(part) is None:
            raise refuse(
                f"path template {template!r}: segment {part!r} has characters outside A-Z a-z 0-9 . _ ~ - : @"
            )
        else:
            segments.append(part)
            params.append(None)
    return tuple(segments), tuple(params)


def validated_id(match: RouteMatch) -> RouteMatch:
    """The match with its id and context checked against the strict id patterns (DESIGN.md invariant 7).

    Raises `Invalid` naming the path parameter.
    """
    route = match.route
    if match.resource_id is not None:
        ids.resource_id(match.resource_id, f"path.{route.id_param}")
    if match.context is not None and match.context != ids.PERSONAL:
        ids.org_id(match.context, f"path.{route.context_param}")
    return match


__all__ = [
    "METHODS",
    "ROUTES_FILE",
    "Route",
    "RouteMatch",
    "RoutePattern",
    "RouteTable",
    "split_path",
    "validated_id",
]
