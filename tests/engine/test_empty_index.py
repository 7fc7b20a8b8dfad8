"""Empty indexes share one empty shard; building or editing one never writes to what another holds."""

from authz_client.decisions.index import DecisionIndex


def test_indexes_built_from_empty_ones_share_nothing_they_change() -> None:
    empty = DecisionIndex.build().finish()
    first = DecisionIndex.build()  # bulk loads change their own parts in place
    first.add_rule(("g", "user:alice", "owner", "org_1"))
    first.add_resource("algorithm", "a1", "org_1")
    built = first.finish()
    edited = empty.apply([{"op": "add_rule", "rule": ["g", "user:bob", "viewer", "org_2"]}])

    assert built.role_in("alice", "org_1") == "owner"
    assert built.context_of("algorithm", "a1") == "org_1"
    assert edited.role_in("bob", "org_2") == "viewer"
    for index in (empty, DecisionIndex.build().finish()):  # the shared empty shard stayed empty
        assert index.counts() == {"memberships": 0, "resources": 0, "resource_roles": 0}
        assert index.role_in("alice", "org_1") is None and index.role_in("bob", "org_2") is None
        assert index.context_of("algorithm", "a1") is None
    assert built.role_in("bob", "org_2") is None and edited.role_in("alice", "org_1") is None
