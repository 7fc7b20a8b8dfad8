"""The compiled index must decide exactly as pycasbin does on policy_model.conf.

Hypothesis builds random policies (roles with random acyclic inheritance, random grants),
memberships, resources, per-resource roles and removals, then compares `DecisionIndex.check`
with `enforce()` for random requests. Any difference is a bug in the compiler.

The role that owns a context is drawn too (`context_owner`: "owner" or any other role, so
renamed owning roles are covered): a user holds it in their personal account through the
rule `g, account-holder, <role>, *`, in pycasbin's matcher and in the index alike.

Grants may expire (a fourth value on the `g` rule, `authz.domain.grants`). Casbin's model
has no clock, so the oracle's meaning of an expiry is: at time `now` pycasbin holds
exactly the grants that have not ended, and the index, asked at `now`, must agree.
"""

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authz.domain import ids
from authz.domain.grants import expiry_epoch
from authz.policy.document import ObjectType, PolicyDocument, Role
from authz.policy.model import build_enforcer, casbin_request
from authz_client.decisions.index import DecisionIndex
from tests.conftest import POLICY_MODEL
from tests.hypothesis_budget import examples

ROLES = ["owner", "admin", "maintainer", "viewer", "auditor"]
TYPES = ["algorithm", "job", "member"]
ACTIONS = ["read", "update", "delete", "share"]
USERS = ["u0", "u1", "u2", "u3"]
ORGS = ["org_" + str(n) * 24 for n in range(3)]
RESOURCE_IDS = ["r0", "r1", "r2", "r3"]
EXPIRIES = [None, None, "2026-01-01T00:00:00Z", "2026-06-01T12:00:00Z"]
NOWS = [expiry_epoch("2025-12-31T23:59:59Z"), expiry_epoch("2026-01-01T00:00:00Z"),
        expiry_epoch("2026-03-01T00:00:00Z"), expiry_epoch("2027-01-01T00:00:00Z")]


def with_expiry(rule: tuple[str, ...], expiry: str | None) -> tuple[str, ...]:
    return rule if expiry is None else (*rule, expiry)


def in_force(rules: list[tuple[str, ...]], now: float) -> list[tuple[str, ...]]:
    """The rules pycasbin holds at `now`: unexpired, without their expiry value."""
    return [rule[:4] if rule[0] == "g" else rule for rule in rules
            if not (rule[0] == "g" and len(rule) > 4 and expiry_epoch(rule[4]) <= now)]


@st.composite
def policies(draw: st.DrawFn) -> PolicyDocument:
    roles = {}
    for position, name in enumerate(ROLES):
        below = ROLES[position + 1 :]  # inherit only roles listed later: never a cycle
        inherits = draw(st.lists(st.sampled_from(below), unique=True, max_size=2)) if below else []
        roles[name] = Role(name, tuple(inherits))
    types = {}
    for name in TYPES:
        actions = {action: tuple(draw(st.lists(st.sampled_from(ROLES), unique=True, max_size=2))) for action in ACTIONS}
        types[name] = ObjectType(name, actions, content=True)
    return PolicyDocument(roles, types, context_owner=draw(st.sampled_from(ROLES)))


contexts = st.sampled_from(ORGS) | st.sampled_from(USERS).map(ids.personal_context)


@st.composite
def worlds(
    draw: st.DrawFn
) -> tuple[PolicyDocument, list[tuple[str, ...]], dict[tuple[str, str], str], list[tuple[str, ...]]]:
    document = draw(policies())
    memberships = draw(st.dictionaries(st.tuples(st.sampled_from(USERS), st.sampled_from(ORGS)), st.sampled_from(ROLES),
                                       max_size=8))
    rules = [with_expiry(("g", ids.subject_of(user), role, org), draw(st.sampled_from(EXPIRIES)))
             for (user, org), role in memberships.items()]
    resources = draw(st.dictionaries(st.tuples(st.sampled_from(TYPES), st.sampled_from(RESOURCE_IDS)), contexts,
                                     max_size=6))
    scoped = draw(st.dictionaries(
        st.tuples(st.sampled_from(USERS), st.sampled_from(TYPES), st.sampled_from(RESOURCE_IDS)),
        st.sampled_from(ROLES), max_size=5,
    ))
    rules += [with_expiry(("g", ids.subject_of(user), role, ids.resource_scope(t, r)), draw(st.sampled_from(EXPIRIES)))
              for (user, t, r), role in scoped.items()]
    removed = draw(st.lists(st.sampled_from(rules), unique=True, max_size=3)) if rules else []
    return document, rules, resources, removed


requests = st.tuples(
    st.sampled_from(USERS),
    st.sampled_from(ACTIONS),
    st.sampled_from(TYPES),
    st.none() | st.sampled_from(RESOURCE_IDS),
    st.none() | contexts | st.just("org_" + "9" * 24),
)


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(world=worlds(), questions=st.lists(requests, min_size=1, max_size=25), now=st.sampled_from(NOWS))
def test_compiled_decisions_equal_casbin(world, questions, now) -> None:  # type: ignore[no-untyped-def]
    document, rules, resources, removed = world
    # Built in two steps, so the second runs copy-on-write over the first (as a replica does).
    editor = DecisionIndex.build()
    for rule in document.rules() + rules:
        editor.add_rule(rule)
    base = editor.finish()
    editor = base.edit()
    for rule in removed:
        editor.remove_rule(rule)
    for (resource_type, resource_id), context in resources.items():
        editor.add_resource(resource_type, resource_id, context)
    index = editor.finish()
    remaining = [rule for rule in rules if rule not in removed]
    enforcer = build_enforcer(POLICY_MODEL, document.rules() + in_force(remaining, now))
    clock = lambda: now  # noqa: E731

    # What a role may do (the compiled answer writes and listings use too) is pycasbin's answer
    # for the role itself as the subject, in any context; the account holder's is the owning role's.
    for role, object_type, action in itertools.product([*ROLES, ids.ACCOUNT_HOLDER], TYPES, ACTIONS):
        expected = enforcer.enforce(*casbin_request(role, ORGS[0], object_type, "", action))
        assert index.roles.allows(role, object_type, action) == expected, (role, object_type, action)
    assert index.roles.context_owner == document.context_owner

    for user, action, resource_type, resource_id, context in questions:
        compiled = index.check(user, action, resource_type, resource_id, context, clock)
        if resource_id is not None:
            context = resources.get((resource_type, resource_id))
            scope = ids.resource_scope(resource_type, resource_id)
        else:
            scope = ""
        if context is None:  # unknown resource, or no context: authz denies before asking Casbin
            assert compiled is False
            continue
        expected = enforcer.enforce(*casbin_request(ids.subject_of(user), context, resource_type, scope, action))
        assert compiled == expected, (user, action, resource_type, resource_id, context)
        type_level_context = context if resource_id is None else None
        decision = index.decide(user, action, resource_type, resource_id, type_level_context, clock)
        assert decision.allowed == expected
