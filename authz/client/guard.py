"""Compatibility: re-exports `authz_client.guard`."""

from authz_client.guard import *  # noqa: F403
