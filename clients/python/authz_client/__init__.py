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
