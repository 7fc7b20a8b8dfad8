"""The schema: one set of tables, identical on SQLite and PostgreSQL (managed by Alembic)."""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class UtcDateTime(TypeDecorator[datetime]):
    """An aware UTC timestamp on both databases (SQLite keeps no zone, so it is restored on read)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class CasbinRule(Base):
    """Casbin's standard rule table (ptype, v0..v5): any Casbin SQL adapter reads it."""

    __tablename__ = "casbin_rule"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ptype: Mapped[str] = mapped_column(String(255))
    v0: Mapped[str | None] = mapped_column(String(255))
    v1: Mapped[str | None] = mapped_column(String(255))
    v2: Mapped[str | None] = mapped_column(String(255))
    v3: Mapped[str | None] = mapped_column(String(255))
    v4: Mapped[str | None] = mapped_column(String(255))
    v5: Mapped[str | None] = mapped_column(String(255))

    __table_args__ = (
        # One role per subject per domain: a membership or a role on one resource. Not for the
        # role hierarchy (domain "*"), where a role may inherit several roles (migration 0003).
        Index(
            "uq_casbin_rule_g_subject_domain",
            "v0",
            "v2",
            unique=True,
            sqlite_where=text("ptype = 'g' AND v2 <> '*'"),
            postgresql_where=text("ptype = 'g' AND v2 <> '*'"),
        ),
        Index("ix_casbin_rule_ptype_v2", "ptype", "v2"),
    )


class Organization(Base):
    __tablename__ = "organizations"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    billing_line1: Mapped[str] = mapped_column(String(200))
    billing_line2: Mapped[str | None] = mapped_column(String(200))
    billing_postal_code: Mapped[str] = mapped_column(String(20))
    billing_city: Mapped[str] = mapped_column(String(100))
    billing_country: Mapped[str] = mapped_column(String(2))
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # Archived (DELETE): gone for everyone until restored or purged (authz.services.lifecycle).
    archived_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    archived_by: Mapped[str | None] = mapped_column(String(160))

    __table_args__ = (Index("ix_organizations_archived_at", "archived_at"),)


class ArchivedGrant(Base):
    """A `g` rule of an archived org (a membership, or a role on one of its resources), kept aside.

    Archiving moves the org's rules out of casbin_rule, so every decision in it is deny by
    Casbin's own meaning (the compiled index, pycasbin and any Casbin adapter agree), and
    restoring moves them back unchanged.
    """

    __tablename__ = "archived_grants"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    subject: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(255))
    domain: Mapped[str] = mapped_column(String(255))
    expires: Mapped[str | None] = mapped_column(String(255))  # the rule's end (authz.domain.grants), if it has one

    __table_args__ = (Index("ix_archived_grants_org_id", "org_id"),)


class FormerMember(Base):
    """A member who was removed or left: what `reinstate` restores (for REINSTATE_WINDOW)."""

    __tablename__ = "former_members"
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    email: Mapped[str | None] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(64))
    left_at: Mapped[datetime] = mapped_column(UtcDateTime())
    how: Mapped[str] = mapped_column(String(16))  # removed, left


class Membership(Base):
    """What the `g` rule does not hold about a member: email and join time. The role is the rule."""

    __tablename__ = "memberships"
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    email: Mapped[str | None] = mapped_column(String(320))
    joined_at: Mapped[datetime] = mapped_column(UtcDateTime())

    __table_args__ = (Index("ix_memberships_user_id", "user_id"),)


class Resource(Base):
    """A piece of content. `context` is set at creation and never updated (invariant 6)."""

    __tablename__ = "resources"
    type: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    context: Mapped[str] = mapped_column(String(140))
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())

    __table_args__ = (Index("ix_resources_context", "context"),)


class Invitation(Base):
    __tablename__ = "invitations"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16))  # pending, accepted, declined, revoked
    invited_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    grant_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime())  # the membership it creates ends then
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    decided_by: Mapped[str | None] = mapped_column(String(128))

    __table_args__ = (
        Index("ix_invitations_org_id_email", "org_id", "email"),
        Index("ix_invitations_email", "email"),  # GET /v1/me/invitations
        Index("ix_invitations_org_id_created_at", "org_id", "created_at"),  # rate limit per org
        Index("ix_invitations_invited_by_created_at", "invited_by", "created_at"),  # rate limit per inviter
    )


class OutboxMessage(Base):
    """A mail to send, written in the same transaction as the change that causes it.

    `body_text` holds the acceptance link with a slot, not the token (authz.mail.message);
    `token` holds the invitation token in clear only while the message is pending and is
    set to NULL once it is sent, fails for good or is superseded (authz.mail.outbox).
    """

    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    invitation_id: Mapped[str | None] = mapped_column(ForeignKey("invitations.id", ondelete="CASCADE"))
    recipient: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(300))
    body_text: Mapped[str] = mapped_column(Text)
    token: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16))  # pending, sent, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    __table_args__ = (
        Index("ix_outbox_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_outbox_invitation_id", "invitation_id"),
    )


class BackendToken(Base):
    """A quantum backend's API token, encrypted; only `hint` (last 4 characters) is in clear."""

    __tablename__ = "backend_tokens"
    context: Mapped[str] = mapped_column(String(140), primary_key=True)
    provider: Mapped[str] = mapped_column(String(64), primary_key=True)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    hint: Mapped[str] = mapped_column(String(4))
    updated_by: Mapped[str] = mapped_column(String(128))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class ServiceKey(Base):
    """A service key `azk_<id>_<secret>`: only the SHA-256 of the secret is stored."""

    __tablename__ = "service_keys"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    secret_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[str] = mapped_column(String(200))  # space-separated
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class PolicyState(Base):
    """The policy document in force (roles, types, actions, forward-auth routes); its rules are in casbin_rule."""

    __tablename__ = "policy_state"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    applied_at: Mapped[datetime] = mapped_column(UtcDateTime())


class RevisionCounter(Base):
    """One row: the last revision. Updating it serializes writers, so revisions commit in order."""

    __tablename__ = "revision_counter"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


class ChangelogEntry(Base):
    """One committed change of policy data: its revision and the delta replicas apply."""

    __tablename__ = "changelog"
    revision: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    delta: Mapped[list[dict[str, Any]]] = mapped_column(JSON)


class AuditEntry(Base):
    """Who did what, when, in which context, from which request."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    actor: Mapped[str] = mapped_column(String(160))
    action: Mapped[str] = mapped_column(String(64))
    context: Mapped[str | None] = mapped_column(String(140))
    target: Mapped[str | None] = mapped_column(String(300))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
    request_id: Mapped[str | None] = mapped_column(String(64))
    revision: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_audit_log_context_id", "context", "id"),)


__all__ = [
    "ArchivedGrant",
    "AuditEntry",
    "BackendToken",
    "Base",
    "CasbinRule",
    "ChangelogEntry",
    "FormerMember",
    "Invitation",
    "Membership",
    "Organization",
    "OutboxMessage",
    "PolicyState",
    "Resource",
    "RevisionCounter",
    "ServiceKey",
]
