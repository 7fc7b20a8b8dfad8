"""The page an invitation email links to (AUTHZ_PUBLIC_URL/invitations/accept?token=…).

It used to be authz's 404; now it asks to sign in, comes back, and explains every state.
The links come from the emails themselves (the development mailbox keeps what was sent).
"""

import re
import time
from urllib.parse import urlsplit

from fastapi import FastAPI
from fastapi.testclient import TestClient

from authz.services.runtime import Runtime
from tests.clock import Clock
from tests.console.conftest import create_org_in_console, csrf_of, flash_after, post_form, sign_in

LINK = re.compile(r"https?://\S+/invitations/accept\?token=[A-Za-z0-9_-]+")


def invite(client: TestClient, org: str, email: str, role: str = "maintainer") -> str:
    """Invite as the signed-in owner; the path of the link in the email that went out."""
    assert isinstance(client.app, FastAPI)
    sent_before = len(client.app.state.console.mailbox.mails())
    response = post_form(client, f"/orgs/{org}/invitations", f"/orgs/{org}/invitations",
                         {"email": email, "role": role})
    assert response.status_code == 303, response.text
    return _next_link(client, sent_before)


def _next_link(client: TestClient, sent_before: int) -> str:
    assert isinstance(client.app, FastAPI)
    mailbox = client.app.state.console.mailbox
    deadline = time.monotonic() + 10
    while len(mailbox.mails()) <= sent_before:
        assert time.monotonic() < deadline, "no email was sent"
        time.sleep(0.05)
    match = LINK.search(mailbox.mails()[0].text)
    assert match
    url = urlsplit(match.group(0))
    return f"{url.path}?{url.query}"


def text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_the_link_asks_to_sign_in_then_returns_and_accepts(browser_like: TestClient, runtime: Runtime) -> None:
    sign_in(browser_like, "alice")
    org = create_org_in_console(browser_like)
    link = invite(browser_like, org, "bob@example.com")
    assert link.startswith("/invitations/accept?token=inv_")
    post_form(browser_like, "/orgs", "/signout", {})

    page = browser_like.get(link)
    assert page.status_code == 200
    assert "Sign in first" in page.text and "Quantum Lab" not in page.text  # nothing revealed before sign-in
    assert page.headers["referrer-policy"] == "same-origin"  # the token never leaves in a Referer
    signin = re.search(r'href="(/signin\?next=[^"]+)"', page.text)
    assert signin
    form = browser_like.get(signin.group(1).replace("&amp;", "&"))
    next_field = re.search(r'name="next" value="([^"]+)"', form.text)
    assert next_field
    back = browser_like.post("/dev/signin", data={"csrf": csrf_of(form.text), "user_id": "bob",
                                                  "email": "bob@example.com", "next": next_field.group(1)})
    assert back.headers["location"] == link

    invitation = browser_like.get(link)
    assert "alice invited you to join Quantum Lab as maintainer ." in text(invitation.text)
    accepted = browser_like.post("/invitations/accept", data={"csrf": csrf_of(invitation.text),
                                                              "token": link.split("token=")[1]})
    assert accepted.headers["location"] == f"/orgs/{org}"
    assert "You are now a maintainer" in flash_after(browser_like, accepted)
    assert runtime.replica.snapshot.index.role_in("bob", org) == "maintainer"
    again = browser_like.get(link)
    assert "You are already a member of this organization." in again.text
    twice = browser_like.post("/invitations/accept", data={"csrf": csrf_of(again.text),
                                                           "token": link.split("token=")[1]})
    assert twice.status_code == 409 and "already" in twice.text


def test_someone_else_signed_in_learns_nothing_and_can_switch_account(browser_like: TestClient) -> None:
    sign_in(browser_like, "alice")
    org = create_org_in_console(browser_like)
    link = invite(browser_like, org, "bob@example.com")
    sign_in(browser_like, "carol")
    page = browser_like.get(link)
    assert page.status_code == 403
    assert "sent to a different email address (b…@example.com)" in page.text
    assert "Quantum Lab" not in page.text and "alice" not in page.text and "Accept" not in page.text
    switch = browser_like.post("/signout", data={"csrf": csrf_of(page.text), "next": link})
    assert switch.headers["location"] == "/signin?next=" + link.replace("/", "%2F").replace("?", "%3F").replace(
        "=", "%3D")
    refused = browser_like.post("/invitations/accept", data={"csrf": csrf_of(browser_like.get("/dev/signin").text),
                                                             "token": link.split("token=")[1]})
    assert refused.status_code == 303 and refused.headers["location"].startswith("/signin")  # signed out


def test_an_account_without_a_verified_email_is_told_so(browser_like: TestClient) -> None:
    sign_in(browser_like, "alice")
    org = create_org_in_console(browser_like)
    link = invite(browser_like, org, "bob@example.com")
    page = browser_like.get("/dev/signin")
    browser_like.post("/dev/signin", data={"csrf": csrf_of(page.text), "user_id": "bob", "email": ""})
    assert "no verified email address" in browser_like.get(link).text


