"""Applying `policies/` to the database as one revision, and reading the policy in force.

What `authz policy validate` accepts, `apply` applies: validation rehearses the apply
(`rehearse_policy`) through the very same function on a scratch database and then starts
a replica from it, as a server would; `apply --dry-run` runs the apply on the real
database inside a transaction that is rolled back.
"""

import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import IntegrityError

from authz.domain.errors import AuthzError, Invalid
from authz.domain.principal import Principal
from authz.engine.replica import Replica
from authz.policy.document import PolicyDocument, Rule
from authz.policy.loader import load_policy_dir
from authz.policy.routes import load_routes
from authz.policy.yaml_nodes import PolicyError, PolicyInvalid
from authz.services.runtime import Runtime, Written
from authz.settings import Settings
from authz.store import rules
from authz.store.database import Database
from authz.store.migrate import new_scratch_sqlite
from authz.store.tables import PolicyState
from authz.store.unit_of_work import UnitOfWork

REHEARSAL = Principal(kind="cli", id="policy-validate")


@dataclass(frozen=True)
class PolicyDiff:
    added: list[Rule]
    removed: list[Rule]

    @property
    def empty(self) -> bool:
        return not self.added and not self.removed


def _policy_rules_in_db(uow: UnitOfWork) -> set[Rule]:
    """The permission rules and role hierarchy (everything written for the "*" domain)."""
    return rules.policy_rules(uow.session)


def apply_policy(
    rt: Runtime, principal: Principal, document: PolicyDocument, *, dry_run: bool = False
) -> Written[PolicyDiff]:
    """Replace the permission rules and hierarchy with `document`'s, as one revision.

    `dry_run` does every write and rolls them back: what it accepts, the real apply applies.
    A rule the database refuses is Invalid (422, field `policy`), with nothing changed.
    """
    wanted = set(document.rules())
    with rt.unit_of_work(principal) as uow:
        uow.lock_global()
        current = _policy_rules_in_db(uow)
        state = uow.session.get(PolicyState, 1)
        diff = PolicyDiff(added=sorted(wanted - current), removed=sorted(current - wanted))
        document_json = document.to_json()
        if diff.empty and state is not None and state.document == document_json:
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
        try:
            if dry_run:
                uow.session.flush()  # every constraint checked; leaving without commit rolls it all back
                return Written(diff, None)
            revision = uow.commit()
        except IntegrityError as exc:
            raise Invalid(f"the database refuses these rules ({_constraint(exc)}); nothing was changed",
                          field="policy") from None
    return Written(diff, revision)


def _constraint(exc: IntegrityError) -> str:
    """The first line of the driver's message: names the constraint, never data from outside."""
    return str(exc.orig).strip().splitlines()[0][:200] if exc.orig is not None else "integrity error"


def rehearse_policy(settings: Settings, directory: Path, document: PolicyDocument) -> None:
    """Apply `document` to a scratch database exactly as `apply` does, then start a replica from it.

    Offline (a temporary SQLite file). Raises PolicyInvalid naming the directory when the
    apply or the start would fail, so `authz policy validate` never accepts a policy that
    `apply`, `POST /v1/policy/reload` or a fresh server would refuse.
    """
    with tempfile.TemporaryDirectory(prefix="authz-policy-") as folder:
        url = new_scratch_sqlite(Path(folder) / "rehearsal.db")
        database = Database(url)
        try:
            scratch = Runtime(settings=settings.model_copy(update={"database_url": url, "policy_dir": directory}),
                              database=database)
            scratch.replica.load(database)  # as open_runtime does before it applies
            apply_policy(scratch, REHEARSAL, document)
            replica = Replica()  # what `authz serve` does at start
            replica.load(database)
            if replica.snapshot.policy is None:
                raise Invalid("the applied policy did not load back", field="policy")
            load_routes(directory, replica.snapshot.policy)
        except AuthzError as exc:
            raise PolicyInvalid([PolicyError(str(directory), 1, f"cannot be applied: {exc.detail}")]) from None
        finally:
            database.dispose()


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
        "context_owner": document.context_owner,
        "roles": {name: {"inherits": list(role.inherits)} for name, role in document.roles.items()},
        "permissions": [list(rule[1:]) for rule in document.permission_rules()],
        "hierarchy": [list(rule[1:]) for rule in document.hierarchy_rules()],
        "types": document.to_json()["types"],
    }
