"""The history checker's verdict: invariants on the database, and every answer against the oracle.

- The database (DESIGN.md invariants 2, 5, 5a): no rule row without its member, resource or
  org; no resource in a context that does not exist; every org has an owner; memberships
  and their rule rows agree; the changelog has every revision once, each with its audit row.
- Acknowledged writes: every 2xx write has its audit row (by request id), at the revision
  the answer reported.
- Decisions: the changelog is replayed revision by revision, and every recorded check and
  listing is compared with pycasbin's decision over the state at the revision the answer
  reported; no answer to `min_revision` is older than asked.
"""

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import casbin
from sqlalchemy import create_engine, text

from authz.domain import ids
from authz.domain.grants import expiry_epoch
from authz.policy.model import build_enforcer, casbin_request
from tests.conftest import POLICY_MODEL
from tests.history.workload import RESOURCES, Event

READS = {"check", "list_resources"}
LIFECYCLE = {"archive_org", "restore", "purge", "transfer", "resolve", "reinstate", "bulk_invite"}
RESTORE_SLACK = 30.0  # seconds: longer than any request of the workload may run (its HTTP timeout is 15 s)
NO_OP_WRITES = {"change_role", "share"}  # the same role again: 200, nothing written


@dataclass
class Verdict:
    operations: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    decisions_compared: int = 0
    listings_compared: int = 0
    lifecycle: Counter[str] = field(default_factory=Counter)  # "kind status" of the lifecycle operations
    undecidable: int = 0  # answers made while a grant they depend on was expiring (within the request's time)
    violations: list[str] = field(default_factory=list)

    def summary(self) -> str:
        conflicts = self.outcomes["409"] + self.outcomes["404"] + self.outcomes["410"]
        return (f"history: {sum(self.operations.values())} operations ({dict(sorted(self.operations.items()))}); "
                f"answers {dict(sorted(self.outcomes.items()))}; conflicts (404/409/410) {conflicts}; "
                f"decisions compared {self.decisions_compared}; listings compared {self.listings_compared} "
                f"(skipped at an expiry instant {self.undecidable}); "
                f"lifecycle {dict(sorted(self.lifecycle.items()))}; "
                f"violations {len(self.violations)}")


def verify(database_url: str, events: list[Event], restore_attempts: list[tuple[str, float]] | None = None,
           invitations_per_day: int | None = None) -> Verdict:
    verdict = Verdict()
    for event in events:
        verdict.operations[event.kind] += 1
        verdict.outcomes[str(event.status)] += 1
        if event.kind in LIFECYCLE:
            verdict.lifecycle[f"{event.kind} {event.status}"] += 1
        if event.status >= 500 and event.status != 503:
            verdict.violations.append(f"{event.kind} {event.request_id}: {event.status} {event.answer}")
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            _database_invariants(connection, verdict)
            if invitations_per_day is not None:
                _invitation_limits(connection, invitations_per_day, verdict)
            _acknowledged_writes(connection, events, verdict)
            changelog = [(row.revision, row.delta) for row in connection.execute(
                text("SELECT revision, delta FROM changelog ORDER BY revision"))]
    finally:
        engine.dispose()
    _decisions(changelog, events, verdict)
    _resolves(events, restore_attempts or [], verdict)
    return verdict


def _resolves(events: list[Event], restore_attempts: list[tuple[str, float]], verdict: Verdict) -> None:
    """No backend token resolves in an org archived before the resolve began and not restored since.

    A restore counts from the moment it was sent, answered or not (one whose answer was
    lost may still have committed), so a violation here is certain, never a guess.
    """
    archived: dict[str, list[tuple[float, float]]] = {}  # org → (started, ended) of each acknowledged archive
    for event in events:
        if event.kind == "archive_org" and event.status == 204:
            archived.setdefault(event.body["org"], []).append((event.started, event.ended))
    for event in events:
        if event.kind != "resolve":
            continue
        if event.status != 200:
            continue
        org = event.body["context"]
        for started, ended in archived.get(org, []):
            # A restore sent shortly before the archive may still have run after it (queued on the lock).
            if ended < event.started and not any(
                    o == org and started - RESTORE_SLACK < sent < event.ended for o, sent in restore_attempts):
                verdict.violations.append(f"resolve {event.request_id} of {org} answered a token after "
                                          f"the org was archived (and no restore was sent)")


