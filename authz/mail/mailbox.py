"""The development mailbox: the emails this process sent, kept in memory for the console to show.

Only with AUTHZ_DEV_LOGIN (never in production, which refuses that setting): it wraps the
real transport (SMTP, or the log when no relay is set), so a newcomer running `make run`
can open an invitation link from the console's mailbox page without any mail server.
It keeps the text with the working link on purpose; that is why it exists only in development.
"""

import threading
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime

from authz.mail.transport import Mail, Transport

KEEP = 200


@dataclass(frozen=True)
class KeptMail:
    at: datetime
    recipient: str
    subject: str
    text: str  # with the working link


class DevMailbox:
    """A Transport: hands each mail to `inner`, then keeps it (newest first, at most KEEP)."""

    def __init__(self, inner: Transport, keep: int = KEEP) -> None:
        self.inner = inner
        self.name = f"{inner.name} (and the development mailbox)"
        self._mails: deque[KeptMail] = deque(maxlen=keep)
        self._lock = threading.Lock()

    def send(self, mail: Mail) -> None:
        self.inner.send(mail)  # a failure is not kept: the outbox will try again
        with self._lock:
            self._mails.appendleft(KeptMail(datetime.now(UTC), mail.recipient, mail.subject, mail.text))

    def mails(self) -> list[KeptMail]:
        with self._lock:
            return list(self._mails)
