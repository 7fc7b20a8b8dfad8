"""Quantum backend tokens: set by owners, listed without the secret, resolved for a member's job.

The plaintext exists only in the request that sets it and in the answer to an allowed
resolve; the table holds Fernet ciphertext and a short hint (DESIGN.md invariant 8). Who
may do what is the policy's `backend_token` type, decided on committed rows inside the
transaction. Token writes are not policy data: no changelog row, but every write and
every resolve by a key that may resolve, allowed or not, is an audit entry (never holding
the secret); a caller without the scope is refused before anything is written.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import Executable

from authz.domain import ids
from authz.domain.errors import AuthzError, Conflict, Forbidden, Invalid, NotFound, OutsiderForbidden, Unavailable
from authz.domain.principal import SCOPE_TOKENS_RESOLVE, Principal
from authz.secrets import KeyRing, UndecryptableSecret
from authz.services.access import require_in_context, role_in_context
from authz.services.runtime import Runtime
from authz.store.tables import BackendToken
from authz_client.decisions.roles import CompiledRoles

log = logging.getLogger("authz.backend_tokens")

OBJECT_TYPE = "backend_token"
MAX_TOKEN_LENGTH = 4096
HINT_LENGTH = 4
TOKEN_RULE = f"token must be 1-{MAX_TOKEN_LENGTH} printable characters (no line breaks or control characters)"
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class BackendTokenView:
    """What anyone allowed to read may see of a token: never the secret."""

    provider: str
    hint: str
    updated_at: datetime
    updated_by: str


@dataclass(frozen=True)
class Rotation:
    tokens: int
    key_id: str  # the newest key's id (a SHA-256 prefix, not the key)


def valid_token(value: object) -> str:
    """The secret as given; the error names the field but never repeats the value."""
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_TOKEN_LENGTH or not value.isprintable():
        raise Invalid(TOKEN_RULE, field="token")
    return value


def hint_of(token: str) -> str:
    """The last 4 characters, but never more than a quarter of the token (short tokens get less)."""
    shown = min(HINT_LENGTH, len(token) // 4)
    return token[len(token) - shown:]


def _key_ring(rt: Runtime) -> KeyRing:
    if rt.key_ring is None:
        raise Unavailable("backend-token encryption keys are not loaded")
    return rt.key_ring


def _upsert(session: Session, values: dict[str, object]) -> Executable:
    """INSERT ... ON CONFLICT DO UPDATE: two first writes of one provider at once cannot collide."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(BackendToken).values(**values)
    changing = ("ciphertext", "hint", "updated_by", "updated_at")
    upsert: Executable = statement.on_conflict_do_update(
        index_elements=["context", "provider"], set_={name: statement.excluded[name] for name in changing}
    )
    return upsert


def set_backend_token(
    rt: Runtime, principal: Principal, context: str, provider: object, token: object
) -> BackendTokenView:
    """Create or replace the token of `provider` in `context` (needs `set` on backend_token)."""
    clean_context = ids.context(context)
    clean_provider = ids.provider(provider)
    secret = valid_token(token)
    ciphertext = _key_ring(rt).encrypt(secret)
    with rt.unit_of_work(principal) as uow:
        uow.lock_context(clean_context)  # no token outlives its context
        require_in_context(uow.session, rt.roles, principal, "set", OBJECT_TYPE, clean_context)
        replaced = uow.session.get(BackendToken, (clean_context, clean_provider)) is not None
        view = BackendTokenView(clean_provider, hint_of(secret), uow.now, principal.id)
        uow.session.execute(_upsert(uow.session, {
            "context": clean_context, "provider": clean_provider, "ciphertext": ciphertext,
            "hint": view.hint, "updated_by": view.updated_by, "updated_at": view.updated_at,
        }))
        uow.audit("backend_token.set", context=clean_context, target=clean_provider,
                  detail={"provider": clean_provider, "replaced": replaced})
        uow.commit()
    log.info("backend token set", extra={"context": clean_context, "provider": clean_provider, "replaced": replaced})
    return view


def list_backend_tokens(rt: Runtime, principal: Principal, context: str) -> list[BackendTokenView]:
    """The tokens of a context, by provider (needs `read`); the ciphertext is not even loaded."""
    clean_context = ids.context(context)
    with rt.database.session() as session:
        require_in_context(session, rt.roles, principal, "read", OBJECT_TYPE, clean_context)
        rows = session.execute(
            select(BackendToken.provider, BackendToken.hint, BackendToken.updated_at, BackendToken.updated_by)
            .where(BackendToken.context == clean_context)
            .order_by(BackendToken.provider)
        ).all()
    return [BackendTokenView(provider, hint, at, by) for provider, hint, at, by in rows]


