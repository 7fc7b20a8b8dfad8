"""The outbox sender: retries with backoff, gives up after N attempts, survives restarts, never sends twice."""

import logging
import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select

from authz.bootstrap import open_runtime
from authz.domain.principal import Principal
from authz.mail.sender import OutboxSender
from authz.services import invitations, organizations
from authz.services.runtime import Runtime
from authz.settings import Settings
from authz.store.tables import OutboxMessage
from tests.clock import Clock
from tests.conftest import BILLING, make_settings
from tests.smtp_server import SmtpServer, free_port

ALICE = Principal(kind="user", id="alice", email="alice@example.com", email_verified=True)


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    """Not started: each test decides when the server is up."""
    server = SmtpServer(port=free_port())
    yield server
    server.stop()


@pytest.fixture
def settings(database_url: str, smtp: SmtpServer) -> Settings:
    return make_settings(database_url, smtp_host="127.0.0.1", smtp_port=smtp.port, mail_sender=False,
                         mail_max_attempts=4, mail_retry_base=10, mail_retry_max=25, smtp_timeout=5)


def sender_for(runtime: Runtime) -> OutboxSender:
    return OutboxSender.from_settings(runtime.settings, runtime.database, clock=lambda: runtime.clock())


def invite(runtime: Runtime, email: str = "bob@example.com") -> str:
    org_id = organizations.create_organization(runtime, ALICE, "Quantum Lab", BILLING).value.id
    invitations.create_invitation(runtime, ALICE, org_id, email, "viewer")
    return org_id


def outbox(runtime: Runtime) -> list[OutboxMessage]:
    with runtime.database.session() as session:
        rows = list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))
        session.expunge_all()  # keep the loaded values after the session ends
        return rows


def test_smtp_down_at_invite_time_then_up_after_a_restart(runtime: Runtime, smtp: SmtpServer,
                                                          settings: Settings) -> None:
    clock = Clock(runtime)
    org_id = invite(runtime)
    sender = sender_for(runtime)
    assert sender.deliver_due() == 0  # connection refused
    [message] = outbox(runtime)
    assert (message.status, message.attempts) == ("pending", 1)
    assert "Connection refused" in (message.last_error or "")
    assert message.token is not None  # still needed: the mail has not gone out
    assert message.next_attempt_at == clock.now + timedelta(seconds=10)
    assert invitations.list_invitations(runtime, ALICE, org_id)[0].delivery == "pending"

    smtp.start()
    clock.advance(seconds=9)
    assert sender.deliver_due() == 0  # not due yet: the backoff holds even though the server is up
    assert smtp.inbox.received == []

    # The process restarts: a new runtime and sender on the same database; nothing is lost.
    runtime.database.dispose()
    restarted = open_runtime(settings, migrate=False)
    try:
        restarted.clock = lambda: clock.now + timedelta(seconds=1)
        assert sender_for(restarted).deliver_due() == 1
        [received] = smtp.inbox.received
        assert received.rcpt_tos == ["bob@example.com"]
        assert "/invitations/accept?token=inv_" in received.text
        [message] = outbox(restarted)
        assert (message.status, message.attempts, message.token, message.last_error) == ("sent", 2, None, None)
        assert invitations.list_invitations(restarted, ALICE, org_id)[0].delivery == "sent"
        assert sender_for(restarted).deliver_due() == 0  # sent once, never again
        assert len(smtp.inbox.received) == 1
    finally:
        restarted.database.dispose()


def test_backoff_doubles_up_to_the_cap_then_fails_for_good(runtime: Runtime) -> None:
    clock = Clock(runtime)
    org_id = invite(runtime)
    sender = sender_for(runtime)
    waits = []
    for _ in range(4):
        sender.deliver_due()
        [message] = outbox(runtime)
        waits.append((message.next_attempt_at - clock.now).total_seconds())
        clock.advance(seconds=25)
    [message] = outbox(runtime)
    assert waits[:3] == [10, 20, 25]
    assert (message.status, message.attempts, message.token) == ("failed", 4, None)
    assert invitations.list_invitations(runtime, ALICE, org_id)[0].delivery == "failed"
    assert sender.deliver_due() == 0
    assert outbox(runtime)[0].attempts == 4


def test_a_permanent_refusal_fails_at_once(runtime: Runtime, smtp: SmtpServer) -> None:
    smtp.start()
    smtp.inbox.refuse.add("nobody@example.com")
    org_id = invite(runtime, "nobody@example.com")
    assert sender_for(runtime).deliver_due() == 0
    [message] = outbox(runtime)
    assert (message.status, message.attempts, message.token) == ("failed", 1, None)
    assert "550" in (message.last_error or "")
    assert invitations.list_invitations(runtime, ALICE, org_id)[0].delivery == "failed"


def test_an_invitation_that_expired_before_delivery_is_not_mailed(runtime: Runtime, smtp: SmtpServer) -> None:
    clock = Clock(runtime)
    invite(runtime)
    smtp.start()
    clock.advance(seconds=runtime.settings.invitation_ttl)
    assert sender_for(runtime).deliver_due() == 0
    assert smtp.inbox.received == []
    [message] = outbox(runtime)
    assert (message.status, message.token) == ("failed", None)
    assert message.last_error == "not sent: the invitation is expired"


def test_concurrent_senders_deliver_each_message_once(runtime: Runtime, smtp: SmtpServer) -> None:
    smtp.start()
    org_id = organizations.create_organization(runtime, ALICE, "Quantum Lab", BILLING).value.id
    for n in range(6):
        invitations.create_invitation(runtime, ALICE, org_id, f"user{n}@example.com", "viewer")
    senders = [sender_for(runtime) for _ in range(3)]
    barrier = threading.Barrier(len(senders))
    errors: list[BaseException] = []

    def run(sender: OutboxSender) -> None:
        try:
            barrier.wait(timeout=10)
            sender.deliver_due()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in senders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    recipients = sorted(r.rcpt_tos[0] for r in smtp.inbox.received)
    assert recipients == [f"user{n}@example.com" for n in range(6)]
    assert {m.status for m in outbox(runtime)} == {"sent"}


def test_the_background_thread_delivers_and_survives_an_outage(
    runtime: Runtime, smtp: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="authz.mail")
    runtime.settings.mail_poll_interval = 0.05  # real time here: the thread runs on the real clock
    sender = sender_for(runtime)
    sender.retry_base = 0.05
    sender.start()
    try:
        invite(runtime)
        sender.wake()
        smtp.start()
        [received] = smtp.inbox.wait_for(1)
        assert received.rcpt_tos == ["bob@example.com"]
    finally:
        sender.stop()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    token = received.text.split("token=", 1)[1].split()[0]
    assert token.split("_", 2)[2] not in logged


def test_a_message_accepted_while_on_its_way_is_recorded_as_sent(runtime: Runtime, smtp: SmtpServer) -> None:
    """The invitee accepts from the email before the sender has recorded it: the record says sent, not failed."""
    from authz.mail import outbox as outbox_rows

    smtp.start()
    invite(runtime)
    sender = sender_for(runtime)
    [message] = outbox(runtime)
    claim = sender._claim(message.id)
    assert claim is not None
    sender.transport.send(claim.mail)  # handed over to SMTP
    assert message.invitation_id is not None
    with runtime.database.session() as session, session.begin():  # what accept does meanwhile
        outbox_rows.retire_pending(session, message.invitation_id, "not sent: the invitation was accepted")
    sender._record_sent(claim)
    [recorded] = outbox(runtime)
    assert (recorded.status, recorded.token, recorded.last_error) == ("sent", None, None)
    assert len(smtp.inbox.received) == 1
