"""The console's pages over HTTP: what each role sees, what the server refuses, errors beside fields.

A button's absence is only a convenience: every test of a forbidden action posts the form
anyway and checks that the server refuses it and nothing changed.
"""

import re
from typing import Any

from fastapi.testclient import TestClient

from authz.services.runtime import Runtime
from tests.app_client import AppClient
from tests.conftest import add_member
from tests.console.conftest import (
    create_org_in_console,
    csrf_of,
    field_error,
    flash_after,
    post_form,
    sign_in,
)


def test_a_signed_out_visitor_is_sent_to_sign_in_and_back(browser_like: TestClient) -> None:
    response = browser_like.get("/orgs/org_0123456789abcdef01234567/members")
    assert response.status_code == 303
    assert response.headers["location"] == "/signin?next=%2Forgs%2Forg_0123456789abcdef01234567%2Fmembers"
    page = browser_like.get(response.headers["location"])
    assert 'name="next" value="/orgs/org_0123456789abcdef01234567/members"' in page.text
    signed = browser_like.post("/dev/signin", data={"csrf": csrf_of(page.text), "user_id": "alice",
                                                    "email": "alice@example.com",
                                                    "next": "/orgs/org_0123456789abcdef01234567/members"})
    assert signed.headers["location"] == "/orgs/org_0123456789abcdef01234567/members"


def test_sign_in_never_redirects_off_site(browser_like: TestClient) -> None:
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:alert(1)"):
        page = browser_like.get("/dev/signin", params={"next": target})
        response = browser_like.post("/dev/signin", data={"csrf": csrf_of(page.text), "user_id": "alice",
                                                          "email": "", "next": target})
        assert response.headers["location"] == "/", target


def test_the_session_cookie_is_httponly_samesite_and_secure_off_loopback(browser_like: TestClient) -> None:
    sign_in(browser_like, "alice")
    cookie = browser_like.get("/dev/signin").headers.get("set-cookie") or ""
    page = browser_like.get("/dev/signin")
    response = browser_like.post("/dev/signin", data={"csrf": csrf_of(page.text), "user_id": "alice", "email": ""})
    header = response.headers["set-cookie"]
    assert "HttpOnly" in header and "SameSite=lax" in header and "Secure" not in header  # 127.0.0.1
    remote = AppClient(browser_like.app, base_url="http://console.example", follow_redirects=False)
    assert "Secure" in remote.get("/signin").headers["set-cookie"]
    assert cookie == "" or "HttpOnly" in cookie


def test_dev_pages_name_the_dev_login_and_the_signed_in_user(browser_like: TestClient) -> None:
    sign_in(browser_like, "alice")
    home = browser_like.get("/")
    assert home.status_code == 200
    assert '<span class="user"' in home.text and ">alice<" in home.text
    assert 'aria-label="Main"' in home.text


def test_forms_without_the_session_token_or_from_another_site_are_refused(browser_like: TestClient,
                                                                          runtime: Runtime) -> None:
    sign_in(browser_like, "alice")
    fields = {"name": "Evil Corp", "billing_address.line1": "1 Way", "billing_address.postal_code": "1",
              "billing_address.city": "X", "billing_address.country": "DE"}
    no_token = browser_like.post("/orgs", data=fields)
    assert no_token.status_code == 403 and "Request refused" in no_token.text
    token = csrf_of(browser_like.get("/orgs").text)
    cross_site = browser_like.post("/orgs", data={"csrf": token, **fields}, headers={"Origin": "https://evil.example"})
    assert cross_site.status_code == 403 and "another site" in cross_site.text
    fetch_cross = browser_like.post("/orgs", data={"csrf": token, **fields}, headers={"Sec-Fetch-Site": "cross-site"})
    assert fetch_cross.status_code == 403
    stolen = AppClient(browser_like.app, base_url="http://127.0.0.1:8000", follow_redirects=False)
    sign_in(stolen, "mallory")
    foreign_token = browser_like.post("/orgs", data={"csrf": csrf_of(stolen.get("/orgs").text), **fields})
    assert foreign_token.status_code == 403
    assert runtime.replica.snapshot.index.contexts_of("alice") == {}  # nothing was created
    ok = browser_like.post("/orgs", data={"csrf": token, **fields}, headers={"Origin": "http://127.0.0.1:8000"})
    assert ok.status_code == 303


