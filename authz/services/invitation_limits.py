"""How many invitations an org and an inviter may create: AUTHZ_INVITATIONS_PER_DAY each, in any 24 h.

Counted in the database (the invitations created, from the invitations table itself), so
every replica enforces the same limit, and under locks so concurrent requests cannot both
take the last slot: the org's row (held by every invitation write) for the org's count,
and a transaction-scoped advisory lock on the inviter for theirs (an inviter may invite
into several orgs at once). The inviter's lock is always taken after an org's, never before.
A rejected row creates no invitation, so it does not count.
"""

import math
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, func, select

from authz.domain.errors import TooManyRequests
from authz.store.tables import Invitation
from authz.store.unit_of_work import UnitOfWork

WINDOW = timedelta(hours=24)


def lock_inviter(uow: UnitOfWork, inviter: str) -> None:
    """Serialize the invitation writes of one inviter (PostgreSQL; SQLite serializes every writer)."""
    if uow.session.get_bind().dialect.name == "postgresql":
        uow.session.execute(select(func.pg_advisory_xact_lock(func.hashtextextended("invitations-by:" + inviter, 0))))


def _slot_frees_at(uow: UnitOfWork, condition: ColumnElement[bool], limit: int) -> datetime | None:
    """When the window has room again, if `limit` invitations matching `condition` are in it now."""
    oldest_counted = uow.session.scalar(
        select(Invitation.created_at).where(condition, Invitation.created_at > uow.now - WINDOW)
        .order_by(Invitation.created_at.desc()).offset(limit - 1).limit(1)
    )
    return oldest_counted + WINDOW if oldest_counted is not None else None


def check_invitation_limits(uow: UnitOfWork, org_id: str, inviter: str, limit: int) -> None:
    """TooManyRequests (with Retry-After seconds) when the org or the inviter is at `limit` now."""
    for condition, who in ((Invitation.org_id == org_id, "this organization"),
                           (Invitation.invited_by == inviter, "you")):
        frees_at = _slot_frees_at(uow, condition, limit)
        if frees_at is not None:
            retry_after = max(1, math.ceil((frees_at - uow.now).total_seconds()))
            raise TooManyRequests(
                f"{who} created {limit} invitations in the last 24 hours (the limit); "
                f"try again in {retry_after} seconds", retry_after=retry_after,
            )