def _rows(connection: Any, sql: str) -> list[Any]:
    return list(connection.execute(text(sql)))


def _database_invariants(connection: Any, verdict: Verdict) -> None:
    found = {
        "membership rule of an org that does not exist": _rows(connection, """
            SELECT v0, v1, v2 FROM casbin_rule WHERE ptype = 'g' AND v2 LIKE 'org\\_%'
              AND v2 NOT IN (SELECT id FROM organizations)"""),
        "role on a resource that does not exist": _rows(connection, """
            SELECT v0, v1, v2 FROM casbin_rule r WHERE ptype = 'g' AND v2 <> '*' AND v2 LIKE '%:%'
              AND v2 NOT LIKE 'user:%'
              AND NOT EXISTS (SELECT 1 FROM resources s WHERE s.type || ':' || s.id = r.v2)"""),
        "resource in an org that does not exist": _rows(connection, """
            SELECT type, id, context FROM resources WHERE context LIKE 'org\\_%'
              AND context NOT IN (SELECT id FROM organizations)"""),
        "org without an owner": _rows(connection, """
            SELECT id FROM organizations o WHERE archived_at IS NULL AND NOT EXISTS (
              SELECT 1 FROM casbin_rule WHERE ptype = 'g' AND v2 = o.id AND v1 = 'owner')"""),
        "archived org without an owner to restore it": _rows(connection, """
            SELECT id FROM organizations o WHERE archived_at IS NOT NULL AND NOT EXISTS (
              SELECT 1 FROM archived_grants WHERE org_id = o.id AND domain = o.id AND role = 'owner')"""),
        "membership row without its rule": _rows(connection, """
            SELECT org_id, user_id FROM memberships m WHERE NOT EXISTS (
              SELECT 1 FROM casbin_rule WHERE ptype = 'g' AND v2 = m.org_id AND v0 = 'user:' || m.user_id)
              AND NOT EXISTS (SELECT 1 FROM archived_grants a WHERE a.org_id = m.org_id AND a.domain = m.org_id
                              AND a.subject = 'user:' || m.user_id)"""),
        "rule deciding inside an archived org": _rows(connection, """
            SELECT v0, v1, v2 FROM casbin_rule r WHERE ptype = 'g' AND (
              v2 IN (SELECT id FROM organizations WHERE archived_at IS NOT NULL)
              OR v2 IN (SELECT s.type || ':' || s.id FROM resources s JOIN organizations o ON o.id = s.context
                        WHERE o.archived_at IS NOT NULL))"""),
        "pending invitation of an archived org": _rows(connection, """
            SELECT i.id FROM invitations i JOIN organizations o ON o.id = i.org_id
              WHERE o.archived_at IS NOT NULL AND i.status = 'pending'"""),
        "archived grant of an org that is not archived": _rows(connection, """
            SELECT a.org_id, a.subject, a.domain FROM archived_grants a JOIN organizations o ON o.id = a.org_id
              WHERE o.archived_at IS NULL"""),
        "two owners' worth of nothing: a grant both archived and live": _rows(connection, """
            SELECT a.subject, a.domain FROM archived_grants a JOIN casbin_rule r
              ON r.ptype = 'g' AND r.v0 = a.subject AND r.v2 = a.domain"""),
        "membership rule without its row": _rows(connection, """
            SELECT v0, v2 FROM casbin_rule r WHERE ptype = 'g' AND v2 LIKE 'org\\_%' AND NOT EXISTS (
              SELECT 1 FROM memberships m WHERE m.org_id = r.v2 AND 'user:' || m.user_id = r.v0)"""),
        "two roles of one member in one org": _rows(connection, """
            SELECT v0, v2 FROM casbin_rule WHERE ptype = 'g' AND v2 <> '*' GROUP BY v0, v2 HAVING count(*) > 1"""),
        "backend token of an org that does not exist": _rows(connection, """
            SELECT context, provider FROM backend_tokens WHERE context LIKE 'org\\_%'
              AND context NOT IN (SELECT id FROM organizations)"""),
        "invitation of an org that does not exist": _rows(connection, """
            SELECT id FROM invitations WHERE org_id NOT IN (SELECT id FROM organizations)"""),
        "purged org whose audit rows are gone": _rows(connection, """
            SELECT p.context FROM audit_log p WHERE p.action = 'organization.purge' AND NOT EXISTS (
              SELECT 1 FROM audit_log c WHERE c.context = p.context AND c.action = 'organization.create')"""),
        "purged org that is still there": _rows(connection, """
            SELECT p.context FROM audit_log p JOIN organizations o ON o.id = p.context
              WHERE p.action = 'organization.purge'"""),
        "changelog revision without its audit entry": _rows(connection, """
            SELECT revision FROM changelog c
              WHERE NOT EXISTS (SELECT 1 FROM audit_log a WHERE a.revision = c.revision)"""),
        "audit entry at a revision the changelog lacks": _rows(connection, """
            SELECT id, revision FROM audit_log a WHERE revision IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM changelog c WHERE c.revision = a.revision)"""),
    }
    verdict.lifecycle["purged by the replicas' purgers"] = connection.execute(text(
        "SELECT count(*) FROM audit_log WHERE action = 'organization.purge' AND actor = 'cli:org-purger'")).scalar_one()
    head = connection.execute(text("SELECT value FROM revision_counter WHERE id = 1")).scalar_one()
    revisions = [row[0] for row in _rows(connection, "SELECT revision FROM changelog ORDER BY revision")]
    if revisions != list(range(1, head + 1)):
        found["changelog revisions not 1..head"] = [(len(revisions), head)]
    for what, rows in found.items():
        for row in rows[:5]:
            verdict.violations.append(f"{what}: {tuple(row)}")


