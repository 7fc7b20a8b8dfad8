"""The route file `policies/routes.yaml`: which HTTP request of a protected service needs which permission.

Forward-auth (`/v1/authorize`) asks the route table (`authz.policy.route_table`) what a
proxied request is: method and path template → (object type, id from a path parameter or
none, action). Admins edit the file like the other policy files and it is applied with
them (`load_policy_dir` reads it into the document), so every mistake is reported with file
and line, checked against the policy document (unknown type or action, an id route on a
type that is never registered, duplicate routes, malformed templates).

    routes:
      GET /algorithms:            {type: algorithm, action: read}     # type-level, in X-Account-Context
      POST /algorithms:           {type: algorithm, action: create}
      DELETE /algorithms/{id}:    {type: algorithm, id: id, action: delete}
      GET /orgs/{org}/jobs:       {type: job, context: org, action: read}
"""

from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator, PlainValidator, model_validator

from authz.policy.document import PolicyDocument
from authz.policy.route_table import ROUTES_FILE, Route, RoutePattern, RouteTable
from authz.policy.yaml_nodes import ANY, Places, PolicyModel, Report, YamlFile, load, refuse


class RouteSpec(PolicyModel):
    type: str
    action: str
    id: str | None = None  # the path parameter holding the resource's id
    context: str | None = None  # the path parameter holding the organization id

    @model_validator(mode="after")
    def _id_or_context(self) -> "RouteSpec":
        if self.id is not None and self.context is not None:
            raise refuse("give id or context, not both (a resource's context is its own)")
        return self


def _none_is_empty(value: object) -> object:
    return {} if value is None else value


class RouteFile(PolicyModel):
    routes: Annotated[
        dict[Annotated[RoutePattern, PlainValidator(RoutePattern.parse)], RouteSpec], BeforeValidator(_none_is_empty)
    ] = {}


PLACES = Places(
    root="the file",
    root_model=RouteFile,
    names={("routes", ANY): ("route {1!r}", RouteSpec), ("routes", ANY, ANY): ("{2} of route {1!r}", None)},
)


def _route(pattern: RoutePattern, spec: RouteSpec, document: PolicyDocument, source: YamlFile,
           report: Report) -> Route | None:
    """The route of one entry, checked against the policy document; None (reported) when it does not fit."""
    key = pattern.key
    loc = ("routes", key)
    object_type = document.types.get(spec.type)
    if object_type is None:
        report.at(source, (*loc, "type"), f"route {key!r}: unknown object type {spec.type!r}")
        return None
    if spec.action not in object_type.actions:
        known = ", ".join(sorted(object_type.actions))
        report.at(source, (*loc, "action"), f"route {key!r}: type {spec.type!r} has no action {spec.action!r} "
                  f"(it has {known})")
        return None
    declared = [p for p in pattern.params if p is not None]
    for name, param in (("id", spec.id), ("context", spec.context)):
        if param is not None and param not in declared:
            choices = ", ".join("{" + p + "}" for p in declared) or "none"
            report.at(source, (*loc, name), f"route {key!r}: {name} names a path parameter; {param!r} is not one "
                      f"(the template has {choices})")
            return None
    if spec.id is not None and not object_type.content:
        report.at(source, (*loc, "id"), f"route {key!r}: {spec.type!r} is not a content type, so no {spec.type} "
                  "is ever registered by id; use `context:` or a type-level route")
        return None
    return Route(method=pattern.method, template=pattern.template, segments=pattern.segments, params=pattern.params,
                 resource_type=spec.type, action=spec.action, id_param=spec.id, context_param=spec.context,
                 file=source.file, line=source.line(loc, of_key=True))


def load_routes(directory: Path, document: PolicyDocument) -> RouteTable:
    """Read and validate `<directory>/routes.yaml` against `document`; no file means no routes.

    Raises PolicyInvalid listing every error with file and line.
    """
    path = directory / ROUTES_FILE
    if not path.is_file():
        return RouteTable.of([], None)
    report = Report()
    loaded = load(path, PLACES, RouteFile, report)
    routes: list[Route] = []
    if loaded is not None:
        shapes: dict[tuple[str, tuple[str | None, ...]], Route] = {}
        for pattern, spec in loaded.model.routes.items():
            route = _route(pattern, spec, document, loaded.source, report)
            if route is None:
                continue
            first = shapes.setdefault((route.method, route.segments), route)
            if first is not route:
                line = loaded.source.line(("routes", pattern.key), of_key=True)
                report.add(loaded.source.file, line, f"route {pattern.key!r} matches the same requests as "
                           f"{first.name!r} (line {first.line})")
                continue
            routes.append(route)
    report.raise_if_any()
    return RouteTable.of(routes, str(path))


__all__ = ["ROUTES_FILE", "load_routes"]
