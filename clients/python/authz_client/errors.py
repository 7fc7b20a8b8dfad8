"""Typed errors of the authz client, each carrying the server's problem+json (RFC 9457) fields."""

from typing import Any


class AuthzError(Exception):
    """Base of every error the client raises; `status` is None when no HTTP answer came back."""

    status: int | None = None

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        type: str | None = None,  # the RFC 9457 member name
        title: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(f"{status} {detail}" if status is not None else detail)
        self.detail = detail
        if status is not None:
            self.status = status
        self.type = type
        self.title = title
        self.errors = errors or []
        self.body = body

    @property
    def fields(self) -> list[str]:
        """The fields a 422 names."""
        return [str(e.get("field")) for e in self.errors if isinstance(e, dict) and "field" in e]


class BadRequest(AuthzError):
    """400: the request was malformed."""

    status = 400


class Unauthenticated(AuthzError):
    """401: no credential, or one authz does not accept (expired, bad signature, revoked key)."""

    status = 401


class Forbidden(AuthzError):
    """403: authenticated, but not allowed to ask this (another subject without the `check` scope)."""

    status = 403


class NotFound(AuthzError):
    """404: not found, or not visible to the caller."""

    status = 404


class Conflict(AuthzError):
    """409: conflicts with the current state."""

    status = 409


class InvalidRequest(AuthzError):
    """422: a field is invalid; `errors` names each one."""

    status = 422


class Unavailable(AuthzError):
    """503 after the retries, or authz could not be reached at all (timeout, refused connection)."""

    status: int | None = 503  # None when no answer came back


_BY_STATUS: dict[int, type[AuthzError]] = {
    400: BadRequest, 401: Unauthenticated, 403: Forbidden, 404: NotFound, 409: Conflict, 422: InvalidRequest,
    503: Unavailable,
}


def error_for(status: int, body: Any, text: str) -> AuthzError:
    """The typed error of an HTTP answer, from its problem+json body when it has one."""
    kind = _BY_STATUS.get(status, AuthzError)
    if isinstance(body, dict):
        detail = body.get("detail")
        errors = body.get("errors")
        return kind(
            str(detail) if detail is not None else f"HTTP {status}",
            status=status,
            type=body.get("type") if isinstance(body.get("type"), str) else None,
            title=body.get("title") if isinstance(body.get("title"), str) else None,
            errors=errors if isinstance(errors, list) else None,
            body=body,
        )
    return kind(text[:200] or f"HTTP {status}", status=status, body=body)


__all__ = ["AuthzError", "BadRequest", "Conflict", "Forbidden", "InvalidRequest", "NotFound", "Unauthenticated",
           "Unavailable", "error_for"]
