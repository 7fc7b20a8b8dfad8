"""Applying `policies/` to the database as one revision, and reading the policy in force."""

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from authz.domain.principal import Principal
from authz.policy.document import ALL_DOMAINS, PolicyDocument, Rule
from authz.policy.loader import load_policy_dir
from authz.services.runtime import Runtime, Written
from authz.store.tables import CasbinRule, PolicyState
from authz.store.unit_of_work import UnitOfWork, rule_of


@dataclass(frozen=True)
class PolicyDiff:
    added: list[Rule]
    removed: list[Rule]

    @property
    def empty(self) -> bool:
        return not self.added and not self.removed


def _policy_rules_in_db(uow: UnitOfWork) -> set[Rule]:
    """The permission rules and role hierarchy (everything written for the "*" domain)."""
    rows = uow.session.scalars(
        select(CasbinRule).where(
            ((CasbinRule.ptype == "p") & (CasbinRule.v1 == ALL_DOMAINS))
            | ((CasbinRule.ptype == "g") & (CasbinRule.v2 == ALL_DOMAINS))
        )
    )
    return {rule_of(row) for row in rows}


def apply_policy(rt: Runtime, principal: Principal, document: PolicyDocument, *, dry_run: bool = False) -> Written[PolicyDiff]:
    """Replace the permission rules and hierarchy with `document`'s, as one revision."""
    wanted = set(document.rules())
    with rt.unit_of_work(principal) as uow:
        uow.lock_global()
        current = _policy_rules_in_db(uow)
        state = uow.session.get(PolicyState, 1)
        diff = PolicyDiff(added=sorted(wanted - current), removed=sorted(current - wanted))
        document_json = document.to_json()
        unchanged = diff.empty and state is not None and state.document == document_json
        if dry_run or unchanged:
            return Written(diff, None)
        for rule in diff.removed:
            uow.remove_rule(rule)
        for rule in diff.added:
            uow.add_rule(rule)
        if state is None:
            uow.session.add(PolicyState(id=1, document=document_json, applied_at=uow.now))
        else:
            state.document = document_json
            state.applied_at = uow.now
        uow.record({"op": "policy", "document": document_json})
        uow.audit(
            "policy.apply",
            context=None,
            target="policy",
            detail={"added": [list(r) for r in diff.added], "removed": [list(r) for r in diff.removed]},
        )
        revision = uow.commit()
    return Written(diff, revision)


def reload_policy(rt: Runtime, principal: Principal, directory: Path | None = None) -> Written[PolicyDiff]:
    """Re-read the policy directory, validate it and apply it (PolicyInvalid changes nothing)."""
    document = load_policy_dir(directory or rt.settings.policy_dir)
    return apply_policy(rt, principal, document)


def ensure_policy(rt: Runtime, principal: Principal) -> int | None:
    """At start-up: load `policies/` into a database that has no policy yet."""
    with rt.database.session() as session:
        has_policy = session.get(PolicyState, 1) is not None
    if has_policy:
        return None
    return reload_policy(rt, principal).revision


def policy_in_force(rt: Runtime) -> dict[str, object]:
    document = rt.policy
    return {
        "revision": rt.replica.revision,
        "roles": {name: {"inherits": list(role.inherits)} for name, role in document.roles.items()},
        "permissions": [list(rule[1:]) for rule in document.permission_rules()],
        "hierarchy": [list(rule[1:]) for rule in document.hierarchy_rules()],
        "types": document.to_json()["types"],
    }
