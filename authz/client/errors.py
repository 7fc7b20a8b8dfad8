"""Compatibility: re-exports `authz_client.errors`."""

from authz_client.errors import *  # noqa: F403
