"""The bulk start-up load (authz.engine.snapshot) builds the index that replaying the changelog builds.

`Replica.load` reads rules and resources grouped per domain, straight from the driver;
`catch_up` from revision 0 applies each change with `add_rule`/`add_resource`. Both must
give the same decisions, listings and memberships (on SQLite and on PostgreSQL).
"""

from dataclasses import replace

from authz.domain.principal import cli_principal
from authz.engine.replica import Replica
from authz.services.runtime import Runtime
from authz_client.decisions.index import DecisionIndex
from tests.conftest import add_member

ORG = "org_" + "a" * 24
OTHER = "org_" + "b" * 24


def _seed(runtime: Runtime) -> None:
    from authz.store.tables import Organization, Resource

    with runtime.unit_of_work(cli_principal()) as uow:
        for org in (ORG, OTHER):
            uow.created(org)
            uow.session.add(Organization(
                id=org, name=org, billing_line1="1 Way", billing_postal_code="1", billing_city="C",
                billing_country="DE", created_by="alice", created_at=uow.now, updated_at=uow.now,
            ))
        uow.commit()
    for user, org, role in (("alice", ORG, "owner"), ("bob", ORG, "viewer"), ("bob", OTHER, "maintainer"),
                            ("carol", OTHER, "owner")):
        add_member(runtime, org, user, role)
    with runtime.unit_of_work(cli_principal()) as uow:
        resources = [("algorithm", f"a{n}", context) for n, context in enumerate((ORG, ORG, OTHER, "user:dave"))]
        for context in (ORG, OTHER, "user:dave"):
            uow.lock_context(context)
        for resource_type, resource_id, context in [*resources, ("job", "j1", OTHER)]:
            uow.created(f"{resource_type}:{resource_id}")
            uow.session.add(Resource(type=resource_type, id=resource_id, context=context, created_by="alice",
                                     created_at=uow.now))
            uow.record({"op": "add_resource", "type": resource_type, "id": resource_id, "context": context})
        uow.add_rule(("g", "user:erin", "viewer", "algorithm:a2"))
        uow.commit()
    runtime.replica.catch_up(runtime.database)


def _state(index: DecisionIndex) -> tuple[object, ...]:
    return (index._members, index._contexts_of, index._resources, index._resources_in, index._resource_roles,
            index._resource_roles_of, index._effective)


def test_bulk_load_equals_changelog_replay(runtime: Runtime) -> None:
    _seed(runtime)
    loaded = Replica()
    loaded.load(runtime.database)
    replayed = Replica()
    replayed.snapshot = replace(replayed.snapshot, revision=0)
    replayed.catch_up(runtime.database)
    assert loaded.revision == replayed.revision == runtime.replica.revision
    assert _state(loaded.snapshot.index) == _state(replayed.snapshot.index)
    index = loaded.snapshot.index
    assert index.check("bob", "read", "algorithm", "a0", None)
    assert not index.check("bob", "delete", "algorithm", "a0", None)
    assert index.check("erin", "read", "algorithm", "a2", None)
    assert not index.check("erin", "read", "algorithm", "a1", None)
    assert index.check("dave", "delete", "algorithm", "a3", None)
    assert index.list_resources("bob", "read", "algorithm", None) == ["a0", "a1", "a2"]
    assert index.list_resources("carol", "read", "job", OTHER) == ["j1"]
    assert index.contexts_of("bob") == {ORG: "viewer", OTHER: "maintainer"}
