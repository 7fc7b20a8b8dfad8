"""Compatibility: re-exports `authz_client.models`."""

from authz_client.models import *  # noqa: F403
