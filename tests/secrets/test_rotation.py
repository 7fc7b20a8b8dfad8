"""Key rotation: add a new key in front, re-encrypt everything, and the old key reads nothing any more."""

import io
import sys
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from authz.cli import app, secrets_rotate
from authz.domain.errors import Conflict
from authz.domain.principal import Principal, cli_principal
from authz.secrets import KeyRing, UndecryptableSecret, new_key
from authz.services import backend_tokens as tokens
from authz.services.organizations import create_organization
from authz.services.runtime import Runtime
from authz.store.tables import AuditEntry, BackendToken
from tests.conftest import BILLING, JWT_SECRET, POLICY_DIR, POLICY_MODEL, add_member

runner = CliRunner()
OWNER = Principal(kind="user", id="olivia")
RESOLVER = Principal(kind="service", id="0123456789abcdef", scopes=frozenset({"tokens:resolve"}))
SECRETS = {"ibm-quantum": "ibm-" + "A1b2C3d4E5f6" * 4, "ionq": "ionq-" + "G7h8I9j0K1l2" * 3,
           "dwave": "DEV-" + "M3n4O5p6Q7r8" * 2}


def ciphertexts(runtime: Runtime) -> dict[tuple[str, str], bytes]:
    with runtime.database.session() as session:
        return {(r.context, r.provider): bytes(r.ciphertext) for r in session.scalars(select(BackendToken))}


def plaintext_of(context: str, provider: str) -> str:
    return SECRETS[provider] if context.startswith("org_") else SECRETS[provider] + "-mine"


def store_tokens(runtime: Runtime, ring: KeyRing) -> str:
    runtime.key_ring = ring
    org_id = create_organization(runtime, OWNER, "Lab", BILLING).value.id
    add_member(runtime, org_id, "max", "maintainer")
    for provider in ("ibm-quantum", "ionq"):
        tokens.set_backend_token(runtime, OWNER, org_id, provider, plaintext_of(org_id, provider))
    tokens.set_backend_token(runtime, OWNER, "user:olivia", "ionq", plaintext_of("user:olivia", "ionq"))
    return org_id


def test_rotation_with_two_keys_keeps_every_token_readable_and_retires_the_old_key(runtime: Runtime) -> None:
    old, new = new_key(), new_key()
    org_id = store_tokens(runtime, KeyRing([old]))

    runtime.key_ring = KeyRing([new, old])  # the new key goes first
    assert tokens.resolve_backend_token(runtime, RESOLVER, "max", org_id, "ionq") == SECRETS["ionq"]
    tokens.set_backend_token(runtime, OWNER, org_id, "dwave", SECRETS["dwave"])  # new writes use the new key
    assert KeyRing([new]).decrypt(ciphertexts(runtime)[(org_id, "dwave")]) == SECRETS["dwave"]

    seen: list[tuple[int, int]] = []
    rotation = tokens.rotate_backend_tokens(runtime, cli_principal(), lambda done, total: seen.append((done, total)))
    assert rotation.tokens == 4 and rotation.key_id == KeyRing([new]).newest_key_id
    assert seen == [(0, 4), (1, 4), (2, 4), (3, 4), (4, 4)]

    stored = ciphertexts(runtime)
    assert len(stored) == 4
    for (context, provider), ciphertext in stored.items():
        assert KeyRing([new]).decrypt(ciphertext) == plaintext_of(context, provider)
        with pytest.raises(UndecryptableSecret):
            KeyRing([old]).decrypt(ciphertext)

    runtime.key_ring = KeyRing([new])  # the old key can now be dropped
    for provider in ("ibm-quantum", "ionq", "dwave"):
        assert tokens.resolve_backend_token(runtime, RESOLVER, "max", org_id, provider) == SECRETS[provider]
    assert tokens.resolve_backend_token(runtime, RESOLVER, "olivia", "user:olivia", "ionq") == SECRETS["ionq"] + "-mine"

    with runtime.database.session() as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "backend_token.rotate")).one()
        assert entry.actor == "cli:admin" and entry.detail == {"tokens": 4, "key_id": rotation.key_id}


def test_a_token_no_key_can_read_stops_rotation_with_nothing_changed(runtime: Runtime) -> None:
    lost, kept = new_key(), new_key()
    org_id = store_tokens(runtime, KeyRing([kept]))
    runtime.key_ring = KeyRing([lost])
    tokens.set_backend_token(runtime, OWNER, org_id, "dwave", SECRETS["dwave"])
    before = ciphertexts(runtime)

    runtime.key_ring = KeyRing([new_key(), kept])  # `lost` was removed too early
    with pytest.raises(Conflict, match=r"'dwave' token .* cannot be decrypted"):
        tokens.rotate_backend_tokens(runtime, cli_principal())
    assert ciphertexts(runtime) == before
    with runtime.database.session() as session:
        assert session.scalars(select(AuditEntry).where(AuditEntry.action == "backend_token.rotate")).all() == []


def test_cli_rotate_reencrypts_with_the_first_key_of_the_environment(runtime: Runtime, database_url: str) -> None:
    old, new = new_key(), new_key()
    store_tokens(runtime, KeyRing([old]))
    env = {"AUTHZ_DATABASE_URL": database_url, "AUTHZ_POLICY_DIR": str(POLICY_DIR),
           "AUTHZ_POLICY_MODEL": str(POLICY_MODEL), "AUTHZ_JWT_SECRET": JWT_SECRET,
           "AUTHZ_SECRET_KEYS": f"{new},{old}"}
    result = runner.invoke(app, ["secrets", "rotate"], env=env)
    assert result.exit_code == 0, result.output
    assert f"re-encrypted 3 backend tokens with key {KeyRing([new]).newest_key_id}" in result.output
    assert "older keys can now be removed" in result.output
    assert (
        all(s not in result.output for s in SECRETS.values()) and old not in result.output and new not in result.output
    )
    for (context, provider), ciphertext in ciphertexts(runtime).items():
        assert KeyRing([new]).decrypt(ciphertext) == plaintext_of(context, provider)
        with pytest.raises(UndecryptableSecret):
            KeyRing([old]).decrypt(ciphertext)

    env["AUTHZ_SECRET_KEYS"] = new_key()  # neither key: refused, exit 1, nothing changed
    before = ciphertexts(runtime)
    failed = runner.invoke(app, ["secrets", "rotate"], env=env)
    assert failed.exit_code == 1 and "cannot be decrypted with any configured key" in failed.output
    assert ciphertexts(runtime) == before


def test_cli_rotate_shows_a_progress_bar_on_a_terminal(runtime: Runtime, database_url: str, monkeypatch: Any) -> None:
    old, new = new_key(), new_key()
    store_tokens(runtime, KeyRing([old]))
    for name, value in {
        "AUTHZ_DATABASE_URL": database_url,
        "AUTHZ_POLICY_DIR": str(POLICY_DIR),
        "AUTHZ_POLICY_MODEL": str(POLICY_MODEL),
        "AUTHZ_SECRET_KEYS": f"{new},{old}",
    }.items():
        monkeypatch.setenv(name, value)

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    secrets_rotate()
    shown = terminal.getvalue()
    assert "re-encrypting backend tokens" in shown and "100%" in shown
    assert "re-encrypted 3 backend tokens" in shown


def test_rotation_of_nothing_is_fine(runtime: Runtime) -> None:
    assert tokens.rotate_backend_tokens(runtime, cli_principal()).tokens == 0
