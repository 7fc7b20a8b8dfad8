"""Members, invitations and audit in pages: keyset by id, cursors bound to their listing."""

from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from authz.services.runtime import Runtime
from tests.conftest import add_member, auth, create_org


def _walk_links(
    client: TestClient, url: str, headers: dict[str, str], between: Any = None
) -> list[list[dict[str, Any]]]:
    """Follow `Link: rel="next"` to the end; `between(n)` runs after page n."""
    pages = []
    while url:
        response = client.get(url, headers=headers)
        assert response.status_code == 200, response.text
        pages.append(response.json())
        links = httpx.Response(200, headers=response.headers).links
        url = links.get("next", {}).get("url", "")
        if url and between is not None:
            between(len(pages))
    return pages


def test_members_page_by_user_id_and_a_walk_survives_joins_and_leaves(client: TestClient, runtime: Runtime) -> None:
    org_id = create_org(client, "alice")
    for user in ["bob", "carol", "dave", "erin", "frank", "gina"]:
        add_member(runtime, org_id, user, "viewer")

    def change(page: int) -> None:
        if page == 1:
            add_member(runtime, org_id, "aaron", "viewer")  # sorts before the cursor: not in this walk
            add_member(runtime, org_id, "zed", "viewer")  # after it: shown
            assert client.delete(f"/v1/organizations/{org_id}/members/erin", headers=auth("erin")).status_code == 204

    pages = _walk_links(client, f"/v1/organizations/{org_id}/members?limit=3", auth("alice"), change)
    seen = [m["user_id"] for page in pages for m in page]
    assert [m["user_id"] for m in pages[0]] == ["alice", "bob", "carol"]
    assert seen == ["alice", "bob", "carol", "dave", "frank", "gina", "zed"]
    last = client.get(f"/v1/organizations/{org_id}/members", headers=auth("alice"))
    assert "link" not in last.headers and len(last.json()) == 8


def test_invitations_page_by_id(client: TestClient, runtime: Runtime) -> None:
    org_id = create_org(client, "alice")
    for n in range(5):
        created = client.post(f"/v1/organizations/{org_id}/invitations",
                              json={"email": f"user{n}@example.com", "role": "viewer"}, headers=auth("alice"))
        assert created.status_code == 201
    pages = _walk_links(client, f"/v1/organizations/{org_id}/invitations?limit=2", auth("alice"))
    assert [len(p) for p in pages] == [2, 2, 1]
    ids = [i["id"] for page in pages for i in page]
    assert ids == sorted(ids) and len(set(ids)) == 5


def test_audit_pages_newest_first_with_a_cursor(client: TestClient, runtime: Runtime) -> None:
    org_id = create_org(client, "alice")
    for user in ["bob", "carol", "dave", "erin"]:
        add_member(runtime, org_id, user, "viewer")
    entries: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get(f"/v1/organizations/{org_id}/audit", params=params, headers=auth("alice")).json()
        entries += [e["id"] for e in page["entries"]]
        cursor = page["next_cursor"]
        if cursor is None:
            assert page["next_before"] is None
            break
        assert page["next_before"] == page["entries"][-1]["id"]
    assert entries == sorted(entries, reverse=True) and len(entries) == 5  # org created + 4 members


def _cursor_of(client: TestClient, url: str, headers: dict[str, str]) -> str:
    link = httpx.Response(200, headers=client.get(url, headers=headers).headers).links["next"]["url"]
    return str(httpx.URL(link).params["cursor"])


def test_cursors_are_bound_to_their_listing_and_org(client: TestClient, runtime: Runtime) -> None:
    org_id = create_org(client, "alice")
    other = create_org(client, "alice", "Other Lab")
    for org in (org_id, other):
        for user in ["bob", "carol"]:
            add_member(runtime, org, user, "viewer")
        for n in range(2):
            client.post(f"/v1/organizations/{org}/invitations", json={"email": f"u{n}@example.com", "role": "viewer"},
                        headers=auth("alice"))
    members = _cursor_of(client, f"/v1/organizations/{org_id}/members?limit=1", auth("alice"))
    refused = [
        f"/v1/organizations/{other}/members?cursor={members}",  # another org
        f"/v1/organizations/{org_id}/invitations?cursor={members}",  # another listing
        f"/v1/organizations/{org_id}/audit?cursor={members}",
        f"/v1/organizations/{org_id}/members?cursor={members[:-2]}xy",  # altered
        f"/v1/organizations/{org_id}/members?cursor=forged",
    ]
    for url in refused:
        response = client.get(url, headers=auth("alice"))
        assert response.status_code == 400, (url, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["errors"][0]["field"] == "cursor"
    assert client.get(f"/v1/organizations/{org_id}/members?cursor={members}", headers=auth("alice")).status_code == 200


@pytest.mark.parametrize("path", ["members", "invitations", "audit"])
def test_a_bad_limit_is_422(client: TestClient, runtime: Runtime, path: str) -> None:
    org_id = create_org(client, "alice")
    for limit in (0, 100000, "x"):
        response = client.get(f"/v1/organizations/{org_id}/{path}?limit={limit}", headers=auth("alice"))
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == "limit"
