"""Compatibility: re-exports `authz_client.sync`."""

from authz_client.sync import *  # noqa: F403