def _invitation_limits(connection: Any, limit: int, verdict: Verdict) -> None:
    """No org and no inviter created more than `limit` invitations in 24 h (a run is shorter than that)."""
    for column in ("org_id", "invited_by"):
        for who, count in connection.execute(text(
                f"SELECT {column}, count(*) FROM invitations GROUP BY {column} HAVING count(*) > :limit"),
                {"limit": limit}):
            verdict.violations.append(f"{count} invitations by {column} {who}: over the limit of {limit}")


def _acknowledged_writes(connection: Any, events: list[Event], verdict: Verdict) -> None:
    audited = {row.request_id: row.revision for row in connection.execute(
        text("SELECT request_id, revision FROM audit_log WHERE request_id LIKE 'hist-%'"))}
    created = Counter(row.request_id for row in connection.execute(text(
        "SELECT request_id FROM audit_log WHERE request_id LIKE 'hist-%' AND action = 'invitation.create'")))
    for event in events:
        if event.kind == "bulk_invite" and event.ok:
            made = sum(1 for result in event.answer["results"] if result["status"] == 201)
            if created[event.request_id] != made:
                verdict.violations.append(f"bulk_invite {event.request_id} answered {made} invitations, "
                                          f"audited {created[event.request_id]}")
            continue
        if event.kind in READS or not event.ok:
            continue
        if event.request_id not in audited:
            if event.kind not in NO_OP_WRITES:
                verdict.violations.append(f"acknowledged {event.kind} {event.request_id} is not in the audit log")
            continue
        if event.revision is not None and audited[event.request_id] not in (None, event.revision):
            verdict.violations.append(f"{event.kind} {event.request_id} reported revision {event.revision}, "
                                      f"committed {audited[event.request_id]}")


