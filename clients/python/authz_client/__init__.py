"""The Python client of authz's decision API: `AuthzClient`, `AsyncAuthzClient`, typed results and errors.

Needs only httpx; it never imports the server. Both clients run the same sans-IO core
(`authz_client._core`): requests, retries, paging and the change feed's resume are decided
there once. The FastAPI guard for other services is `authz_client.guard`
(`pip install 'authz-client[fastapi]'`), imported on its own so this package stays framework-free.
`LocalDecisions` answers checks inside this process instead, from a follower of the service's
change feed (`authz_client.local`), with the server's own decision index (`authz_client.decisions`).

    with AuthzClient("http://authz:8000", service_key) as authz:
        if authz.check("delete", "algorithm:grover", subject="alice"):
            ...
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from authz_client._core import Backoff, Retry
    from authz_client.aio import AsyncAuthzClient
    from authz_client.cache import DecisionCache
    from authz_client.errors import (
        AuthzError,
        BadRequest,
        Conflict,
        Forbidden,
        InvalidRequest,
        NotFound,
        Unauthenticated,
        Unavailable,
    )
    from authz_client.local import LocalDecisions
    from authz_client.models import BatchResult, Change, Check, CheckResult, Resource, ResourceList, SubjectList
    from authz_client.sync import AuthzClient

# Where each name lives. They are imported on first use (PEP 562), so `import authz_client.decisions`,
# which the server does in every process, does not import the HTTP clients and httpx with it.
_HOMES = {
    "Backoff": "_core", "Retry": "_core", "AsyncAuthzClient": "aio", "DecisionCache": "cache",
    "AuthzError": "errors", "BadRequest": "errors", "Conflict": "errors", "Forbidden": "errors",
    "InvalidRequest": "errors", "NotFound": "errors", "Unauthenticated": "errors", "Unavailable": "errors",
    "LocalDecisions": "local", "BatchResult": "models", "Change": "models", "Check": "models",
    "CheckResult": "models", "Resource": "models", "ResourceList": "models", "SubjectList": "models",
    "AuthzClient": "sync",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'authz_client' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"authz_client.{home}"), name)
    globals()[name] = value
    return value


__all__ = [
    "AsyncAuthzClient",
    "AuthzClient",
    "AuthzError",
    "Backoff",
    "BadRequest",
    "BatchResult",
    "Change",
    "Check",
    "CheckResult",
    "Conflict",
    "DecisionCache",
    "Forbidden",
    "InvalidRequest",
    "LocalDecisions",
    "NotFound",
    "Resource",
    "ResourceList",
    "Retry",
    "SubjectList",
    "Unauthenticated",
    "Unavailable",
]