def test_sign_out_ends_the_session_and_needs_the_token(browser_like: TestClient) -> None:
    sign_in(browser_like, "alice")
    assert browser_like.post("/signout", data={}).status_code == 403
    assert browser_like.get("/orgs").status_code == 200
    out = post_form(browser_like, "/orgs", "/signout", {})
    assert flash_after(browser_like, out) == "You are signed out."
    assert browser_like.get("/orgs").status_code == 303


def test_errors_are_shown_beside_the_field_that_caused_them(browser_like: TestClient) -> None:
    sign_in(browser_like, "alice")
    response = post_form(browser_like, "/orgs", "/orgs", {
        "name": "   ", "billing_address.line1": "1 Way", "billing_address.postal_code": "1",
        "billing_address.city": "X", "billing_address.country": "DE"})
    assert response.status_code == 422
    assert field_error(response.text, "name") == "name must be 1-100 characters after trimming"
    name_input = re.search(r'<input id="f-name"[^>]*>', response.text)
    assert name_input and 'aria-invalid="true"' in name_input.group(0)
    assert 'aria-describedby="f-name-error' in name_input.group(0)  # the error is read with the field
    assert 'value="1 Way"' in response.text  # what was typed is kept
    bad_country = post_form(browser_like, "/orgs", "/orgs", {
        "name": "Lab", "billing_address.line1": "1 Way", "billing_address.postal_code": "1",
        "billing_address.city": "X", "billing_address.country": "XX"})
    assert bad_country.status_code == 422
    assert "ISO 3166-1 alpha-2" in (field_error(bad_country.text, "billing_address.country") or "")
    assert field_error(bad_country.text, "name") is None


def test_the_drop_down_is_absent_for_a_user_in_no_org_and_lists_each_org(browser_like: TestClient,
                                                                        runtime: Runtime) -> None:
    sign_in(browser_like, "alice")
    assert 'id="account-context"' not in browser_like.get("/").text
    org = create_org_in_console(browser_like, "Quantum Lab")
    other = create_org_in_console(browser_like, "Photon Works")
    home = browser_like.get("/")
    options = re.findall(r'<option value="([^"]+)"( selected)?>([^<]+)</option>', home.text.split("</select>")[0])
    assert [(v, label) for v, _, label in options] == [
        ("personal", "Personal account"), (org, "Quantum Lab · owner"), (other, "Photon Works · owner")]
    assert options[0][1] == " selected"  # a plain load is the personal account


def test_content_is_created_in_the_context_the_form_names(browser_like: TestClient, runtime: Runtime) -> None:
    sign_in(browser_like, "alice")
    org = create_org_in_console(browser_like)
    page = browser_like.get("/", params={"context": org})
    assert "It will belong to <strong>Quantum Lab</strong>" in page.text
    created = browser_like.post("/resources", data={"csrf": csrf_of(page.text), "context": org,
                                                    "type": "algorithm", "id": "grover"})
    assert flash_after(browser_like, created) == "algorithm:grover registered in “Quantum Lab”."
    assert runtime.replica.snapshot.index.context_of("algorithm", "grover") == org
    personal = post_form(browser_like, "/", "/resources", {"context": "personal", "type": "job", "id": "run-1"})
    assert flash_after(browser_like, personal) == "job:run-1 registered in your personal account."
    assert runtime.replica.snapshot.index.context_of("job", "run-1") == "user:alice"
    assert "run-1" not in browser_like.get("/", params={"context": org}).text
    again = post_form(browser_like, "/", "/resources", {"context": "personal", "type": "algorithm", "id": "grover"})
    assert again.status_code == 409
    assert "a resource's context never changes" in (field_error(again.text, "id") or "")
    bad = post_form(browser_like, "/", "/resources", {"context": "personal", "type": "algorithm", "id": "no spaces"})
    assert bad.status_code == 422 and field_error(bad.text, "id")


def test_a_context_the_user_is_not_in_is_not_found_and_not_written(browser_like: TestClient, runtime: Runtime) -> None:
    sign_in(browser_like, "alice")
    org = create_org_in_console(browser_like)
    sign_in(browser_like, "mallory")
    assert browser_like.get("/", params={"context": org}).status_code == 404
    assert browser_like.get("/tokens", params={"context": org}).status_code == 404
    assert browser_like.get(f"/orgs/{org}").status_code == 404
    assert "Quantum Lab" not in browser_like.get(f"/orgs/{org}/members").text
    attempt = post_form(browser_like, "/", "/resources", {"context": org, "type": "algorithm", "id": "x"})
    assert attempt.status_code == 404
    assert runtime.replica.snapshot.index.context_of("algorithm", "x") is None


