"""Compatibility: the Python client is the `authz-client` distribution (clients/python), `authz_client`.

These modules only re-export it, so `from authz.client import AuthzClient` keeps working;
new code imports `authz_client`.
"""

from authz_client import *  # noqa: F403
from authz_client import __all__ as __all__
