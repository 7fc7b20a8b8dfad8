"""Identifiers are data, never patterns: only the policy's own "*" domain is a wildcard."""

import pytest

from authz.domain import ids
from authz.domain.errors import Invalid
from authz.policy.loader import load_policy_dir
from authz.policy.model import build_enforcer, casbin_request
from authz_client.decisions.index import DecisionIndex
from tests.conftest import POLICY_DIR, POLICY_MODEL

ORG = "org_" + "a" * 24
HOSTILE = ["*", "%", "..", "a,b", "org_*", "user:*", "x' OR '1'='1", "a" * 300, "bad\x00id", "bad\nid", ""]


def world() -> tuple[DecisionIndex, list[tuple[str, ...]]]:
    document = load_policy_dir(POLICY_DIR)
    rules = document.rules() + [("g", "user:alice", "owner", ORG)]
    editor = DecisionIndex.build()
    for rule in rules:
        editor.add_rule(rule)
    editor.add_resource("algorithm", "a1", ORG)
    return editor.finish(), rules


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_domains_and_subjects_match_nothing(hostile: str) -> None:
    index, rules = world()
    enforcer = build_enforcer(POLICY_MODEL, rules)
    assert index.check(hostile, "delete", "algorithm", "a1", None) is False
    assert index.check("mallory", "delete", "algorithm", None, hostile) is False
    assert index.check("alice", "delete", "algorithm", None, hostile) is False
    # Casbin agrees when given the hostile values directly
    assert not enforcer.enforce(*casbin_request("user:mallory", hostile, "algorithm", "", "delete"))
    assert not enforcer.enforce(*casbin_request("user:" + hostile, ORG, "algorithm", "", "delete"))


def test_a_user_named_like_a_role_is_not_that_role() -> None:
    index, rules = world()
    enforcer = build_enforcer(POLICY_MODEL, rules)
    assert index.check("owner", "delete", "algorithm", "a1", None) is False
    assert not enforcer.enforce(*casbin_request(ids.subject_of("owner"), ORG, "algorithm", "", "delete"))


@pytest.mark.parametrize("hostile", HOSTILE)
def test_validation_rejects_hostile_identifiers(hostile: str) -> None:
    for check in (ids.user_id, ids.resource_id, ids.org_id, ids.context):
        with pytest.raises(Invalid):
            check(hostile)
