"""The Casbin model (`policy_model.conf`) and pycasbin enforcers built from rules.

pycasbin defines the meaning of a decision; it evaluates `explain`, the policy test
suites and the oracle test. The hot path is `authz.engine`, compiled from the same rules.
"""

from collections.abc import Iterable
from pathlib import Path

import casbin

from authz.domain.ids import ALL_DOMAINS
from authz.policy.document import Rule


def domain_matches(request_domain: str, stored_domain: str) -> bool:
    """Only the policy's own "*" domain is a wildcard; every other domain is compared as data."""
    return stored_domain in (ALL_DOMAINS, request_domain)


def build_enforcer(model_path: Path, rules: Iterable[Rule]) -> casbin.Enforcer:
    """A pycasbin enforcer holding exactly `rules`, with authz's domain matcher."""
    enforcer = casbin.Enforcer(str(model_path))
    enforcer.add_named_domain_matching_func("g", domain_matches)
    permission = [list(rule[1:]) for rule in rules if rule[0] == "p"]
    grouping = [list(rule[1:]) for rule in rules if rule[0] == "g"]
    if permission:
        enforcer.add_policies(permission)
    if grouping:
        enforcer.add_grouping_policies(grouping)
    return enforcer


def casbin_request(subject: str, domain: str, object_type: str, scope: str, action: str) -> tuple[str, ...]:
    """The request tuple of `policy_model.conf`: (sub, dom, obj, scope, act)."""
    return (subject, domain, object_type, scope, action)
