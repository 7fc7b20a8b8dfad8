"""What every service function needs: settings, the database, this replica, and a clock."""

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from authz.domain.cursors import CursorCodec
from authz.domain.principal import Principal
from authz.engine.replica import Replica
from authz.policy.document import PolicyDocument
from authz.secrets import KeyRing
from authz.settings import Settings
from authz.store.database import Database
from authz.store.unit_of_work import UnitOfWork
from authz_client.decisions.roles import CompiledRoles

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
        except Exception:  # the write is committed; the follower retries later
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


@dataclass
class StoreRuntime(Runtime):
    """For a process that reads or writes rows and decides nothing (the command line's row commands).

    The policy in force (the document, and what each role may do, e.g. which one owns a
    context) is read once from its few rows; no replica is loaded, so no membership or
    resource is held in memory and none is kept current after a commit: the servers'
    followers learn of the change from the changelog. Anything that asks this runtime
    for a decision (`replica.snapshot`) finds an empty index, so row commands never do.
    """

    policy_in_force: PolicyDocument | None = None
    roles_in_force: CompiledRoles = field(default_factory=CompiledRoles)

    def _apply_committed(self, revision: int, delta: list[dict[str, Any]]) -> None:
        """No replica here to keep current."""

    @property
    def roles(self) -> CompiledRoles:
        return self.roles_in_force

    @property
    def policy(self) -> PolicyDocument:
        if self.policy_in_force is None:
            raise RuntimeError("no policy is applied")
        return self.policy_in_force
