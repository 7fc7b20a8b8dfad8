"""The console in a real browser (Debian's Chromium via Playwright) against a real `authz serve`.

The journey of issue 13: alice signs in, creates an organization, invites bob as
maintainer; the email arrives over SMTP; bob opens its link, is asked to sign in,
accepts, switches to the org in the account drop-down and registers an algorithm there;
alice demotes him to viewer and he can no longer edit it; alice sets an IBM token and bob
sees that it is set but never its value; a reload puts bob back in his personal context.
Each page of the journey is saved under tests/e2e/screenshots/.

All browser tests are in this module: they share one browser (tests/e2e/conftest.py).
"""

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.browser import screenshot
from tests.processes import ServerProcess, start_authz
from tests.smtp_server import SmtpServer

pytestmark = pytest.mark.e2e
IBM_SECRET = "ibm-quantum-secret-token-9f3a1234"
LINK = re.compile(r"(https?://\S+/invitations/accept\?token=[A-Za-z0-9_-]+)")
PHONE = {"width": 360, "height": 800}
DESKTOP = {"width": 1280, "height": 900}


@pytest.fixture(scope="module")
def mail_server() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, mail_server: SmtpServer) -> Iterator[ServerProcess]:
    """`authz serve` as `make run` starts it (dev sign-in on), with email going to the tests' SMTP server."""
    process = start_authz(tmp_path_factory.mktemp("console"), env={
        "AUTHZ_DEV_LOGIN": "true",
        "AUTHZ_ADMIN_USERS": "alice",
        "AUTHZ_PUBLIC_URL": "http://127.0.0.1:{port}",
        "AUTHZ_SMTP_HOST": "127.0.0.1",
        "AUTHZ_SMTP_PORT": str(mail_server.port),
        "AUTHZ_MAIL_POLL_INTERVAL": "0.2",
        "AUTHZ_SESSION_SECRET": "browser-tests-session-secret",
    })
    yield process
    process.stop()


def new_page(browser: Any, viewport: dict[str, int]) -> Page:
    context = browser.new_context(viewport=viewport)
    page: Page = context.new_page()
    page.set_default_timeout(10_000)
    page.on("dialog", lambda dialog: dialog.accept())  # "Remove …?" confirmations
    return page


def dev_sign_in(page: Page, user: str) -> None:
    page.get_by_label("User id").fill(user)
    page.get_by_label("Email").fill(f"{user}@example.com")
    page.get_by_role("button", name="Sign in", exact=True).click()


def nav(page: Page, name: str) -> Any:
    """A link of the header's main navigation."""
    return page.get_by_role("navigation", name="Main").get_by_role("link", name=name, exact=True)


def switch_context(page: Page, label: str) -> None:
    page.get_by_label("Account context").select_option(label=label)
    page.get_by_role("button", name="Switch").click()


def no_horizontal_scroll(page: Page) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