class _State:
    """The policy data replayed from the changelog up to `revision`."""

    def __init__(self, changelog: list[tuple[int, list[dict[str, Any]]]]) -> None:
        self._changelog = changelog
        self._next = 0
        self.revision = 0
        self.rules: set[tuple[str, ...]] = set()
        self.resources: dict[str, str] = {}  # "type:id" → context
        self.archived: set[str] = set()  # org ids archived at `revision`

    def advance_to(self, revision: int) -> None:
        while self._next < len(self._changelog) and self._changelog[self._next][0] <= revision:
            number, delta = self._changelog[self._next]
            for op in delta:
                kind = op["op"]
                if kind == "add_rule":
                    self.rules.add(tuple(op["rule"]))
                elif kind == "remove_rule":
                    self.rules.discard(tuple(op["rule"]))
                elif kind == "add_resource":
                    self.resources[ids.resource_scope(op["type"], op["id"])] = op["context"]
                elif kind == "remove_resource":
                    self.resources.pop(ids.resource_scope(op["type"], op["id"]), None)
                elif kind == "archive_org":
                    self.archived.add(op["id"])
                elif kind in ("restore_org", "purge_org"):
                    self.archived.discard(op["id"])
            self.revision = number
            self._next += 1

    def decide(self, user: str, action: str, resource_type: str, resource_id: str | None, context: str | None,
               between: tuple[float, float]) -> bool | None:
        """pycasbin's decision over the policy and the subject's rules in force; None when a grant it
        depends on expired between the request's start and end (either answer is right then)."""
        subject = ids.subject_of(user)
        scope = ids.resource_scope(resource_type, resource_id) if resource_id is not None else ""
        if resource_id is not None:
            context = self.resources.get(scope)
        if context is None:
            return False
        relevant: set[tuple[str, ...]] = set()
        for rule in self.rules:
            if rule[0] == "p" or rule[3] == "*":
                relevant.add(rule)
            elif rule[1] == subject and rule[3] in (context, scope):
                if len(rule) > 4 and rule[4]:
                    ends = expiry_epoch(rule[4])
                    if between[0] <= ends <= between[1] + 1:  # + the second the expiry is rounded to
                        return None
                    if ends <= between[0]:
                        continue  # expired: it must not decide (and pycasbin's model has no clock)
                relevant.add(rule[:4])
        return bool(_enforcer(frozenset(relevant)).enforce(*casbin_request(subject, context, resource_type, scope,
                                                                           action)))


@lru_cache(maxsize=4096)
def _enforcer(rules: frozenset[tuple[str, ...]]) -> casbin.Enforcer:
    return build_enforcer(POLICY_MODEL, sorted(rules))


def _decisions(changelog: list[tuple[int, list[dict[str, Any]]]], events: Iterable[Event], verdict: Verdict) -> None:
    state = _State(changelog)
    answered = sorted((e for e in events if e.kind in READS and e.status == 200), key=lambda e: e.revision or 0)
    for event in answered:
        if event.revision is None:
            verdict.violations.append(f"{event.kind} {event.request_id} reported no revision")
            continue
        wanted = event.body.get("min_revision")
        if wanted is not None and event.revision < wanted:
            verdict.violations.append(f"{event.request_id}: asked min_revision {wanted}, answered at {event.revision}")
        state.advance_to(event.revision)
        if state.revision != event.revision:
            verdict.violations.append(f"{event.request_id} reported revision {event.revision} past the changelog")
            continue
        body = event.body
        if event.kind == "check":
            resource = body["resource"]
            context = body.get("context")
            if context == "personal":
                context = ids.personal_context(event.user)
            expected = state.decide(event.user, body["action"], resource["type"], resource.get("id"), context,
                                    (event.started, event.ended))
            where = (state.resources.get(ids.resource_scope(resource["type"], resource["id"]))
                     if resource.get("id") is not None else context)
            if event.answer["allowed"] and where in state.archived:
                verdict.violations.append(f"check {event.request_id} allowed inside the archived org {where} "
                                          f"at revision {event.revision}")
            if expected is None:
                verdict.undecidable += 1
                continue
            verdict.decisions_compared += 1
            if event.answer["allowed"] != expected:
                verdict.violations.append(f"check {event.request_id} by {event.user} {body} at revision "
                                          f"{event.revision}: answered {event.answer['allowed']}, oracle {expected}")
        else:
            decided = {r: state.decide(event.user, body["action"], body["type"], r, None, (event.started, event.ended))
                       for r in RESOURCES}
            inside = [r for r in event.answer["resources"]
                      if state.resources.get(ids.resource_scope(body["type"], r)) in state.archived]
            if inside:
                verdict.violations.append(f"list-resources {event.request_id} listed {inside} of an archived org "
                                          f"at revision {event.revision}")
            if None in decided.values():
                verdict.undecidable += 1
                continue
            expected_ids = sorted(r for r, allowed in decided.items() if allowed)
            verdict.listings_compared += 1
            if sorted(event.answer["resources"]) != expected_ids:
                verdict.violations.append(f"list-resources {event.request_id} by {event.user} {body} at revision "
                                          f"{event.revision}: {event.answer['resources']} != oracle {expected_ids}")