def delete_backend_token(rt: Runtime, principal: Principal, context: str, provider: object) -> None:
    """Remove a provider's token (needs `delete`); 404 when none is set."""
    clean_context = ids.context(context)
    clean_provider = ids.provider(provider)
    with rt.unit_of_work(principal) as uow:
        uow.lock_context(clean_context)  # no token outlives its context
        require_in_context(uow.session, rt.roles, principal, "delete", OBJECT_TYPE, clean_context)
        deleted = uow.session.execute(
            delete(BackendToken).where(BackendToken.context == clean_context, BackendToken.provider == clean_provider)
        )
        removed = cast("CursorResult[Any]", deleted).rowcount  # a DELETE's result has its row count
        if not removed:
            raise NotFound(f"no backend token is set for provider {clean_provider!r} in this context")
        uow.audit("backend_token.delete", context=clean_context, target=clean_provider,
                  detail={"provider": clean_provider})
        uow.commit()
    log.info("backend token deleted", extra={"context": clean_context, "provider": clean_provider})


def _refusal(session: Session, roles: CompiledRoles, user: str, context: str) -> str | None:
    """Why this resolve must be refused (for the audit log), or None when the user may `use` the token."""
    role = role_in_context(session, roles, user, context)
    if role is None:
        return "the user is not a member of the context"
    if not roles.allows(role, OBJECT_TYPE, "use"):
        return f"role {role!r} may not use backend tokens"
    return None


def resolve_backend_token(rt: Runtime, principal: Principal, user_id: object, context: object, provider: object) -> str:
    """The plaintext for a job run by `user_id` in `context`, if that user may `use` backend tokens.

    Only a service key with `tokens:resolve` may ask, and anyone else is refused before
    anything is written: an outsider's attempt goes to the service log (and the API's
    refusal metric), never into the audit log of the context it names. For a key that may
    ask, the decision and its audit entry (who asked, for whom, which provider, the
    outcome) are one transaction.
    """
    if principal.is_user or not principal.has_scope(SCOPE_TOKENS_RESOLVE):
        log.warning("backend token resolve refused: the caller lacks the tokens:resolve scope",
                    extra={"asker": principal.audit_name, "request_id": principal.request_id})
        raise OutsiderForbidden("resolving a backend token needs a service key with the tokens:resolve scope")
    user = ids.user_id(user_id)
    if context == ids.PERSONAL:
        raise Invalid(f"context must be an organization id or {ids.USER_SUBJECT_PREFIX}<user_id>", field="context")
    clean_context = ids.context(context)
    clean_provider = ids.provider(provider)
    key_ring = _key_ring(rt)
    secret: str | None = None
    error: AuthzError | None = None
    with rt.unit_of_work(principal) as uow:
        try:
            uow.lock_context(clean_context, shared=True)  # no resolve from a context being deleted
        except NotFound:
            raise Forbidden("not allowed: a service key with tokens:resolve may resolve a token only for "
                            "a user who may use backend tokens in that context") from None
        reason = _refusal(uow.session, rt.roles, user, clean_context)
        if reason is not None:
            outcome = "denied"
            error = Forbidden("not allowed: a service key with tokens:resolve may resolve a token only for "
                              "a user who may use backend tokens in that context")
        else:
            row = uow.session.get(BackendToken, (clean_context, clean_provider))
            if row is None:
                outcome, reason = "not_found", "no token is set for this provider"
                error = NotFound(f"no backend token is set for provider {clean_provider!r} in that context")
            else:
                try:
                    secret = key_ring.decrypt(row.ciphertext)
                    outcome = "allowed"
                except UndecryptableSecret:
                    outcome, reason = "error", "no configured key decrypts the stored token"
                    error = Unavailable("the stored token cannot be decrypted with the configured keys")
        detail = {"user_id": user, "provider": clean_provider, "outcome": outcome}
        if reason is not None:
            detail["reason"] = reason
        uow.audit("backend_token.resolve", context=clean_context, target=clean_provider, detail=detail)
        uow.commit()
    level = logging.ERROR if outcome == "error" else logging.INFO
    log.log(level, "backend token resolve", extra={"asker": principal.audit_name, **detail, "context": clean_context})
    if error is not None:
        raise error
    assert secret is not None
    return secret


def rotate_backend_tokens(rt: Runtime, principal: Principal, progress: Progress | None = None) -> Rotation:
    """Re-encrypt every stored token with the newest key, all or nothing, as one audited transaction.

    `progress(done, total)` is called once before the first token and after each one.
    A token no configured key can decrypt stops the rotation with nothing changed.
    """
    key_ring = _key_ring(rt)
    with rt.unit_of_work(principal) as uow:
        uow.lock_global()  # an operator's change of every context; the rows are locked below
        rows = uow.session.scalars(
            select(BackendToken).order_by(BackendToken.context, BackendToken.provider).with_for_update()
        ).all()
        if progress is not None:
            progress(0, len(rows))
        for done, row in enumerate(rows, start=1):
            try:
                row.ciphertext = key_ring.rotate(row.ciphertext)
            except UndecryptableSecret:
                raise Conflict(
                    f"the {row.provider!r} token of {row.context} cannot be decrypted with any configured key; "
                    "nothing was re-encrypted (was a key removed too early?)"
                ) from None
            if progress is not None:
                progress(done, len(rows))
        uow.audit("backend_token.rotate", context=None, target="backend_tokens",
                  detail={"tokens": len(rows), "key_id": key_ring.newest_key_id})
        uow.commit()
    log.info("backend tokens re-encrypted", extra={"tokens": len(rows), "key_id": key_ring.newest_key_id})
    return Rotation(len(rows), key_ring.newest_key_id)