def test_the_journey_from_sign_in_to_a_demoted_member(browser: Any, server: ServerProcess,
                                                        mail_server: SmtpServer) -> None:
    alice = new_page(browser, DESKTOP)
    bob = new_page(browser, PHONE)  # bob is on his phone: 360 px wide

    # alice signs in with the development sign-in; in no organization, she has no drop-down.
    alice.goto(server.url + "/")
    screenshot(alice, "01-landing")
    alice.get_by_role("link", name="Sign in").first.click()
    screenshot(alice, "02-sign-in")
    dev_sign_in(alice, "alice")
    expect(alice.get_by_role("status")).to_contain_text("Signed in as alice")
    expect(alice.get_by_label("Account context")).to_have_count(0)

    # She creates an organization with a billing address.
    nav(alice, "Organizations").click()
    alice.get_by_label("Name").fill("Quantum Lab")
    alice.get_by_label("Street and number").fill("1 Qubit Way")
    alice.get_by_label("Postal code").fill("10115")
    alice.get_by_label("City").fill("Berlin")
    alice.get_by_label("Country").select_option("DE")
    screenshot(alice, "03-create-organization")
    alice.get_by_role("button", name="Create organization").click()
    expect(alice.get_by_role("heading", level=1)).to_have_text("Quantum Lab")
    expect(alice.get_by_role("status")).to_contain_text("you are its owner")
    org_id = alice.url.rsplit("/", 1)[1]
    assert re.fullmatch(r"org_[0-9a-f]{24}", org_id)
    screenshot(alice, "04-organization-profile")

    # She invites bob as maintainer; the email arrives over SMTP.
    alice.get_by_role("link", name="Invitations").click()
    alice.get_by_label("Email").fill("bob@example.com")
    alice.get_by_label("Role").select_option("maintainer")
    alice.get_by_role("button", name="Send invitation").click()
    expect(alice.get_by_role("status")).to_have_text("Invitation sent to bob@example.com as maintainer.")
    mail = mail_server.inbox.wait_for(1)[0]
    assert mail.rcpt_tos == ["bob@example.com"]
    match = LINK.search(mail.text)
    assert match, mail.text
    link = match.group(1)
    assert link.startswith(server.url + "/invitations/accept?token=inv_")
    alice.reload()
    expect(alice.locator("tr", has_text="bob@example.com")).to_contain_text("pending")
    screenshot(alice, "05-invitations")

    # bob opens the link: asked to sign in first, and brought back to the invitation.
    bob.goto(link)
    expect(bob.get_by_role("main")).to_contain_text("Sign in first")
    screenshot(bob, "06-invitation-needs-sign-in")
    bob.get_by_role("link", name="Sign in to continue").click()
    dev_sign_in(bob, "bob")
    expect(bob).to_have_url(link)
    expect(bob.locator(".lead")).to_have_text("alice invited you to join Quantum Lab as maintainer.")
    screenshot(bob, "07-invitation")
    bob.get_by_role("button", name="Accept and join").click()
    expect(bob.get_by_role("status")).to_contain_text("You are now a maintainer")

    # The org is in his account drop-down; he switches to it and registers an algorithm there.
    nav(bob, "Content").click()
    expect(bob.get_by_test_id("current-context")).to_have_text("Personal account")
    expect(bob.get_by_label("Account context").locator("option")).to_have_text(
        ["Personal account", "Quantum Lab · maintainer"])
    switch_context(bob, "Quantum Lab · maintainer")
    expect(bob.get_by_test_id("current-context")).to_have_text("Quantum Lab")
    expect(bob.get_by_test_id("create-where")).to_contain_text("It will belong to Quantum Lab")
    bob.get_by_label("Type").select_option("algorithm")
    bob.get_by_label("Id", exact=True).fill("shor")
    bob.get_by_role("button", name="Register in Quantum Lab").click()
    expect(bob.get_by_role("status")).to_have_text("algorithm:shor registered in “Quantum Lab”.")
    shor = bob.locator("[data-resource='algorithm:shor']")
    expect(shor.get_by_test_id("may")).to_have_text("You may: read, update, execute")
    assert no_horizontal_scroll(bob), "the content page must fit 360 px"
    screenshot(bob, "08-content-phone")

    # alice demotes bob to viewer.
    alice.goto(f"{server.url}/orgs/{org_id}/members")
    bob_row = alice.locator("tr", has_text="bob@example.com")
    bob_row.get_by_label("Role of bob").select_option("viewer")
    bob_row.get_by_role("button", name="Change role").click()
    expect(alice.get_by_role("status")).to_have_text("bob is now viewer.")
    screenshot(alice, "09-members")

    # bob can no longer edit it, nor register content there.
    bob.goto(server.url + "/")
    switch_context(bob, "Quantum Lab · viewer")
    expect(shor.get_by_test_id("may")).to_have_text("You may: read")
    expect(bob.get_by_test_id("cannot-create")).to_contain_text("Your role viewer may not register content")
    expect(bob.get_by_role("button", name=re.compile("^Register"))).to_have_count(0)

    # alice sets the IBM backend token, from the organization's tab.
    alice.get_by_role("navigation", name="Organization").get_by_role("link", name="Backend tokens").click()
    expect(alice.get_by_test_id("current-context")).to_have_text("Quantum Lab")
    alice.get_by_label("Provider", exact=True).fill("ibm")
    alice.get_by_label("Token", exact=True).fill(IBM_SECRET)
    alice.get_by_role("button", name="Save token").click()
    expect(alice.get_by_role("status")).to_contain_text("The ibm token of “Quantum Lab” is set (ends in …1234)")
    screenshot(alice, "10-backend-tokens-owner")

    # bob sees that ibm is set, and never the value; no button to change it.
    nav(bob, "Backend tokens").click()
    expect(bob.get_by_test_id("current-context")).to_have_text("Quantum Lab")
    expect(bob.locator("tr[data-provider=ibm]")).to_contain_text("ibm set (ends in …1234)")
    assert IBM_SECRET not in bob.content()
    expect(bob.get_by_role("button", name="Save token")).to_have_count(0)
    expect(bob.get_by_role("button", name=re.compile("^Delete"))).to_have_count(0)
    assert no_horizontal_scroll(bob), "the tokens page must fit 360 px"
    screenshot(bob, "11-backend-tokens-viewer-phone")

    # A reload puts bob back in his personal context.
    bob.reload()
    expect(bob.get_by_test_id("current-context")).to_have_text("Personal account")
    expect(bob.locator("tr[data-provider=ibm]")).to_have_count(0)

    # The audit log shows alice what happened; the admin pages explain it.
    alice.goto(f"{server.url}/orgs/{org_id}/audit")
    expect(alice.locator("tbody tr")).to_have_count(6)  # create, invite, accept, resource, role change, token
    expect(alice.locator("tbody tr").first).to_contain_text("backend_token.set")
    screenshot(alice, "12-audit-log")
    nav(alice, "Policy").click()
    expect(alice.locator("table.matrix")).to_contain_text("backend_token")
    screenshot(alice, "13-admin-policy")
    nav(alice, "Why?").click()
    alice.get_by_label("Subject (user id)").fill("bob")
    alice.get_by_label("Action", exact=True).fill("update")
    alice.get_by_label("Resource type").fill("algorithm")
    alice.get_by_label("Resource id (empty for a type-level action)").fill("shor")
    alice.get_by_role("button", name="Explain").click()
    expect(alice.get_by_test_id("decision")).to_have_text("Denied")
    expect(alice.get_by_test_id("reason")).to_have_text("role 'viewer' does not grant update on algorithm")
    screenshot(alice, "14-admin-why")
    nav(alice, "Mailbox").click()
    expect(alice.get_by_role("link", name=link)).to_have_count(1)
    shown = alice.locator("article.mail pre").first.inner_text()
    assert shown.startswith("Hello,\n\n") and f"\n\n{link}\n\n" in shown  # the email's lines, as sent
    assert not shown.endswith("\n\n"), repr(shown[-40:])  # and no blank line after the last
    screenshot(alice, "15-dev-mailbox")
    log = server.log_text()
    assert IBM_SECRET not in log
    assert "AUTHZ_DEV_LOGIN is on" in log  # `authz serve` warns while the dev sign-in is on



