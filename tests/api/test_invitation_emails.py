"""End to end: the app with its sender thread, a real SMTP server on loopback, and the person invited.

Invite, read the mail, accept, see the org; nobody else can use the link; resend and
revoke kill tokens; expiry with an injected clock; SMTP down at invite time and up later;
and two people racing to accept one token.
"""

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from authz.services.runtime import Runtime
from authz.settings import Settings
from authz.store.tables import OutboxMessage
from tests.app_client import AppClient
from tests.conftest import auth, create_org, make_settings
from tests.smtp_server import Received, SmtpServer, free_port

PUBLIC_URL = "https://quantum.example"
LINK = re.compile(r"^https://quantum\.example/invitations/accept\?token=([A-Za-z0-9_-]+)\r?$", re.MULTILINE)


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    """Started by each test when it wants the server up."""
    server = SmtpServer(port=free_port())
    yield server
    server.stop()


@pytest.fixture
def settings(database_url: str, smtp: SmtpServer) -> Settings:
    return make_settings(
        database_url, smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_from="invitations@quantum.example",
        public_url=PUBLIC_URL, mail_sender=True, mail_poll_interval=0.05, mail_retry_base=0.05, mail_retry_max=0.2,
    )


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """A bounded wait for the sender thread (a deadline, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def token_of(mail: Received) -> str:
    match = LINK.search(mail.text)
    assert match is not None, mail.text
    return match.group(1)


def invite(client: TestClient, org_id: str, email: str, role: str = "maintainer") -> dict[str, Any]:
    response = client.post(f"/v1/organizations/{org_id}/invitations", json={"email": email, "role": role},
                           headers=auth("alice"))
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_invite_read_the_mail_accept_and_see_the_org(client: TestClient, smtp: SmtpServer) -> None:
    smtp.start()
    org_id = create_org(client, "alice", "Entanglement Inc")
    invite(client, org_id, "Bob@Example.com", "maintainer")
    [mail] = smtp.inbox.wait_for(1)

    assert mail.mail_from == "invitations@quantum.example"
    assert mail.rcpt_tos == ["bob@example.com"]
    assert mail.message["Subject"] == "Invitation to join Entanglement Inc"
    assert mail.message.get_content_type() == "text/plain"
    assert "alice (alice@example.com)" in mail.text
    assert '"Entanglement Inc"' in mail.text and "as maintainer" in mail.text
    token = token_of(mail)
    wait_until(lambda: client.get(f"/v1/organizations/{org_id}/invitations",
                                  headers=auth("alice")).json()[0]["delivery"] == "sent", "delivery: sent")

    assert [i["organization_id"] for i in client.get("/v1/me/invitations", headers=auth("bob")).json()] == [org_id]
    stolen = client.post("/v1/invitations/accept", json={"token": token}, headers=auth("mallory"))
    assert stolen.status_code == 403
    spoofed = client.post("/v1/invitations/accept", json={"token": token},
                          headers=auth("mallory", email="bob@example.com", email_verified=False))
    assert spoofed.status_code == 403 and "not verified" in spoofed.json()["detail"]
    assert client.get("/v1/me", headers=auth("mallory")).json()["contexts"] == [
        {"type": "personal", "id": "personal", "name": None, "role": None}]

    accepted = client.post("/v1/invitations/accept", json={"token": token}, headers=auth("bob"))
    assert accepted.status_code == 200, accepted.text
    me = client.get("/v1/me", headers=auth("bob")).json()
    assert {"type": "organization", "id": org_id, "name": "Entanglement Inc", "role": "maintainer"} in me["contexts"]
    assert client.get("/v1/me/invitations", headers=auth("bob")).json() == []
    created = client.post(
        "/v1/resources", json={"type": "algorithm", "id": "shor"}, headers=auth("bob", context=org_id)
    )
    assert created.status_code == 201, created.text


def test_resend_kills_the_old_token_and_revoke_kills_the_new(client: TestClient, smtp: SmtpServer) -> None:
    smtp.start()
    org_id = create_org(client, "alice")
    created = invite(client, org_id, "bob@example.com")
    old = token_of(smtp.inbox.wait_for(1)[0])
    path = f"/v1/organizations/{org_id}/invitations/{created['id']}"
    assert client.post(f"{path}/resend", headers=auth("alice")).status_code == 200
    new = token_of(smtp.inbox.wait_for(2)[1])
    assert new != old
    dead = client.post("/v1/invitations/accept", json={"token": old}, headers=auth("bob"))
    assert dead.status_code == 404
    assert client.delete(path, headers=auth("alice")).status_code == 204
    revoked = client.post("/v1/invitations/accept", json={"token": new}, headers=auth("bob"))
    assert revoked.status_code == 410 and "revoked" in revoked.json()["detail"]
    assert all(c["type"] == "personal" for c in client.get("/v1/me", headers=auth("bob")).json()["contexts"])


def test_expiry_with_an_injected_clock(client: TestClient, runtime: Runtime, smtp: SmtpServer) -> None:
    smtp.start()
    start = runtime.clock()
    runtime.clock = lambda: start
    org_id = create_org(client, "alice")
    created = invite(client, org_id, "bob@example.com")
    token = token_of(smtp.inbox.wait_for(1)[0])
    runtime.clock = lambda: start + timedelta(days=7, seconds=1)
    expired = client.post("/v1/invitations/accept", json={"token": token}, headers=auth("bob"))
    assert expired.status_code == 410 and "expired" in expired.json()["detail"]
    assert client.get(f"/v1/organizations/{org_id}/invitations", headers=auth("alice")).json()[0]["status"] == "expired"
    # the owner resends: a fresh week from "now", a new mail, and the new link works
    resent = client.post(f"/v1/organizations/{org_id}/invitations/{created['id']}/resend", headers=auth("alice"))
    assert resent.json()["status"] == "pending"
    fresh = token_of(smtp.inbox.wait_for(2)[1])
    assert client.post("/v1/invitations/accept", json={"token": fresh}, headers=auth("bob")).status_code == 200


def test_smtp_down_at_invite_time_then_up(client: TestClient, runtime: Runtime, smtp: SmtpServer) -> None:
    org_id = create_org(client, "alice")
    invite(client, org_id, "bob@example.com")

    def attempts() -> int:
        with runtime.database.session() as session:
            return int(session.scalar(select(OutboxMessage.attempts)) or 0)

    wait_until(lambda: attempts() >= 2, "failed delivery attempts")
    listed = client.get(f"/v1/organizations/{org_id}/invitations", headers=auth("alice")).json()
    assert listed[0]["delivery"] == "pending"
    assert smtp.inbox.received == []

    smtp.start()
    [mail] = smtp.inbox.wait_for(1)
    accepted = client.post("/v1/invitations/accept", json={"token": token_of(mail)}, headers=auth("bob"))
    assert accepted.status_code == 200, accepted.text

    def sent_at() -> object:
        with runtime.database.session() as session:
            return session.scalar(select(OutboxMessage.sent_at))

    # The sender records the delivery in its own transaction once the SMTP server has the mail; the
    # accept above may commit first (retiring the message), and "sent" must still be what stays.
    wait_until(lambda: sent_at() is not None, "the sender's record of the delivery")
    with runtime.database.session() as session:
        message = session.scalars(select(OutboxMessage)).one()
        assert (message.status, message.token) == ("sent", None)
        assert message.attempts >= 3


def test_two_people_racing_for_one_token(client: TestClient, smtp: SmtpServer) -> None:
    """Both accounts carry the invited, verified email; exactly one becomes a member."""
    smtp.start()
    org_id = create_org(client, "alice")
    invite(client, org_id, "shared@example.com")
    token = token_of(smtp.inbox.wait_for(1)[0])
    callers = ["bob", "carol", "bob", "carol", "bob", "carol"]
    barrier = threading.Barrier(len(callers))
    statuses: list[int] = []
    lock = threading.Lock()

    def race(sub: str) -> None:
        headers = auth(sub, email="shared@example.com")
        barrier.wait(timeout=10)
        response = client.post("/v1/invitations/accept", json={"token": token}, headers=headers)
        with lock:
            statuses.append(response.status_code)

    threads = [threading.Thread(target=race, args=(sub,)) for sub in callers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(statuses) == [200] + [409] * (len(callers) - 1)
    members = client.get(f"/v1/organizations/{org_id}/members", headers=auth("alice")).json()
    assert len(members) == 2


def test_without_smtp_the_mail_is_logged_masked(database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """The `make run` default: no AUTHZ_SMTP_HOST, so the mail goes to the log, token masked."""
    from api.app import create_app
    from authz.bootstrap import open_runtime

    caplog.set_level(logging.INFO, logger="authz.mail")
    settings = make_settings(database_url, mail_poll_interval=0.05)
    runtime = open_runtime(settings, migrate=False)
    try:
        with AppClient(create_app(settings, runtime)) as client:
            org_id = create_org(client, "alice")
            invite(client, org_id, "bob@example.com")

            def sent() -> bool:
                with runtime.database.session() as session:
                    message = session.scalars(select(OutboxMessage)).one()
                    return (message.status, message.token) == ("sent", None)

            wait_until(sent, "the outbox message to be marked sent")
    finally:
        runtime.database.dispose()
    [record] = [r for r in caplog.records if "it would read" in r.getMessage()]
    assert record.levelno == logging.INFO
    text = record.getMessage()
    assert "To: bob@example.com" in text and "as maintainer" in text
    assert re.search(r"/invitations/accept\?token=inv_[0-9a-f]{24}_\[masked\]$", text, re.MULTILINE)