def test_a_viewer_sees_no_owner_buttons_and_the_server_refuses_them_anyway(browser_like: TestClient,
                                                                          runtime: Runtime) -> None:
    sign_in(browser_like, "alice")
    org = create_org_in_console(browser_like)
    add_member(runtime, org, "bob", "viewer")
    sign_in(browser_like, "bob")
    members = browser_like.get(f"/orgs/{org}/members")
    assert members.status_code == 200
    assert "Change role" not in members.text and ">Remove<" not in members.text and ">Leave<" in members.text
    profile = browser_like.get(f"/orgs/{org}")
    assert "1 Qubit Way" not in profile.text  # billing hidden: viewers may not read it
    assert 'action="/orgs/' not in profile.text  # no edit form
    tabs = re.findall(r'<nav aria-label="Organization".*?</nav>', profile.text, re.S)[0]
    assert "Invitations" not in tabs and "Audit log" not in tabs and "Members" in tabs

    token = csrf_of(members.text)
    promote = browser_like.post(f"/orgs/{org}/members/bob/role", data={"csrf": token, "role": "owner"})
    assert promote.status_code == 403 and "may not update member" in promote.text
    assert runtime.replica.snapshot.index.role_in("bob", org) == "viewer"
    remove = browser_like.post(f"/orgs/{org}/members/alice/remove", data={"csrf": token})
    assert remove.status_code == 403
    rename = browser_like.post(f"/orgs/{org}", data={"csrf": token, "name": "Mine now"})
    assert rename.status_code == 403 and "Quantum Lab" in rename.text
    invite = browser_like.post(f"/orgs/{org}/invitations", data={"csrf": token, "email": "x@example.com",
                                                               "role": "owner"})
    assert invite.status_code == 403
    assert browser_like.get(f"/orgs/{org}/invitations").status_code == 403
    assert browser_like.get(f"/orgs/{org}/audit").status_code == 403
    tokens = browser_like.get("/tokens", params={"context": org})
    assert "Save token" not in tokens.text
    set_token = browser_like.post("/tokens", data={"csrf": token, "context": org, "provider": "ibm", "token": "s3cret"})
    assert set_token.status_code == 403
    assert "ibm" not in browser_like.get("/tokens", params={"context": org}).text.split("Set for this context")[1]


def test_the_last_owner_rule_is_a_message_on_the_members_page(browser_like: TestClient, runtime: Runtime) -> None:
    sign_in(browser_like, "alice")
    org = create_org_in_console(browser_like)
    page = browser_like.get(f"/orgs/{org}/members")
    assert "always keeps at least one owner" in page.text
    demote = browser_like.post(f"/orgs/{org}/members/alice/role", data={"csrf": csrf_of(page.text), "role": "viewer"})
    assert demote.status_code == 409
    assert '<p class="alert" role="alert"><strong>alice:</strong> the organization must keep at least one owner' \
        in demote.text
    assert "<h1>Quantum Lab</h1>" in demote.text  # the members page itself, not an error page
    leave = browser_like.post(f"/orgs/{org}/members/alice/remove", data={"csrf": csrf_of(page.text)})
    assert leave.status_code == 409
    assert runtime.replica.snapshot.index.role_in("alice", org) == "owner"


def test_members_can_be_promoted_removed_and_can_leave(browser_like: TestClient, runtime: Runtime) -> None:
    sign_in(browser_like, "alice")
    org = create_org_in_console(browser_like)
    add_member(runtime, org, "bob", "viewer")
    add_member(runtime, org, "carol", "viewer")
    promoted = post_form(browser_like, f"/orgs/{org}/members", f"/orgs/{org}/members/bob/role", {"role": "owner"})
    assert flash_after(browser_like, promoted) == "bob is now owner."
    removed = post_form(browser_like, f"/orgs/{org}/members", f"/orgs/{org}/members/carol/remove", {})
    assert flash_after(browser_like, removed) == "carol was removed."
    left = post_form(browser_like, f"/orgs/{org}/members", f"/orgs/{org}/members/alice/remove", {})
    assert left.headers["location"] == "/orgs"
    assert runtime.replica.snapshot.index.role_in("alice", org) is None
    assert runtime.replica.snapshot.index.role_in("carol", org) is None
    assert runtime.replica.snapshot.index.role_in("bob", org) == "owner"


