"""Named domain errors, raised by the core and translated to HTTP statuses at the edge."""


class AuthzError(Exception):
    """Base of every error the core raises on purpose."""

    # A refusal of someone with no role where the target lives (no membership, no scope):
    # counted and logged by the service, never written into that tenant's audit log.
    outsider = False

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


class Invalid(AuthzError):
    """An input failed validation; `field` names it."""


class Malformed(AuthzError):
    """The request cannot be used as sent (a forged or foreign paging cursor): 400, `field` names it."""


class NotFound(AuthzError):
    """The thing does not exist or is not visible to the caller."""


class Forbidden(AuthzError):
    """The caller is known but not allowed to do this."""


class Conflict(AuthzError):
    """The request conflicts with the current state (last owner, duplicate, context change)."""


class Gone(AuthzError):
    """The thing existed but can no longer be used (an expired invitation)."""


class Unavailable(AuthzError):
    """A dependency (the database) is unavailable, or the replica is not fresh enough."""


class OutsiderNotFound(NotFound):
    """Not visible to a caller with no role in the context: answered exactly as an unknown id."""

    outsider = True


class OutsiderForbidden(Forbidden):
    """A caller without the scope or role to even ask (e.g. a user token resolving a backend token)."""

    outsider = True


class TooManyRequests(AuthzError):
    """A rate limit is reached; `retry_after` says in how many seconds it frees up."""

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
