"""What every service function needs: settings, the database, this replica, and a clock."""

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from authz_client.decisions.roles import CompiledRoles

from authz.domain.cursors import CursorCodec
from authz.domain.principal import Principal
from authz.engine.replica import Replica
from authz.policy.document import PolicyDocument
from authz.secrets import KeyRing
from authz.settings import Settings
from authz.store.database import Database
from authz.store.unit_of_work import UnitOfWork

log = logging.getLogger("authz.services")
T = TypeVar("T")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Written(Generic[T]):
    """The result of a write and the revision it committed (None when no policy data changed)."""

    value: T
    revision: int | None


@dataclass
class Runtime:
    """Built once per process (by the app's lifespan or the CLI) and passed to services."""

    settings: Settings
    database: Database
    replica: Replica = field(default_factory=Replica)
    clock: Callable[[], datetime] = utc_now
    key_ring: KeyRing | None = None  # backend-token encryption (authz.secrets); set by open_runtime
    # Paging cursors; open_runtime sets the key every replica shares (a random one only works in this process).
    cursors: CursorCodec = field(default_factory=lambda: CursorCodec(secrets.token_bytes(32)))

    def __post_init__(self) -> None:
        self.replica.clock = self.epoch  # decisions compare grants' expiry with this runtime's clock

    def epoch(self) -> float:
        """Now as POSIX time, from `clock` (which tests replace)."""
        return self.clock().timestamp()

    def unit_of_work(self, principal: Principal) -> UnitOfWork:
        return UnitOfWork(
            self.database, self.clock, principal.audit_name, principal.request_id, on_commit=self._apply_committed
        )

    def _apply_committed(self, revision: int, delta: list[dict[str, Any]]) -> None:
        """Every committed write reaches this process's replica before the service returns.

        The one commit hook (the unit of work calls it): the delta is applied without
        reading it back when it is the very next revision; otherwise the replica catches
        up from the changelog, in order. The write is committed whatever happens here: a
        failure only leaves the replica to the follower.
        """
        try:
            if not self.replica.apply_committed(revision, delta):
                self.replica.catch_up(self.database)
        except Exception:  # noqa: BLE001 - the write is committed; the follower retries later
            log.warning("applying a committed change failed; the follower will catch up", exc_info=True)

    @property
    def roles(self) -> CompiledRoles:
        """What each role may do, and which role owns a context, at the published revision."""
        return self.replica.snapshot.index.roles

    @property
    def policy(self) -> PolicyDocument:
        policy = self.replica.snapshot.policy
        if policy is None:
            raise RuntimeError("no policy is loaded")
        return policy
