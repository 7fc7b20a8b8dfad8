"""The sidecar's replica, fed by the upstream's HTTP API instead of the database.

The following itself (snapshot, change feed, reconnect with backoff, staleness from the
last line received) is the client's `authz_client.decisions.feed.FeedFollower`, the same
code the embedded mode runs. This module is what only the sidecar adds: the policy
document (forward-auth's routes included) and the service-key hashes the sidecar's routes
need.
"""

from collections.abc import Mapping
from typing import Any

from authz.engine import transfer
from authz.engine.replica import Replica, ServiceKeyRecord
from authz_client.decisions import stream
from authz_client.decisions.feed import FeedFollower, UpstreamRefused
from authz_client.decisions.stream import StreamSnapshot


class ReplicaFeed:
    """A `FeedSink` over the sidecar's `Replica`."""

    def __init__(self, replica: Replica) -> None:
        self.replica = replica
        self.follower: FeedFollower | None = None  # set by `follow_upstream`: service keys are read through it

    @property
    def revision(self) -> int:
        return self.replica.revision

    def install_snapshot(self, snapshot: StreamSnapshot) -> None:
        self.replica.install(transfer.snapshot_of(snapshot, self.replica.clock))

    def apply_change(self, revision: int, ops: list[dict[str, Any]]) -> bool:
        return self.replica.apply_feed(revision, ops, lambda: self.read_service_keys(revision))

    def mark_synced(self) -> None:
        self.replica.mark_synced()

    def sync_failed(self, reason: str) -> None:
        self.replica.last_sync_error = reason

    def read_service_keys(self, revision: int) -> Mapping[str, ServiceKeyRecord]:
        """The upstream's service-key hashes as of `revision` or later (the feed says only that they changed).

        The feed comes from the upstream's database, its snapshot from its replica, which
        may not have applied `revision` yet: hence `min_revision`. A later key set is fine
        (a key created or revoked since is then known a little early; the feed brings that
        change too).
        """
        assert self.follower is not None
        body = self.follower.get("/v1/snapshot", {"part": "service_keys", "min_revision": revision})
        found, keys = transfer.read_service_keys(stream.lines_of([body]))
        if found < revision:
            raise UpstreamRefused(200, f"service keys at revision {found}, before {revision}")
        return keys


def follow_upstream(replica: Replica, upstream: str, key: str, *, read_timeout: float = 60.0) -> FeedFollower:
    """A follower (not started) that keeps `replica` at the upstream's state."""
    feed = ReplicaFeed(replica)
    follower = FeedFollower(feed, upstream, key, user_agent="authz-sidecar", read_timeout=read_timeout)
    feed.follower = follower
    return follower