def test_owners_edit_the_profile_and_billing(browser_like: TestClient) -> None:
    sign_in(browser_like, "alice")
    org = create_org_in_console(browser_like)
    saved = post_form(browser_like, f"/orgs/{org}", f"/orgs/{org}", {
        "name": "Quantum Lab GmbH", "billing_address.line1": "2 Qubit Way", "billing_address.postal_code": "10117",
        "billing_address.city": "Berlin", "billing_address.country": "DE"})
    assert flash_after(browser_like, saved) == "Saved."
    page = browser_like.get(f"/orgs/{org}")
    assert "<h1>Quantum Lab GmbH</h1>" in page.text and "2 Qubit Way" in page.text
    bad = post_form(browser_like, f"/orgs/{org}", f"/orgs/{org}", {
        "name": "Quantum Lab GmbH", "billing_address.line1": "", "billing_address.postal_code": "10117",
        "billing_address.city": "Berlin", "billing_address.country": "DE"})
    assert bad.status_code == 422
    assert field_error(bad.text, "billing_address.line1") == "billing_address.line1 must not be empty"


def test_backend_tokens_are_set_replaced_and_deleted_and_never_shown(browser_like: TestClient) -> None:
    sign_in(browser_like, "alice")
    org = create_org_in_console(browser_like)
    page = f"/tokens?context={org}"
    first = post_form(browser_like, page, "/tokens", {"context": org, "provider": "ibm", "token": "first-secret-AAAA"})
    assert flash_after(browser_like, first) == "The ibm token of “Quantum Lab” is set (ends in …AAAA)."
    second = post_form(browser_like, page, "/tokens",
                       {"context": org, "provider": "ibm", "token": "second-secret-BBBB"})
    listing = browser_like.get(page).text
    assert second.status_code == 303 and "…BBBB" in listing and "…AAAA" not in listing
    assert "second-secret" not in listing and "first-secret" not in listing
    bad = post_form(browser_like, page, "/tokens", {"context": org, "provider": "IBM Quantum!", "token": "zzzz-secret"})
    assert bad.status_code == 422 and field_error(bad.text, "provider")
    assert "zzzz-secret" not in bad.text  # the secret is never sent back, not even into the form
    deleted = post_form(browser_like, page, "/tokens/ibm/delete", {"context": org})
    assert flash_after(browser_like, deleted) == "The ibm token of “Quantum Lab” was deleted."
    gone = post_form(browser_like, page, "/tokens/ibm/delete", {"context": org})
    assert gone.status_code == 404 and "no backend token is set" in gone.text


def test_per_resource_roles_are_shown_and_shared_by_owners_only(browser_like: TestClient, runtime: Runtime) -> None:
    sign_in(browser_like, "alice")
    org = create_org_in_console(browser_like)
    add_member(runtime, org, "bob", "viewer")
    post_form(browser_like, "/", "/resources", {"context": org, "type": "algorithm", "id": "grover"})
    shared = post_form(browser_like, f"/?context={org}", "/resources/algorithm/grover/roles",
                       {"context": org, "user_id": "bob", "role": "maintainer"})
    assert flash_after(browser_like, shared) == "bob is now maintainer of algorithm:grover."
    assert runtime.replica.snapshot.index.resource_role("bob", "algorithm", "grover") == "maintainer"
    content = browser_like.get("/", params={"context": org}).text
    assert "Sharing: 1 role of its own" in content
    sign_in(browser_like, "bob")
    bob_view = browser_like.get("/", params={"context": org}).text
    assert "You may: read, update, execute" in bob_view  # viewer in the org, maintainer of grover
    assert "Sharing:" not in bob_view and ">Delete<" not in bob_view
    refused = post_form(browser_like, f"/?context={org}", "/resources/algorithm/grover/delete", {"context": org})
    assert refused.status_code == 403
    assert runtime.replica.snapshot.index.context_of("algorithm", "grover") == org


def test_the_audit_log_is_paged(browser_like: TestClient, runtime: Runtime) -> None:
    sign_in(browser_like, "alice")
    org = create_org_in_console(browser_like)
    for number in range(30):
        add_member(runtime, org, f"user{number}", "viewer")
    first = browser_like.get(f"/orgs/{org}/audit")
    assert first.text.count("<code>member.add</code>") == 25
    older = re.search(r'href="(/orgs/[^"]+/audit\?before=\d+)" rel="next"', first.text)
    assert older
    second = browser_like.get(older.group(1))
    assert second.text.count("<code>member.add</code>") == 5 and "organization.create" in second.text
    assert 'rel="next"' not in second.text
    assert browser_like.get(f"/orgs/{org}/audit?before=abc").status_code == 422
    assert browser_like.get(f"/orgs/{org}/audit?before=0").status_code == 422


