"""Applying `policies/` to the database as one revision, and reading the policy in force.

The policy is the role/permission files and the forward-auth route file together: the
document stored in `policy_state` (and carried by the changelog and the snapshot) holds
the routes, so a reload changes the routes of every replica at the revision it writes.

What `authz policy validate` accepts, `apply` applies: validation rehearses the apply
(`rehearse_policy`) through the very same function on a scratch database and then starts
a replica from it, as a server would; `apply --dry-run` runs the apply on the real
database inside a transaction that is rolled back.
"""

import logging
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError

from authz.domain.errors import AuthzError, Invalid
from authz.domain.principal import Principal
from authz.engine.replica import Replica
from authz.policy.document import PolicyDocument, Rule
from authz.policy.loader import load_policy_dir
from authz.policy.route_table import RouteTable
from authz.policy.routes import ROUTES_FILE, load_routes
from authz.policy.yaml_nodes import PolicyError, PolicyInvalid
from authz.services.runtime import Runtime, Written
from authz.settings import Settings
from authz.store import rules
from authz.store.database import Database
from authz.store.migrate import new_scratch_sqlite
from authz.store.tables import PolicyState
from authz.store.unit_of_work import UnitOfWork

log = logging.getLogger("authz.policy")
REHEARSAL = Principal(kind="cli", id="policy-validate")


@dataclass(frozen=True)
class PolicyDiff:
    added: list[Rule]
    removed: list[Rule]
    # Forward-auth routes (`METHOD /template`) new or changed, and gone or changed.
    routes_added: list[str] = field(default_factory=list)
    routes_removed: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.added and not self.removed and not self.routes_added and not self.routes_removed


def _route_diff(before: dict[str, Any] | None, after: dict[str, Any] | None) -> tuple[list[str], list[str]]:
    """Route keys added (or changed) and removed (or changed), from two stored route tables."""
    old, new = before or {}, after or {}
    added = sorted(key for key, spec in new.items() if old.get(key) != spec)
    removed = sorted(key for key, spec in old.items() if new.get(key) != spec)
    return added, removed


def _policy_rules_in_db(uow: UnitOfWork) -> set[Rule]:
    """The permission rules and role hierarchy (everything written for the "*" domain)."""
    return rules.policy_rules(uow.session)


def apply_policy(
    rt: Runtime, principal: Principal, document: PolicyDocument, *, dry_run: bool = False
) -> Written[PolicyDiff]:
    """Replace the permission rules, hierarchy and routes with `document`'s, as one revision.

    `dry_run` does every write and rolls them back: what it accepts, the real apply applies.
    A rule the database refuses is Invalid (422, field `policy`), with nothing changed.
    """
    with rt.unit_of_work(principal) as uow:
        uow.lock_global()
        return _apply_locked(uow, document, dry_run=dry_run)


def _apply_locked(uow: UnitOfWork, document: PolicyDocument, *, dry_run: bool = False) -> Written[PolicyDiff]:
    """`apply_policy` inside a unit of work that holds the global lock (its caller may have read under it)."""
    wanted = set(document.rules())
    current = _policy_rules_in_db(uow)
    state = uow.session.get(PolicyState, 1)
    document_json = document.to_json()
    stored_routes = state.document.get("routes") if state is not None else None
    routes_added, routes_removed = _route_diff(stored_routes, document_json["routes"])
    diff = PolicyDiff(added=sorted(wanted - current), removed=sorted(current - wanted),
                      routes_added=routes_added, routes_removed=routes_removed)
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
        detail={"added": [list(r) for r in diff.added], "removed": [list(r) for r in diff.removed],
                "routes_added": diff.routes_added, "routes_removed": diff.routes_removed},
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
            if replica.snapshot.policy is None or replica.snapshot.policy.to_json() != document.to_json():
                raise Invalid("the applied policy did not load back as applied", field="policy")
        except AuthzError as exc:
            raise PolicyInvalid([PolicyError(str(directory), 1, f"cannot be applied: {exc.detail}")]) from None
        finally:
            database.dispose()


def reload_policy(rt: Runtime, principal: Principal, directory: Path | None = None) -> Written[PolicyDiff]:
    """Re-read the policy directory (routes.yaml included), validate it and apply it (PolicyInvalid changes nothing)."""
    return apply_policy(rt, principal, _directory_policy(directory or rt.settings.policy_dir))


def _directory_policy(folder: Path) -> PolicyDocument:
    document = load_policy_dir(folder)
    _warn_without_routes(document.routes, folder)
    return document


def _warn_without_routes(routes: RouteTable, folder: Path) -> None:
    if routes.source is None:
        log.warning("no %s in %s: forward-auth denies every request", ROUTES_FILE, folder)


def ensure_policy(rt: Runtime, principal: Principal) -> int | None:
    """At start-up: load `policies/` into a database that has no policy yet, or add the routes to one
    stored before routes were part of the policy (an upgrade), as one revision.

    The upgrade reads routes.yaml of the policy directory, checked against the policy in
    force (not the directory's roles, which only `policy apply` or a reload apply), as the
    older servers did at every start. What is stored decides what is written, so it is read
    under the global lock: a `policy apply` or reload that commits meanwhile is neither
    undone by the shipped policy nor by the routes added to the document it replaced.
    """
    with rt.unit_of_work(principal) as uow:
        uow.lock_global()
        state = uow.session.get(PolicyState, 1)
        if state is None:
            return _apply_locked(uow, _directory_policy(rt.settings.policy_dir)).revision
        if "routes" in state.document:
            return None
        current = PolicyDocument.from_json(state.document)
        routes = load_routes(rt.settings.policy_dir, current)
        _warn_without_routes(routes, rt.settings.policy_dir)
        written = _apply_locked(uow, replace(current, routes=routes))
    log.info("added the forward-auth routes of %s to the policy in force", rt.settings.policy_dir,
             extra={"revision": written.revision})
    return written.revision


def policy_in_force(rt: Runtime) -> dict[str, object]:
    document = rt.policy
    return {
        "revision": rt.replica.revision,
        "context_owner": document.context_owner,
        "roles": {name: {"inherits": list(role.inherits)} for name, role in document.roles.items()},
        "permissions": [list(rule[1:]) for rule in document.permission_rules()],
        "hierarchy": [list(rule[1:]) for rule in document.hierarchy_rules()],
        "types": document.to_json()["types"],
        "routes": document.routes.to_json(),
    }