def focused(page: Page) -> dict[str, str]:
    return page.evaluate("""() => { const e = document.activeElement; const s = getComputedStyle(e);
        return {id: e.id, tag: e.tagName, text: (e.innerText || '').trim(), outline: s.outlineStyle}; }""")


def tab_to(page: Page, element_id: str, limit: int = 25) -> None:
    for _ in range(limit):
        page.keyboard.press("Tab")
        if focused(page)["id"] == element_id:
            return
    raise AssertionError(f"#{element_id} cannot be reached with the Tab key")


def test_keyboard_only_with_visible_focus_and_errors_focused(browser: Any, server: ServerProcess) -> None:
    page = new_page(browser, PHONE)
    page.goto(server.url + "/signin")
    page.keyboard.press("Tab")
    first = focused(page)
    assert first["text"] == "Skip to the page" and first["outline"] != "none"  # the skip link, visibly focused
    page.keyboard.press("Enter")
    tab_to(page, "f-user_id")
    assert focused(page)["outline"] != "none"
    page.keyboard.type("kim")
    page.keyboard.press("Tab")
    page.keyboard.type("kim@example.com")
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_contain_text("Signed in as kim")

    page.goto(server.url + "/orgs")
    tab_to(page, "f-name")
    page.keyboard.type("   ")
    page.keyboard.press("Enter")  # submits the form; the server answers with the error beside the field
    expect(page.locator("#f-name-error")).to_have_text("name must be 1-100 characters after trimming")
    assert focused(page)["id"] == "f-name"  # focus lands on the field to fix
    assert page.get_by_label("Name").get_attribute("aria-invalid") == "true"
    assert no_horizontal_scroll(page)
    screenshot(page, "16-error-beside-field-phone")


def test_sign_in_with_an_openid_provider_in_the_browser(browser: Any, tmp_path: Path) -> None:
    from oidc_provider_mock import User, run_server_in_thread

    users = [User(sub="olga", claims={"email": "olga@example.com", "email_verified": True})]
    with run_server_in_thread(user_claims=users, require_nonce=True) as provider:
        issuer = f"http://localhost:{provider.server_port}"
        process = start_authz(tmp_path, env={
            "AUTHZ_OIDC_ISSUER": issuer, "AUTHZ_OIDC_CLIENT_ID": "authz-console",
            "AUTHZ_OIDC_CLIENT_SECRET": "console-secret", "AUTHZ_PUBLIC_URL": "http://127.0.0.1:{port}",
        })
        try:
            page = new_page(browser, DESKTOP)
            page.goto(process.url + "/orgs")
            expect(page).to_have_url(re.compile(r"/signin\?next=%2Forgs$"))
            expect(page.get_by_role("heading", name="Development sign-in")).to_have_count(0)  # off here
            page.get_by_role("link", name="Sign in with your platform account").click()
            expect(page).to_have_url(re.compile("^" + re.escape(issuer) + "/oauth2/authorize"))
            assert "code_challenge_method=S256" in page.url
            page.get_by_placeholder("sub").fill("olga")
            page.get_by_role("button", name="Authorize").click()
            expect(page).to_have_url(process.url + "/orgs")
            expect(page.locator(".who .user")).to_have_text("olga")
            assert page.context.cookies(process.url)[0]["httpOnly"] is True
            refused = page.goto(process.url + "/dev/signin")
            assert refused is not None and refused.status == 404  # the dev sign-in is refused when off
            assert "AUTHZ_DEV_LOGIN is on" not in process.log_text()
        finally:
            process.stop()
