"""Members: role changes, removal, leaving, and the last owner, also under concurrency."""

import threading

import pytest

from authz.domain.errors import Conflict, Forbidden, Invalid, NotFound
from authz.domain.principal import Principal
from authz.services import members, organizations
from authz.services.runtime import Runtime
from tests.conftest import BILLING, add_member


def user(name: str) -> Principal:
    return Principal(kind="user", id=name, email=f"{name}@example.com", email_verified=True)


def new_org(runtime: Runtime, owner: str = "alice") -> str:
    return organizations.create_organization(runtime, user(owner), "Lab", BILLING).value.id


def roles(runtime: Runtime, org_id: str) -> dict[str, str]:
    return {m.user_id: m.role for m in members.list_members(runtime, user("alice"), org_id)}


def test_owner_changes_roles_and_each_change_is_one_revision(runtime: Runtime) -> None:
    org_id = new_org(runtime)
    add_member(runtime, org_id, "bob", "viewer")
    before = runtime.replica.revision
    written = members.change_role(runtime, user("alice"), org_id, "bob", "maintainer")
    assert written.revision == before + 1 == runtime.replica.revision
    assert roles(runtime, org_id) == {"alice": "owner", "bob": "maintainer"}
    assert runtime.replica.snapshot.index.check("bob", "create", "algorithm", None, org_id)


def test_non_owner_cannot_change_roles_and_nothing_changes(runtime: Runtime) -> None:
    org_id = new_org(runtime)
    add_member(runtime, org_id, "bob", "maintainer")
    add_member(runtime, org_id, "carol", "viewer")
    with pytest.raises(Forbidden):
        members.change_role(runtime, user("bob"), org_id, "carol", "owner")
    with pytest.raises(NotFound):
        members.change_role(runtime, user("mallory"), org_id, "carol", "owner")
    assert roles(runtime, org_id)["carol"] == "viewer"


def test_unknown_role_is_invalid(runtime: Runtime) -> None:
    org_id = new_org(runtime)
    add_member(runtime, org_id, "bob", "viewer")
    with pytest.raises(Invalid) as caught:
        members.change_role(runtime, user("alice"), org_id, "bob", "admin")
    assert caught.value.field == "role"


def test_last_owner_can_neither_be_demoted_nor_leave(runtime: Runtime) -> None:
    org_id = new_org(runtime)
    with pytest.raises(Conflict):
        members.change_role(runtime, user("alice"), org_id, "alice", "viewer")
    with pytest.raises(Conflict):
        members.remove_member(runtime, user("alice"), org_id, "alice")
    add_member(runtime, org_id, "bob", "owner")
    members.remove_member(runtime, user("alice"), org_id, "alice")  # now alice may leave
    assert roles_of_bob(runtime, org_id) == {"bob": "owner"}


def roles_of_bob(runtime: Runtime, org_id: str) -> dict[str, str]:
    return {m.user_id: m.role for m in members.list_members(runtime, user("bob"), org_id)}


def test_member_leaves_and_loses_access_at_once(runtime: Runtime) -> None:
    org_id = new_org(runtime)
    add_member(runtime, org_id, "bob", "maintainer")
    members.remove_member(runtime, user("bob"), org_id, "bob")
    assert not runtime.replica.snapshot.index.check("bob", "read", "algorithm", None, org_id)
    assert roles(runtime, org_id) == {"alice": "owner"}


def test_concurrent_owners_demoting_themselves_leave_one_owner(runtime: Runtime) -> None:
    """Invariant 5: the org row is locked and owners re-counted inside each transaction."""
    org_id = new_org(runtime)
    owners = ["alice", "bob", "carol", "dave"]
    for name in owners[1:]:
        add_member(runtime, org_id, name, "owner")
    barrier = threading.Barrier(len(owners))
    outcomes: dict[str, str] = {}

    def demote_or_leave(name: str, leave: bool) -> None:
        barrier.wait()
        try:
            if leave:
                members.remove_member(runtime, user(name), org_id, name)
            else:
                members.change_role(runtime, user(name), org_id, name, "viewer")
            outcomes[name] = "done"
        except Conflict:
            outcomes[name] = "conflict"

    threads = [threading.Thread(target=demote_or_leave, args=(n, i % 2 == 0)) for i, n in enumerate(owners)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes.values()) == ["conflict", "done", "done", "done"]
    survivor = next(name for name, outcome in outcomes.items() if outcome == "conflict")
    remaining = {m.user_id: m.role for m in members.list_members(runtime, user(survivor), org_id)}
    assert [name for name, role in remaining.items() if role == "owner"] == [survivor]
