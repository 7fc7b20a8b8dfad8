"""The Casbin rules in the database: the row encoding (`ptype, v0..v5`) and every query of them.

Services ask questions by name (`role_in`, `grants_in`, `permanent_owners`, ...); only
this module knows that a membership is `g, user:<id>, <role>, <org>` in columns v0..v2,
that a grant's end is v3 (`authz.domain.grants`), and how a row becomes a rule tuple.
The unit of work writes rules with `rule_values` and reads its own with `rules_where`.
"""

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import cast

from sqlalchemy import ColumnElement, and_, func, literal, or_, select
from sqlalchemy.orm import Session

from authz.domain import ids
from authz.domain.grants import expiry_value
from authz.domain.ids import ALL_DOMAINS
from authz.store.tables import CasbinRule, Membership

Rule = tuple[str, ...]
RULE_COLUMNS = ("v0", "v1", "v2", "v3", "v4", "v5")


# ---- encoding ---------------------------------------------------------------------------

def rule_values(rule: Rule) -> dict[str, str | None]:
    """The columns of a rule's row."""
    values = list(rule[1:]) + [None] * (len(RULE_COLUMNS) - len(rule) + 1)
    return {"ptype": rule[0], **dict(zip(RULE_COLUMNS, values, strict=True))}


def rule_from(ptype: str, values: Iterable[str | None]) -> Rule:
    """A rule tuple from a row's ptype and v0..v5 (trailing empty columns dropped)."""
    found = list(values)
    while found and found[-1] is None:
        found.pop()
    return (ptype, *(v or "" for v in found))


def rule_of(row: CasbinRule) -> Rule:
    return rule_from(row.ptype, (row.v0, row.v1, row.v2, row.v3, row.v4, row.v5))


ALL_COLUMNS = (CasbinRule.ptype, CasbinRule.v0, CasbinRule.v1, CasbinRule.v2, CasbinRule.v3, CasbinRule.v4,
               CasbinRule.v5)


def grant_in_force(now: datetime) -> ColumnElement[bool]:
    """A `g` rule that has no expiry (v3) or has not reached it at `now` (the format orders as text)."""
    return or_(CasbinRule.v3.is_(None), CasbinRule.v3 == "", CasbinRule.v3 > expiry_value(now))


def grant_expired(now: datetime) -> ColumnElement[bool]:
    return and_(CasbinRule.v3.is_not(None), CasbinRule.v3 != "", CasbinRule.v3 <= expiry_value(now))


def session_now(session: Session) -> datetime:
    """The "now" of a unit of work's session (its clock), else the wall clock."""
    now = session.info.get("now")
    return now if isinstance(now, datetime) else datetime.now(UTC)


# ---- questions --------------------------------------------------------------------------

def rules_where(session: Session, ptype: str, **values: str) -> list[Rule]:
    """Every rule of `ptype` whose columns have these values (`v0=...`, `v2=...`)."""
    conditions = [CasbinRule.ptype == ptype] + [getattr(CasbinRule, k) == v for k, v in values.items()]
    return [rule_of(row) for row in session.scalars(select(CasbinRule).where(*conditions))]


def role_in(session: Session, subject: str, domain: str) -> str | None:
    """The subject's role in a domain (a context or a resource scope) in force now, if any."""
    return session.scalar(
        select(CasbinRule.v1).where(
            CasbinRule.ptype == "g", CasbinRule.v0 == subject, CasbinRule.v2 == domain,
            grant_in_force(session_now(session)),
        )
    )


def grants_in(session: Session, domains: Sequence[str], now: datetime | None = None) -> list[tuple[str, str, str, str]]:
    """(subject, role, domain, expiry or "") of each grant in these domains, in force at `now` (None: all)."""
    if not domains:
        return []
    query = select(CasbinRule.v0, CasbinRule.v1, CasbinRule.v2, CasbinRule.v3).where(
        CasbinRule.ptype == "g", CasbinRule.v2.in_(list(domains)))
    if now is not None:
        query = query.where(grant_in_force(now))
    # A grant always has its subject, role and domain (v0..v2); only the expiry (v3) may be empty.
    rows = cast("Sequence[tuple[str, str, str, str | None]]", session.execute(query).all())
    return [(subject, role, domain, expiry or "") for subject, role, domain, expiry in rows]


def permanent_owners(session: Session, org_id: str, owner_role: str) -> int:
    """How many hold `owner_role` in the org without an end: the ones that keep it owned (invariant 5)."""
    return session.scalar(
        select(func.count()).select_from(CasbinRule).where(
            CasbinRule.ptype == "g", CasbinRule.v2 == org_id, CasbinRule.v1 == owner_role,
            or_(CasbinRule.v3.is_(None), CasbinRule.v3 == ""),
        )
    ) or 0


def members_with_grants(
    session: Session, org_id: str, now: datetime, *, after: str | None, limit: int | None,
) -> Sequence[tuple[str, str | None, datetime, str, str | None]]:
    """(user id, email, joined at, role, expiry) of the org's members in force, by user id, after `after`."""
    query = (
        select(Membership.user_id, Membership.email, Membership.joined_at, CasbinRule.v1, CasbinRule.v3)
        .join(
            CasbinRule,
            (CasbinRule.ptype == "g")
            & (CasbinRule.v2 == Membership.org_id)
            & (CasbinRule.v0 == literal(ids.USER_SUBJECT_PREFIX).concat(Membership.user_id)),
        )
        .where(Membership.org_id == org_id, grant_in_force(now))
        .order_by(Membership.user_id)
    )
    if after is not None:
        query = query.where(Membership.user_id > after)
    # A membership's rule always has its role (v1); only the expiry (v3) may be empty.
    rows = session.execute(query.limit(limit)).all()
    return cast("Sequence[tuple[str, str | None, datetime, str, str | None]]", rows)


def expired_grants(session: Session, now: datetime, limit: int) -> list[Rule]:
    """Grants whose end has passed at `now` (the sweeper's work), at most `limit`."""
    rows = session.scalars(select(CasbinRule).where(CasbinRule.ptype == "g", grant_expired(now)).limit(limit))
    return [rule_of(row) for row in rows]


def policy_rules(session: Session) -> set[Rule]:
    """The permission rules and role hierarchy (everything written for the "*" domain)."""
    rows = session.scalars(
        select(CasbinRule).where(
            ((CasbinRule.ptype == "p") & (CasbinRule.v1 == ALL_DOMAINS))
            | ((CasbinRule.ptype == "g") & (CasbinRule.v2 == ALL_DOMAINS))
        )
    )
    return {rule_of(row) for row in rows}
