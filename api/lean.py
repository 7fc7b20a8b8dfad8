"""What FastAPI's parameter machinery does for a route, done directly, for the check routes.

Resolving a pydantic body, a header and a query parameter through FastAPI's dependency
solver costs several times the decision itself (profile in the README, "Performance"). The
check routes take only the `Request` and use these helpers, which raise the same
`RequestValidationError` (same `loc`, so the same problem+json with field names) as
FastAPI would; the routes' `openapi_extra` documents what FastAPI can no longer see.
"""

from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, TypeAdapter, ValidationError

M = TypeVar("M", bound=BaseModel)
_BOOL = TypeAdapter(bool)


async def json_body(request: Request, model: type[M]) -> M:
    """The body validated as `model` straight from the bytes (pydantic's JSON parser, no dict in between)."""
    raw = await request.body()
    if not raw:
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}])
    content_type = request.headers.get("content-type")
    if content_type is not None and not is_json(content_type):
        raise RequestValidationError([{
            "type": "model_attributes_type", "loc": ("body",),
            "msg": "Input should be a valid dictionary or object to extract fields from", "input": None,
        }])
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise RequestValidationError(_located("body", exc)) from None


def header(request: Request, name: str, *, max_length: int) -> str | None:
    value = request.headers.get(name)
    if value is not None and len(value) > max_length:
        raise RequestValidationError([{
            "type": "string_too_long", "loc": ("header", name),
            "msg": f"String should have at most {max_length} characters", "input": None,
        }])
    return value


def bool_query(request: Request, name: str, default: bool = False) -> bool:
    if not request.scope.get("query_string"):
        return default
    value = request.query_params.get(name)
    if value is None:
        return default
    try:
        return _BOOL.validate_python(value)
    except ValidationError as exc:
        raise RequestValidationError(_located("query", exc, name)) from None


def openapi(model: type[BaseModel], *, headers: dict[str, str] | None = None,
            queries: dict[str, str] | None = None) -> dict[str, Any]:
    """`openapi_extra` describing the JSON body and parameters the route reads itself."""
    schema = _inline(model.model_json_schema())
    parameters = [
        {"name": name, "in": "header", "required": False, "description": text, "schema": {"type": "string"}}
        for name, text in (headers or {}).items()
    ] + [
        {"name": name, "in": "query", "required": False, "description": text,
         "schema": {"type": "boolean", "default": False}}
        for name, text in (queries or {}).items()
    ]
    extra: dict[str, Any] = {
        "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
    }
    if parameters:
        extra["parameters"] = parameters
    return extra


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with its `$defs` substituted in place (the body models are not recursive)."""
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(definitions[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    return resolve(schema)  # type: ignore[no-any-return]


def _located(prefix: str, exc: ValidationError, *names: str) -> list[dict[str, Any]]:
    return [{**error, "loc": (prefix, *names, *error["loc"])} for error in exc.errors(include_url=False)]


def is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    maintype, _, subtype = media.partition("/")
    return maintype == "application" and (subtype == "json" or subtype.endswith("+json"))
