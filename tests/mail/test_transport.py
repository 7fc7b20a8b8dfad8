"""SMTP delivery against a real server on loopback: headers, STARTTLS with login, refusals."""

import logging
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from authz.mail.transport import DeliveryFailed, LogTransport, Mail, SmtpTransport, transport_from_settings
from tests.conftest import make_settings
from tests.smtp_server import SmtpServer, free_port, password_authenticator, self_signed_tls

TOKEN = "inv_" + "0" * 24 + "_" + "SecretSecretSecretSecretSecretSecretSecret1"
MAIL = Mail(
    recipient="bob@example.com",
    subject="Invitation to join Quantum Lab",
    text=f"Hello\n\nhttp://x.example/invitations/accept?token={TOKEN}\n",
    masked_text="Hello\n\nhttp://x.example/invitations/accept?token=inv_" + "0" * 24 + "_[masked]\n",
)


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()


def transport(port: int, **overrides: object) -> SmtpTransport:
    settings = make_settings("sqlite://", smtp_host="127.0.0.1", smtp_port=port, smtp_from="authz@platform.example",
                             **overrides)
    return SmtpTransport(settings)


def test_plain_smtp_delivers_a_text_message(smtp: SmtpServer) -> None:
    transport(smtp.port).send(MAIL)
    [received] = smtp.inbox.received
    assert received.mail_from == "authz@platform.example"
    assert received.rcpt_tos == ["bob@example.com"]
    assert received.message["Subject"] == "Invitation to join Quantum Lab"
    assert received.message["To"] == "bob@example.com"
    assert received.message["Message-ID"].endswith("@platform.example>")
    assert f"accept?token={TOKEN}" in received.text


def test_each_message_has_its_own_id_and_leaves_the_global_random_alone() -> None:
    # The sender's thread must not move the process's `random` (an application may seed it; Hypothesis
    # checks that nothing else moves it while it draws).
    before = random.getstate()
    ids = {transport(25).build(MAIL)["Message-ID"] for _ in range(3)}
    assert random.getstate() == before
    assert len(ids) == 3 and all(i.startswith("<") and i.endswith("@platform.example>") for i in ids)


def test_starttls_and_login(tmp_path: Path) -> None:
    cert, context = self_signed_tls(tmp_path)
    server = SmtpServer(tls_context=context, require_starttls=True, auth_required=True, auth_require_tls=True,
                        authenticator=password_authenticator("mailer", "s3cret-pass")).start()
    try:
        with pytest.raises(DeliveryFailed) as refused:  # without STARTTLS this server offers no login
            transport(server.port, smtp_username="mailer", smtp_password="s3cret-pass").send(MAIL)
        assert refused.value.permanent is False
        with pytest.raises(DeliveryFailed) as wrong:
            transport(server.port, smtp_starttls=True, smtp_ca_file=cert, smtp_username="mailer",
                      smtp_password="wrong").send(MAIL)
        assert "login refused" in wrong.value.reason and wrong.value.permanent is False
        assert "wrong" not in wrong.value.reason
        assert server.inbox.received == []
        transport(server.port, smtp_starttls=True, smtp_ca_file=cert, smtp_username="mailer",
                  smtp_password="s3cret-pass").send(MAIL)
        assert len(server.inbox.received) == 1
    finally:
        server.stop()


def test_starttls_refuses_an_untrusted_certificate(tmp_path: Path) -> None:
    _, context = self_signed_tls(tmp_path)
    server = SmtpServer(tls_context=context).start()
    try:
        with pytest.raises(DeliveryFailed) as failed:
            transport(server.port, smtp_starttls=True).send(MAIL)
        assert "CERTIFICATE_VERIFY_FAILED" in failed.value.reason
        assert server.inbox.received == []
    finally:
        server.stop()


def test_configured_starttls_never_falls_back_to_plain_text(smtp: SmtpServer) -> None:
    with pytest.raises(DeliveryFailed) as failed:  # this server does not offer STARTTLS
        transport(smtp.port, smtp_starttls=True).send(MAIL)
    assert "STARTTLS" in failed.value.reason
    assert smtp.inbox.received == []


def test_refused_recipient_is_permanent_and_a_closed_port_is_temporary(smtp: SmtpServer) -> None:
    smtp.inbox.refuse.add("bob@example.com")
    with pytest.raises(DeliveryFailed) as refused:
        transport(smtp.port).send(MAIL)
    assert refused.value.permanent is True and "550" in refused.value.reason
    with pytest.raises(DeliveryFailed) as down:
        transport(free_port()).send(MAIL)
    assert down.value.permanent is False
    assert TOKEN not in refused.value.reason + down.value.reason


def test_without_smtp_host_mail_is_logged_with_the_token_masked(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="authz.mail")
    chosen = transport_from_settings(make_settings("sqlite://"))
    assert isinstance(chosen, LogTransport)
    chosen.send(MAIL)
    [record] = caplog.records
    assert record.levelno == logging.INFO
    logged = record.getMessage()
    assert "bob@example.com" in logged and "Invitation to join Quantum Lab" in logged
    assert "token=inv_" + "0" * 24 + "_[masked]" in logged
    assert TOKEN not in logged

    caplog.clear()
    transport_from_settings(make_settings("sqlite://", mail_log_tokens=True)).send(MAIL)
    assert TOKEN in caplog.records[0].getMessage()

    caplog.clear()
    production = transport_from_settings(make_settings("sqlite://", mail_log_tokens=True, env="production"))
    production.send(MAIL)
    assert all(TOKEN not in r.getMessage() for r in caplog.records)
