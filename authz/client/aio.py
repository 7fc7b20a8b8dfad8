"""Compatibility: re-exports `authz_client.aio`."""

from authz_client.aio import *  # noqa: F403
