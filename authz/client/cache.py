"""Compatibility: re-exports `authz_client.cache`."""

from authz_client.cache import *  # noqa: F403
