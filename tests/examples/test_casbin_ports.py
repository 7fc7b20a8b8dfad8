"""The Casbin examples (examples/casbin/) decide as authz does, reading the rules authz wrote.

The Python example always runs; the Node one runs wherever `node` and its `npm ci` are
there (CI installs them), so the README's claim about other ports is tested, not told.
"""

import itertools
import json
import shutil
import subprocess
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy_adapter import Adapter

from authz.domain import ids
from authz.domain.principal import Principal
from authz.policy.model import casbin_request
from authz.services import organizations, resources
from authz.services.runtime import Runtime
from authz.store.rules import rule_of
from authz.store.tables import CasbinRule
from examples.casbin.python.enforcer import enforcer
from tests.clock import Clock
from tests.conftest import BILLING, POLICY_MODEL, ROOT, add_member

NODE_EXAMPLE = ROOT / "examples" / "casbin" / "node"
USERS = ["alice", "max", "vera", "guest"]
ACTIONS = ["read", "update", "delete", "share"]


def _world(runtime: Runtime) -> tuple[str, Clock]:
    clock = Clock(runtime)
    alice = Principal(kind="user", id="alice", email="alice@example.com", email_verified=True)
    org = organizations.create_organization(runtime, alice, "Lab", BILLING).value.id
    add_member(runtime, org, "max", "maintainer")
    add_member(runtime, org, "vera", "viewer")
    resources.register_resource(runtime, alice, org, "algorithm", "grover")
    resources.set_resource_role(runtime, alice, "algorithm", "grover", "guest", "maintainer",
                                clock.now + timedelta(hours=1))
    clock.advance(hours=2)  # guest's grant has ended; its rule is still in the table (no sweep yet)
    return org, clock


def _questions(org: str) -> list[tuple[str, str, str | None, str]]:
    """(user, action, resource id or None, context): 32 questions."""
    return [(user, action, resource_id, org)
            for user, action, resource_id in itertools.product(USERS, ACTIONS, ["grover", None])]


def _casbin_question(user: str, action: str, resource_id: str | None, org: str) -> list[str]:
    scope = ids.resource_scope("algorithm", resource_id) if resource_id else ""
    return list(casbin_request(ids.subject_of(user), org, "algorithm", scope, action))


def _authz(runtime: Runtime, questions: list[tuple[str, str, str | None, str]]) -> list[bool]:
    snapshot = runtime.replica.snapshot
    return [snapshot.index.check(user, action, "algorithm", resource_id, org, snapshot.clock)
            for user, action, resource_id, org in questions]


def test_the_python_example_agrees_once_expired_grants_are_left_out(runtime: Runtime) -> None:
    org, clock = _world(runtime)
    questions = _questions(org)
    enforcing = enforcer(str(POLICY_MODEL), Adapter(runtime.database.engine, create_table=False))
    # The README's second point: an enforcer that loads every row still counts the ended grant.
    loaded_everything = [enforcing.enforce(*_casbin_question(*q)) for q in questions]
    for rule in _rules(runtime):
        if rule[0] == "g" and len(rule) > 4 and rule[4] <= clock.now.strftime("%Y-%m-%dT%H:%M:%SZ"):
            enforcing.remove_grouping_policy(*rule[1:])
    expected = _authz(runtime, questions)
    assert [enforcing.enforce(*_casbin_question(*q)) for q in questions] == expected
    assert loaded_everything != expected
    assert 5 < sum(expected) < len(questions)


@pytest.mark.skipif(shutil.which("node") is None or not (NODE_EXAMPLE / "node_modules").exists(),
                    reason="node and `npm ci` in examples/casbin/node are needed (.ci/run installs them)")
def test_the_node_example_agrees_and_needs_the_domain_function(runtime: Runtime) -> None:
    org, clock = _world(runtime)
    questions = _questions(org)
    payload = json.dumps({
        "rules": [list(rule) for rule in _rules(runtime)],
        "now": clock.now.isoformat(),
        "questions": [_casbin_question(*q) for q in questions],
    })
    expected = _authz(runtime, questions)
    with_function = _node(payload)
    without = _node(payload, "--no-domain-function")
    assert with_function == expected
    agreeing = sum(a == b for a, b in zip(without, expected, strict=True))
    assert agreeing < len(questions), agreeing  # the hierarchy is lost without the function
    print(f"node-casbin agrees on {len(questions)} of {len(questions)} with the function, {agreeing} without")


def _rules(runtime: Runtime) -> list[tuple[str, ...]]:
    with runtime.database.session() as session:
        return [rule_of(row) for row in session.scalars(select(CasbinRule))]


def _node(payload: str, *flags: str) -> list[bool]:
    result = subprocess.run(["node", "check.js", str(POLICY_MODEL), *flags], cwd=NODE_EXAMPLE, input=payload,
                            capture_output=True, text=True, timeout=60, check=True)
    return [bool(decision) for decision in json.loads(result.stdout)]
