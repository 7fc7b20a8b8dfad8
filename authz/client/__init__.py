"""The Python client of authz's decision API: `AuthzClient`, `AsyncAuthzClient`, typed results and errors.

Needs only httpx; it never imports the server. The FastAPI guard for other services is
`authz.client.guard` (imported on its own, so this package stays framework-free).

    with AuthzClient("http://authz:8000", service_key) as authz:
        if authz.check("delete", "algorithm:grover", subject="alice"):
            ...
"""

from authz.client._protocol import Retry
from authz.client.aio import AsyncAuthzClient
from authz.client.cache import DecisionCache
from authz.client.errors import (
    AuthzError,
    BadRequest,
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    Unauthenticated,
    Unavailable,
)
from authz.client.models import BatchResult, Change, Check, CheckResult, Resource, ResourceList, SubjectList
from authz.client.sync import AuthzClient

__all__ = [
    "AsyncAuthzClient",
    "AuthzClient",
    "AuthzError",
    "BadRequest",
    "BatchResult",
    "Change",
    "Check",
    "CheckResult",
    "Conflict",
    "DecisionCache",
    "Forbidden",
    "InvalidRequest",
    "NotFound",
    "Resource",
    "ResourceList",
    "Retry",
    "SubjectList",
    "Unauthenticated",
    "Unavailable",
]
