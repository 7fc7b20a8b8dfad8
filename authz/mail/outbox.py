"""The outbox table: mails written in the transaction of the change that causes them.

Why the token sits in the row, and for how long: the acceptance link must carry the
token, and only its hash is kept with the invitation, so something must hold the clear
token between the commit and the SMTP hand-off, or a crash or an SMTP outage would lose
the mail. Encrypting it would need a key every deployment configures (the backend-token
keys are optional in development) and would still leave a decryptable secret at rest.
Instead the clear token lives in its own column only while the message is pending: it is
set to NULL the moment the message is sent, fails for good, or is superseded (resend,
revoke, accept, decline, expiry), and the stored body has a slot instead of the token.
The exposure is the delivery delay, usually seconds; and a token alone cannot be used by
someone reading the database, since accepting also needs the invited, verified email.
"""

from datetime import datetime
from typing import Final

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from authz.mail.message import MailContent
from authz.store.tables import OutboxMessage

PENDING: Final = "pending"
SENT: Final = "sent"
FAILED: Final = "failed"


def enqueue(session: Session, *, invitation_id: str | None, recipient: str, content: MailContent,
            token: str | None, now: datetime) -> OutboxMessage:
    """A new pending message, due at once; part of the caller's transaction."""
    row = OutboxMessage(
        invitation_id=invitation_id,
        recipient=recipient,
        subject=content.subject,
        body_text=content.text,
        token=token,
        status=PENDING,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(row)
    return row


def retire_pending(session: Session, invitation_id: str, reason: str) -> None:
    """Stop every pending message of an invitation and forget its token (resend, revoke, ...)."""
    session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.invitation_id == invitation_id, OutboxMessage.status == PENDING)
        .values(status=FAILED, token=None, last_error=reason)
    )


def delivery_states(session: Session, invitation_ids: list[str]) -> dict[str, str]:
    """The status of each invitation's latest message: pending, sent or failed."""
    if not invitation_ids:
        return {}
    latest = (
        select(func.max(OutboxMessage.id))
        .where(OutboxMessage.invitation_id.in_(invitation_ids))
        .group_by(OutboxMessage.invitation_id)
    )
    rows = session.execute(
        select(OutboxMessage.invitation_id, OutboxMessage.status).where(OutboxMessage.id.in_(latest))
    ).all()
    return {invitation: status for invitation, status in rows if invitation is not None}
