"""Any Casbin enforcer with a SQL adapter reads the same policy authz writes (the casbin_rule layout).

A stock pycasbin enforcer, loading the database through `sqlalchemy-adapter`, answers
every question exactly as authz's compiled index does.
"""

import itertools

import casbin
from sqlalchemy_adapter import Adapter

from authz.domain import ids
from authz.domain.principal import Principal
from authz.policy.model import casbin_request, domain_matches
from authz.services import organizations, resources
from authz.services.runtime import Runtime
from tests.conftest import BILLING, POLICY_MODEL, add_member


def test_a_stock_enforcer_with_the_sql_adapter_agrees_with_authz(runtime: Runtime) -> None:
    alice = Principal(kind="user", id="alice", email="alice@example.com", email_verified=True)
    org = organizations.create_organization(runtime, alice, "Lab", BILLING).value.id
    add_member(runtime, org, "max", "maintainer")
    add_member(runtime, org, "vera", "viewer")
    resources.register_resource(runtime, alice, org, "algorithm", "grover")
    resources.set_resource_role(runtime, alice, "algorithm", "grover", "guest", "viewer")

    enforcer = casbin.Enforcer(str(POLICY_MODEL), Adapter(runtime.database.engine, create_table=False))
    enforcer.add_named_domain_matching_func("g", domain_matches)
    enforcer.load_policy()
    assert len(enforcer.get_policy()) == len(runtime.policy.permission_rules())

    users = ["alice", "max", "vera", "guest", "mallory"]
    actions = ["read", "update", "delete", "share", "create"]
    questions = allowed = 0
    for user, action in itertools.product(users, actions):
        for resource_id, context in (("grover", org), (None, org), (None, ids.personal_context(user))):
            scope = ids.resource_scope("algorithm", resource_id) if resource_id else ""
            expected = enforcer.enforce(*casbin_request(ids.subject_of(user), context, "algorithm", scope, action))
            compiled = runtime.replica.snapshot.index.check(user, action, "algorithm", resource_id, context)
            assert compiled == expected, (user, action, resource_id, context)
            questions += 1
            allowed += expected
    assert questions == 75
    assert 20 < allowed < 75  # both outcomes occur: the rules were really read from the table
