"""Handing one message to the outside world: an SMTP relay, or the log when none is configured.

A transport either returns (the message is accepted) or raises `DeliveryFailed`, saying
whether trying again later can help. It never logs or raises text containing the body,
which holds the invitation token.
"""

import logging
import secrets
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from typing import Protocol

from opentelemetry import trace
from opentelemetry.util.types import AttributeValue

from authz.settings import Settings

log = logging.getLogger("authz.mail")
ERROR_MAX = 500


@dataclass(frozen=True)
class Mail:
    recipient: str
    subject: str
    text: str  # with the real token
    masked_text: str  # the same with the token masked: the only form that may be logged


class DeliveryFailed(Exception):
    """The message was not accepted. `permanent`: the server refused it for good (5xx)."""

    def __init__(self, reason: str, *, permanent: bool) -> None:
        super().__init__(reason)
        self.reason = reason[:ERROR_MAX]
        self.permanent = permanent


class Transport(Protocol):
    name: str  # for log lines: where messages go

    def send(self, mail: Mail) -> None: ...


class LogTransport:
    """No SMTP relay configured (the `make run` default): the message goes to the log at INFO.

    The token is masked unless `mail_log_tokens` is set, and never in production, so a
    newcomer sees that an invitation went out without a log line being a working link.
    """

    name = "the log"

    def __init__(self, *, show_tokens: bool) -> None:
        self.show_tokens = show_tokens

    def send(self, mail: Mail) -> None:
        body = mail.text if self.show_tokens else mail.masked_text
        log.info(
            "mail not sent over SMTP (AUTHZ_SMTP_HOST is not set); it would read:\nTo: %s\nSubject: %s\n\n%s",
            mail.recipient,
            mail.subject,
            body,
            extra={"mail_to": mail.recipient, "mail_subject": mail.subject},
        )


class SmtpTransport:
    """smtplib against AUTHZ_SMTP_HOST:PORT, with STARTTLS (never silently skipped) and login."""

    def __init__(self, settings: Settings, *, tracer_provider: trace.TracerProvider | None = None) -> None:
        if settings.smtp_host is None:
            raise ValueError("SmtpTransport needs AUTHZ_SMTP_HOST")
        self.host = settings.smtp_host
        self.port = settings.smtp_port
        self.sender = settings.smtp_from
        self.timeout = settings.smtp_timeout
        self.starttls = settings.smtp_starttls
        self.username = settings.smtp_username
        self.password = settings.smtp_password
        self.ca_file = settings.smtp_ca_file
        self.name = f"smtp://{self.host}:{self.port}"
        self.tracer_provider = tracer_provider  # None: the process's (a no-op unless tracing is configured)

    def build(self, mail: Mail) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = mail.recipient
        message["Subject"] = mail.subject
        message["Date"] = formatdate(usegmt=True)
        # Not email.utils.make_msgid: it draws from the process's global `random`, which this sender's
        # thread would then move under whatever else uses it (an application seeding it, Hypothesis).
        message["Message-ID"] = f"<{secrets.token_hex(16)}@{self.sender.rpartition('@')[2] or 'localhost'}>"
        # 7bit keeps the acceptance link on one line for any reader of the raw message.
        message.set_content(mail.text, cte="7bit" if mail.text.isascii() else "quoted-printable")
        return message

    def send(self, mail: Mail) -> None:
        """One SMTP conversation, traced as a client span (no maintained smtplib instrumentation exists)."""
        tracer = trace.get_tracer("authz.mail", tracer_provider=self.tracer_provider)
        attributes: dict[str, AttributeValue] = {
            "server.address": self.host, "server.port": self.port, "network.protocol.name": "smtp",
        }
        with tracer.start_as_current_span("smtp send", kind=trace.SpanKind.CLIENT, attributes=attributes) as span:
            try:
                self._send(mail)
            except DeliveryFailed as exc:
                span.set_status(trace.Status(trace.StatusCode.ERROR, exc.reason[:200]))
                raise

    def _send(self, mail: Mail) -> None:
        message = self.build(mail)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                smtp.ehlo()
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context(cafile=self.ca_file))
                    smtp.ehlo()
                if self.username:
                    password = self.password.get_secret_value() if self.password else ""
                    smtp.login(self.username, password)
                smtp.send_message(message, from_addr=self.sender, to_addrs=[mail.recipient])
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise DeliveryFailed(f"recipient refused: {codes}", permanent=all(500 <= c < 600 for c in codes)) from None
        except (smtplib.SMTPAuthenticationError, smtplib.SMTPSenderRefused) as exc:
            # Our login or From address: a configuration problem, not this message's, so the
            # message waits (with backoff) until an operator fixes it.
            what = "login" if isinstance(exc, smtplib.SMTPAuthenticationError) else "sender address"
            raise DeliveryFailed(f"SMTP {what} refused ({exc.smtp_code})", permanent=False) from None
        except smtplib.SMTPResponseException as exc:
            text = (
                exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
            )
            raise DeliveryFailed(f"SMTP {exc.smtp_code}: {text}", permanent=500 <= exc.smtp_code < 600) from None
        except (smtplib.SMTPException, ssl.SSLError, OSError) as exc:
            raise DeliveryFailed(f"{type(exc).__name__}: {exc}", permanent=False) from None


def transport_from_settings(settings: Settings) -> Transport:
    if settings.smtp_host:
        return SmtpTransport(settings)
    show = settings.mail_log_tokens and not settings.is_production
    if settings.mail_log_tokens and settings.is_production:
        log.warning("AUTHZ_MAIL_LOG_TOKENS is ignored in production")
    return LogTransport(show_tokens=show)
