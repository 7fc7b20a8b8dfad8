"""Delivering the outbox: claim a due message, hand it to the transport, record the outcome.

All state is in the `outbox` table, so a restart loses nothing and any number of
replicas can run a sender against one database. A message is claimed by a short
transaction that counts the attempt and pushes `next_attempt_at` a lease ahead; the SMTP
conversation happens outside any transaction (SQLite writers are never blocked by a slow
relay); a second transaction records sent, retry-later (exponential backoff) or failed.
A sender that dies mid-send leaves the message due again when the lease ends, so
delivery is at least once.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from authz.domain import invitations as inv
from authz.mail.message import fill_token
from authz.mail.outbox import FAILED, PENDING, SENT
from authz.mail.transport import DeliveryFailed, Mail, Transport, transport_from_settings
from authz.periodic import PeriodicThread
from authz.settings import Settings
from authz.store.database import Database
from authz.store.tables import Invitation, OutboxMessage

log = logging.getLogger("authz.mail")
BATCH = 50


@dataclass(frozen=True)
class Claim:
    id: int
    attempt: int
    mail: Mail


class OutboxSender:
    """`deliver_due()` does one pass (tests call it directly); `start()` runs passes in a thread."""

    def __init__(
        self,
        database: Database,
        transport: Transport,
        *,
        clock: Callable[[], datetime],
        max_attempts: int = 10,
        retry_base: float = 5.0,
        retry_max: float = 3600.0,
        poll_interval: float = 2.0,
        lease: float = 120.0,
    ) -> None:
        self.database = database
        self.transport = transport
        self.clock = clock
        self.max_attempts = max_attempts
        self.retry_base = retry_base
        self.retry_max = retry_max
        self.lease = lease
        self._thread = PeriodicThread("authz-mail-sender", poll_interval, self._pass, run_first=True)

    @classmethod
    def from_settings(cls, settings: Settings, database: Database, clock: Callable[[], datetime]) -> "OutboxSender":
        return cls(
            database,
            transport_from_settings(settings),
            clock=clock,
            max_attempts=settings.mail_max_attempts,
            retry_base=settings.mail_retry_base,
            retry_max=settings.mail_retry_max,
            poll_interval=settings.mail_poll_interval,
            lease=max(60.0, 6 * settings.smtp_timeout),
        )

    # ---- one pass ----------------------------------------------------------------------

    def backoff(self, attempt: int) -> timedelta:
        """The wait after the `attempt`-th failure: base, 2*base, 4*base, ... up to retry_max."""
        return timedelta(seconds=min(self.retry_max, self.retry_base * 2 ** (attempt - 1)))

    def deliver_due(self, limit: int = BATCH) -> int:
        """Try every message that is due now; returns how many were delivered."""
        now = self.clock()
        with self.database.session() as session:
            due = list(
                session.scalars(
                    select(OutboxMessage.id)
                    .where(OutboxMessage.status == PENDING, OutboxMessage.next_attempt_at <= now)
                    .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
                    .limit(limit)
                )
            )
        delivered = 0
        for message_id in due:
            claim = self._claim(message_id)
            if claim is None:
                continue
            try:
                self.transport.send(claim.mail)
            except DeliveryFailed as exc:
                self._record_failure(claim, exc)
            else:
                self._record_sent(claim)
                delivered += 1
        return delivered

    def _claim(self, message_id: int) -> Claim | None:
        now = self.clock()
        with self.database.session() as session, session.begin():
            row = session.scalar(
                select(OutboxMessage)
                .where(OutboxMessage.id == message_id, OutboxMessage.status == PENDING,
                       OutboxMessage.next_attempt_at <= now)
                .with_for_update(skip_locked=True)
            )
            if row is None:  # another sender has it, or it was retired meanwhile
                return None
            stale = self._stale_reason(session, row, now)
            if stale is not None:
                row.status, row.token, row.last_error = FAILED, None, stale
                return None
            row.attempts += 1
            row.next_attempt_at = now + timedelta(seconds=self.lease)
            text = row.body_text
            token = row.token
            mail = Mail(
                recipient=row.recipient,
                subject=row.subject,
                text=fill_token(text, token) if token else text,
                masked_text=fill_token(text, inv.mask_token(token)) if token else text,
            )
            return Claim(row.id, row.attempts, mail)

    @staticmethod
    def _stale_reason(session: Session, row: OutboxMessage, now: datetime) -> str | None:
        """Why an invitation's message must not go out any more (a dead link helps nobody)."""
        if row.invitation_id is None:
            return None
        invitation = session.get(Invitation, row.invitation_id)
        if invitation is None:
            return "not sent: the invitation no longer exists"
        status = inv.visible_status(invitation.status, invitation.expires_at, now)
        if status != inv.PENDING:
            return f"not sent: the invitation is {status}"
        if row.token is None:
            return "not sent: the token is no longer available"
        return None

    def _record_sent(self, claim: Claim) -> None:
        now = self.clock()
        with self.database.session() as session, session.begin():
            # Sent is what happened, even if an accept, resend or revoke retired the message
            # while it was on its way (it then says "failed: not sent", which would be false).
            row = session.scalar(select(OutboxMessage).where(OutboxMessage.id == claim.id).with_for_update())
            if row is not None:
                row.status, row.token, row.sent_at, row.last_error = SENT, None, now, None
        log.info("mail handed to %s", self.transport.name, extra={"outbox_id": claim.id, "attempt": claim.attempt})

    def _record_failure(self, claim: Claim, exc: DeliveryFailed) -> None:
        now = self.clock()
        final = exc.permanent or claim.attempt >= self.max_attempts
        with self.database.session() as session, session.begin():
            row = self._still_pending(session, claim.id)
            if row is None:
                return
            row.last_error = exc.reason
            if final:
                row.status, row.token = FAILED, None
            else:
                row.next_attempt_at = now + self.backoff(claim.attempt)
        log.warning(
            "mail delivery failed%s: %s", " for good" if final else "; will retry", exc.reason,
            extra={"outbox_id": claim.id, "attempt": claim.attempt},
        )

    @staticmethod
    def _still_pending(session: Session, message_id: int) -> OutboxMessage | None:
        return session.scalar(
            select(OutboxMessage)
            .where(OutboxMessage.id == message_id, OutboxMessage.status == PENDING)
            .with_for_update()
        )

    # ---- the background thread ---------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._thread.stop()

    def wake(self) -> None:
        """Deliver now instead of at the next poll (called after a local write)."""
        self._thread.wake()

    def _pass(self) -> None:
        try:
            self.deliver_due()
        except Exception as exc:  # noqa: BLE001 - the database may be down; the next pass retries
            log.warning("outbox pass failed: %s", type(exc).__name__)
