"""The sweeper: grants that have expired are removed, each as a revision with an audit entry.

Decisions stop counting a grant at its expiry on their own (the index compares it with
the clock), so the sweeper's delay changes no answer: it only keeps the rules, the
member listings and the audit log honest. Any replica may run it at once: each removal
locks its aggregate and re-reads the rule, so a grant is removed once.
"""

import logging
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import delete

from authz.domain import ids
from authz.domain.errors import NotFound
from authz.domain.principal import Principal
from authz.periodic import PeriodicThread
from authz.services.members import remember_former
from authz.services.runtime import Runtime
from authz.store import rules
from authz.store.rules import Rule
from authz.store.tables import Membership
from authz_client.decisions.index import is_resource_scope

log = logging.getLogger("authz.expiry")
SWEEPER = Principal(kind="service", id="expiry-sweeper", scopes=frozenset())
BATCH = 500


@dataclass(frozen=True)
class Swept:
    removed: int
    revisions: list[int]


def sweep_expired(rt: Runtime) -> Swept:
    """Remove every grant whose expiry has passed (at `rt.clock()`); one revision per grant."""
    removed, revisions = 0, []
    for rule in _expired(rt):
        revision = _remove(rt, rule)
        if revision is not None:
            removed += 1
            revisions.append(revision)
    if removed:
        log.info("removed %d expired grants", removed)
    return Swept(removed, revisions)


def _expired(rt: Runtime) -> Iterator[Rule]:
    with rt.database.session() as session:
        found = rules.expired_grants(session, rt.clock(), BATCH)
    yield from found


def _remove(rt: Runtime, rule: Rule) -> int | None:
    """Remove one expired grant under its aggregate's lock, if it is still there."""
    _, subject, role, domain, expiry = rule[:5]
    resource = is_resource_scope(domain)
    with rt.unit_of_work(SWEEPER) as uow:
        try:
            if resource:
                uow.lock_resource(*domain.split(":", 1))
            else:
                uow.lock_context(domain)
        except NotFound:
            return None  # its org or resource went meanwhile, with the rule
        if rule not in uow.rules_where("g", v0=subject, v2=domain):
            return None  # changed or removed by another replica's sweeper or by a write
        uow.remove_rule(rule)
        user = ids.user_of(subject)
        if resource:
            uow.audit("resource.role_expire", context=None, target=domain,
                      detail={"user_id": user, "role": role, "expired_at": expiry})
        else:
            membership = uow.session.get(Membership, (domain, user))
            remember_former(uow, domain, user, membership.email if membership else None, role, "expired")  # reinstate
            uow.session.execute(delete(Membership).where(Membership.org_id == domain, Membership.user_id == user))
            uow.audit("member.expire", context=domain, target=user, detail={"role": role, "expired_at": expiry})
        return uow.commit()


class ExpirySweeper:
    """Runs `sweep_expired` every `interval` seconds in a thread of its own."""

    def __init__(self, rt: Runtime, interval: float) -> None:
        self._rt = rt
        self._thread = PeriodicThread("authz-expiry", interval, self._run)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._thread.stop()

    def _run(self) -> None:
        try:
            sweep_expired(self._rt)
        except Exception:  # a database outage must not kill the thread; the next run retries
            log.warning("sweeping expired grants failed; retrying at the next run", exc_info=True)
