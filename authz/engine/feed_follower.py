"""The sidecar's replica, fed by the upstream's HTTP API instead of the database.

The following itself (snapshot, change feed, reconnect with backoff, staleness from the
last line received) is the client's `authz_client.decisions.feed.FeedFollower`, the same
code the embedded mode runs. This module is what only the sidecar adds: the policy
document (forward-auth's routes included) and the service-key hashes the sidecar's routes
need, and a catch-up on demand (`ReplicaFeed.catch_up`, for a service key the replica does
not know yet; `authz.engine.feed_catch_up` bounds it).
"""

from collections.abc import Mapping
from typing import Any

from authz.engine import transfer
from authz.engine.replica import Replica, ServiceKeyRecord
from authz_client.decisions import stream
from authz_client.decisions.feed import FEED_PAGE, FeedFollower, UpstreamRefused
from authz_client.decisions.stream import StreamSnapshot, json_loads

CATCH_UP_PAGES = 10  # of FEED_PAGE changes: a replica further behind is the follower's to bring forward


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

    def apply_change(self, revision: int, ops: list[dict[str, Any]], *, timeout: float | None = None) -> bool:
        """The follower's and the catch-up's one way to apply a change (`timeout`: for the service-key read)."""
        return self.replica.apply_feed(revision, ops, lambda: self.read_service_keys(revision, timeout))

    def mark_synced(self) -> None:
        self.replica.mark_synced()

    def sync_failed(self, reason: str) -> None:
        self.replica.last_sync_error = reason

    def catch_up(self, timeout: float) -> int:
        """Apply now what the upstream's changelog has after this replica's revision; returns how many applied.

        For a service key the replica does not know: its creation may sit behind a slow or
        stalled change stream. Reads `GET /v1/changes` as JSON pages (no long-poll) and
        applies each change through `apply_change`, as the follower does. The two may run at
        once: `Replica.apply_feed` applies each revision once, in order, under its lock, and
        skips one it already has, so the stream's later copy of a change applied here is a
        no-op and neither goes backwards. Each call to the upstream is bounded by `timeout`;
        raises what `FeedFollower.get` raises (UpstreamRefused, httpx errors) or ValueError.
        """
        assert self.follower is not None
        applied = 0
        for _ in range(CATCH_UP_PAGES):
            after = self.replica.revision  # (after the first snapshot: before it, -1 is refused upstream)
            body = self.follower.get("/v1/changes", {"after": after, "limit": FEED_PAGE}, timeout=timeout)
            changes = json_loads(body)["changes"]
            for change in changes:
                if self.apply_change(int(change["revision"]), change["ops"], timeout=timeout):
                    applied += 1
            if len(changes) < FEED_PAGE:
                break
        return applied

    def read_service_keys(self, revision: int, timeout: float | None = None) -> Mapping[str, ServiceKeyRecord]:
        """The upstream's service-key hashes as of `revision` or later (the feed says only that they changed).

        The feed comes from the upstream's database, its snapshot from its replica, which
        may not have applied `revision` yet: hence `min_revision`. A later key set is fine
        (a key created or revoked since is then known a little early; the feed brings that
        change too).
        """
        assert self.follower is not None
        body = self.follower.get("/v1/snapshot", {"part": "service_keys", "min_revision": revision}, timeout=timeout)
        found, keys = transfer.read_service_keys(stream.lines_of([body]))
        if found < revision:
            raise UpstreamRefused(200, f"service keys at revision {found}, before {revision}")
        return keys


def follow_upstream(replica: Replica, upstream: str, key: str, *, read_timeout: float,
                    max_backoff: float) -> tuple[FeedFollower, ReplicaFeed]:
    """A follower (not started) that keeps `replica` at the upstream's state, and its sink (to catch up with)."""
    feed = ReplicaFeed(replica)
    follower = FeedFollower(feed, upstream, key, user_agent="authz-sidecar", read_timeout=read_timeout,
                            max_backoff=max_backoff)
    feed.follower = follower
    return follower, feed