def test_expired_revoked_declined_resent_and_unknown_links_are_explained(browser_like: TestClient,
                                                                         runtime: Runtime) -> None:
    sign_in(browser_like, "alice")
    org = create_org_in_console(browser_like)
    expiring = invite(browser_like, org, "bob@example.com")
    revoked = invite(browser_like, org, "carol@example.com")
    declined = invite(browser_like, org, "dave@example.com")
    replaced = invite(browser_like, org, "erin@example.com")

    invitations = browser_like.get(f"/orgs/{org}/invitations").text
    revoke_path = re.search(r'action="(/orgs/[^"]+/invitations/inv_[0-9a-f]+/revoke)"[^>]*'
                            r'data-confirm="Revoke the invitation to carol@example.com\?"', invitations)
    assert revoke_path
    assert flash_after(browser_like, post_form(browser_like, f"/orgs/{org}/invitations", revoke_path.group(1), {})) \
        == "Invitation revoked; its link no longer works."
    resend_paths = re.findall(r'action="(/orgs/[^"]+/invitations/inv_[0-9a-f]+/resend)"', invitations)
    found = re.search(r"inv_[0-9a-f]{24}", replaced)
    assert found is not None, replaced
    erin_id = found.group(0)
    resend = next(p for p in resend_paths if erin_id in p)
    assert isinstance(browser_like.app, FastAPI)
    sent_before = len(browser_like.app.state.console.mailbox.mails())
    assert "previous link no longer works" in flash_after(
        browser_like, post_form(browser_like, f"/orgs/{org}/invitations", resend, {}))
    newest = _next_link(browser_like, sent_before)
    assert newest != replaced

    sign_in(browser_like, "dave")
    page = browser_like.get(declined)
    declined_now = browser_like.post("/invitations/decline", data={"csrf": csrf_of(page.text),
                                                                   "token": declined.split("token=")[1]})
    assert flash_after(browser_like, declined_now) == "You declined the invitation; the link no longer works."
    assert "already declined; an invitation works only once" in browser_like.get(declined).text

    sign_in(browser_like, "carol")
    assert "was revoked by an owner of Quantum Lab" in browser_like.get(revoked).text

    sign_in(browser_like, "erin")
    old = browser_like.get(replaced)
    assert old.status_code == 404 and "use the link in the newest email" in old.text
    assert "as maintainer" in text(browser_like.get(newest).text)

    sign_in(browser_like, "bob")
    Clock(runtime).advance(days=8)
    expired = browser_like.get(expiring)
    assert "This invitation expired on" in expired.text and "resend it" in expired.text
    assert "Accept and join" not in expired.text
    late = browser_like.post("/invitations/accept", data={"csrf": csrf_of(expired.text),
                                                          "token": expiring.split("token=")[1]})
    assert late.status_code == 410 and runtime.replica.snapshot.index.role_in("bob", org) is None

    garbage = browser_like.get("/invitations/accept", params={"token": "not-a-token"})
    assert garbage.status_code == 404 and "no invitation matches this token" in garbage.text


def test_inviting_twice_or_a_bad_email_is_shown_beside_the_email_field(browser_like: TestClient) -> None:
    sign_in(browser_like, "alice")
    org = create_org_in_console(browser_like)
    invite(browser_like, org, "bob@example.com")
    again = post_form(browser_like, f"/orgs/{org}/invitations", f"/orgs/{org}/invitations",
                      {"email": "bob@example.com", "role": "viewer"})
    assert again.status_code == 409 and "already has a pending invitation" in again.text
    assert re.search(r'id="f-email-error">bob@example.com already has a pending invitation', again.text)
    bad = post_form(browser_like, f"/orgs/{org}/invitations", f"/orgs/{org}/invitations",
                    {"email": "not an email", "role": "viewer"})
    assert bad.status_code == 422 and 'id="f-email-error"' in bad.text
    role = post_form(browser_like, f"/orgs/{org}/invitations", f"/orgs/{org}/invitations",
                     {"email": "x@example.com", "role": "emperor"})
    assert role.status_code == 422 and 'id="f-role-error">role must be one of' in role.text


def test_an_invitation_for_a_membership_that_ends(browser_like: TestClient, runtime: Runtime) -> None:
    sign_in(browser_like, "alice")
    org = create_org_in_console(browser_like)
    past = post_form(browser_like, f"/orgs/{org}/invitations", f"/orgs/{org}/invitations",
                     {"email": "bob@example.com", "role": "viewer", "expires_at": "2001-01-01T00:00"})
    assert past.status_code == 422
    assert re.search(r'id="f-expires_at-error">expires_at must be in the future', past.text)
    assert isinstance(browser_like.app, FastAPI)
    sent_before = len(browser_like.app.state.console.mailbox.mails())
    ok = post_form(browser_like, f"/orgs/{org}/invitations", f"/orgs/{org}/invitations",
                   {"email": "bob@example.com", "role": "viewer", "expires_at": "2099-06-30T12:00"})
    assert ok.status_code == 303
    assert "until 2099-06-30 12:00 UTC" in browser_like.get(f"/orgs/{org}/invitations").text
    link = _next_link(browser_like, sent_before)
    sign_in(browser_like, "bob")
    page = browser_like.get(link)
    assert "The membership ends on 2099-06-30 at 12:00 UTC." in page.text
    browser_like.post("/invitations/accept", data={"csrf": csrf_of(page.text), "token": link.split("token=")[1]})
    members = browser_like.get(f"/orgs/{org}/members").text
    assert re.search(r'data-testid="membership-end">until 2099-06-30 12:00 UTC<', members)
