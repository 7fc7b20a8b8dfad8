"""Compatibility: the retry and reconnect policies now live in the sans-IO core, `authz_client._core`."""

from authz_client._core import Backoff, Retry

__all__ = ["Backoff", "Retry"]