def test_admin_pages_are_for_admins_only(browser_like: TestClient) -> None:
    sign_in(browser_like, "alice")
    assert browser_like.get("/admin/policy").status_code == 403
    assert browser_like.get("/admin/why").status_code == 403
    assert "/admin/policy" not in browser_like.get("/").text
    sign_in(browser_like, "root")
    policy = browser_like.get("/admin/policy")
    assert policy.status_code == 200 and "backend_token" in policy.text
    why = browser_like.get("/admin/why", params={"subject": "alice", "action": "create", "type": "algorithm",
                                                 "context": "user:alice"})
    assert 'data-testid="decision">Allowed<' in why.text
    assert "alice owns this personal account: &#39;owner&#39;, which may create algorithm" in why.text
    invalid = browser_like.get("/admin/why", params={"subject": "bad subject!", "action": "read", "type": "algorithm"})
    assert invalid.status_code == 422 and field_error(invalid.text, "subject")
    missing = browser_like.get("/admin/why", params={"subject": "alice", "action": "", "type": "algorithm"})
    assert missing.status_code == 422 and field_error(missing.text, "action") == "action is required"


def test_an_unexpected_failure_is_a_page_without_details(browser_like: TestClient, monkeypatch: Any) -> None:
    from authz.services import organizations

    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("secret internals")

    sign_in(browser_like, "alice")
    monkeypatch.setattr(organizations, "list_organizations", broken)
    page = browser_like.get("/orgs")
    assert page.status_code == 500 and "Something went wrong" in page.text
    assert "secret internals" not in page.text and "Traceback" not in page.text


def test_an_owner_archives_from_the_profile_and_restores_from_the_organizations_page(
    browser_like: TestClient, runtime: Runtime
) -> None:
    sign_in(browser_like, "alice")
    org = create_org_in_console(browser_like)
    add_member(runtime, org, "bob", "maintainer")
    profile = browser_like.get(f"/orgs/{org}")
    assert f'action="/orgs/{org}/archive"' in profile.text and "restore it, exactly as it was" in profile.text
    archived = post_form(browser_like, f"/orgs/{org}", f"/orgs/{org}/archive", {})
    assert flash_after(browser_like, archived).startswith("Organization archived")
    assert runtime.replica.snapshot.index.role_in("bob", org) is None  # gone from every member at once
    listing = browser_like.get("/orgs").text
    assert f'href="/orgs/{org}"' not in listing
    assert f'action="/orgs/{org}/restore"' in listing and "restorable until" in listing
    assert browser_like.get(f"/orgs/{org}").status_code == 404
    restored = post_form(browser_like, "/orgs", f"/orgs/{org}/restore", {})
    assert "restored, as it was" in flash_after(browser_like, restored)
    assert runtime.replica.snapshot.index.role_in("bob", org) == "maintainer"
    assert f'action="/orgs/{org}/restore"' not in browser_like.get("/orgs").text


def test_only_owners_see_and_may_archive_and_only_former_owners_may_restore(
    browser_like: TestClient, runtime: Runtime
) -> None:
    sign_in(browser_like, "alice")
    org = create_org_in_console(browser_like)
    add_member(runtime, org, "bob", "maintainer")
    owner_page = browser_like.get(f"/orgs/{org}")
    sign_in(browser_like, "bob")
    assert f'action="/orgs/{org}/archive"' not in browser_like.get(f"/orgs/{org}").text
    refused = browser_like.post(f"/orgs/{org}/archive", data={"csrf": csrf_of(browser_like.get(f"/orgs/{org}").text)})
    assert refused.status_code == 403 and "<h1>Quantum Lab</h1>" in refused.text
    assert runtime.replica.snapshot.index.role_in("alice", org) == "owner"  # nothing changed
    sign_in(browser_like, "alice")
    post_form(browser_like, f"/orgs/{org}", f"/orgs/{org}/archive", {})
    sign_in(browser_like, "bob")  # a maintainer at archive time: nothing to restore, not even a trace
    listing = browser_like.get("/orgs")
    assert org not in listing.text
    restore = browser_like.post(f"/orgs/{org}/restore", data={"csrf": csrf_of(listing.text)})
    assert restore.status_code == 404
    assert owner_page.status_code == 200
