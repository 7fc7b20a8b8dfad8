"""The backend-token service: encryption at rest on both databases, hints, and the policy deciding."""

import shutil
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from authz.domain.errors import Forbidden, Invalid, NotFound
from authz.domain.principal import Principal, cli_principal
from authz.policy.loader import load_policy_dir
from authz.secrets import KeyRing
from authz.services import backend_tokens as tokens
from authz.services.organizations import create_organization
from authz.services.policy_admin import apply_policy
from authz.services.runtime import Runtime
from authz.store.tables import AuditEntry, BackendToken, Base
from tests.conftest import BILLING, POLICY_DIR, TEST_SECRET_KEYS, add_member

SECRET = "dwave-DEV-" + "Qz8Lm4Rt6Yp2" * 4 + "k7Jw"
PERSONAL_SECRET = "braket-" + "Hs5Gd3Fa1Zx9" * 3


def user(name: str) -> Principal:
    return Principal(kind="user", id=name, email=f"{name}@example.com", email_verified=True)


def resolver() -> Principal:
    return Principal(kind="service", id="0123456789abcdef", scopes=frozenset({"tokens:resolve"}))


def new_org(runtime: Runtime) -> str:
    return create_organization(runtime, user("olivia"), "Lab", BILLING).value.id


def test_hint_never_gives_away_more_than_a_quarter() -> None:
    assert tokens.hint_of("a" * 12 + "WXYZ") == "WXYZ"
    assert tokens.hint_of("x" * 200 + "tail") == "tail"
    assert tokens.hint_of("abcdefgh") == "gh"
    assert tokens.hint_of("abc") == ""
    assert tokens.hint_of("z") == ""


def test_plaintext_is_nowhere_in_the_database(runtime: Runtime, database_url: str) -> None:
    org_id = new_org(runtime)
    tokens.set_backend_token(runtime, user("olivia"), org_id, "dwave", SECRET)
    tokens.set_backend_token(runtime, user("max"), "user:max", "aws-braket", PERSONAL_SECRET)
    add_member(runtime, org_id, "max", "maintainer")
    assert tokens.resolve_backend_token(runtime, resolver(), "max", org_id, "dwave") == SECRET
    assert tokens.resolve_backend_token(runtime, resolver(), "max", "user:max", "aws-braket") == PERSONAL_SECRET
    secrets = (SECRET, PERSONAL_SECRET)
    needles = [s.encode() for s in secrets] + [s.encode().hex().encode() for s in secrets]

    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        runtime.database.dispose()
        path = Path(url.database or "")
        files = [p for p in path.parent.iterdir() if p.name.startswith(path.name)]  # the database, -wal, -shm
        raw = b"".join(p.read_bytes() for p in files)
        assert b"dwave" in raw and b"aws-braket" in raw  # the search does see the rows
        for needle in needles:
            assert needle not in raw
    else:
        conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(conninfo) as conn:
            rows = [str(row) for table in Base.metadata.sorted_tables
                    for row in conn.execute(f'SELECT t::text FROM "{table.name}" t').fetchall()]
            ciphertexts = [bytes(c) for (c,) in conn.execute("SELECT ciphertext FROM backend_tokens").fetchall()]
        assert any("dwave" in row for row in rows) and len(ciphertexts) == 2
        for needle in needles:
            assert all(needle.decode() not in row for row in rows)
            assert all(needle not in ciphertext for ciphertext in ciphertexts)


def test_ciphertext_is_the_newest_keys_and_authenticated(runtime: Runtime) -> None:
    org_id = new_org(runtime)
    tokens.set_backend_token(runtime, user("olivia"), org_id, "dwave", SECRET)
    with runtime.database.session() as session:
        row = session.scalars(select(BackendToken)).one()
        ciphertext, hint, updated_by = row.ciphertext, row.hint, row.updated_by
    assert KeyRing.parse(TEST_SECRET_KEYS, source="test").decrypt(ciphertext) == SECRET
    assert hint == SECRET[-4:] and updated_by == "olivia"


def test_invalid_input_changes_nothing_and_never_repeats_the_token(runtime: Runtime) -> None:
    org_id = new_org(runtime)
    for provider, token, field in [("Bad", SECRET, "provider"), ("dwave", SECRET + "\r", "token"),
                                   ("dwave", "", "token"), ("dwave", SECRET * 100, "token"), ("dwave", 42, "token")]:
        with pytest.raises(Invalid) as caught:
            tokens.set_backend_token(runtime, user("olivia"), org_id, provider, token)
        assert caught.value.field == field
        assert SECRET not in caught.value.detail and SECRET not in str(caught.value)
    with pytest.raises(Invalid):
        tokens.set_backend_token(runtime, user("olivia"), "user:", "dwave", SECRET)
    assert tokens.list_backend_tokens(runtime, user("olivia"), org_id) == []
    with runtime.database.session() as session:
        assert session.scalars(select(AuditEntry.action).where(AuditEntry.action.like("backend_token%"))).all() == []


def test_refusals_leave_nothing_behind(runtime: Runtime) -> None:
    org_id = new_org(runtime)
    add_member(runtime, org_id, "max", "maintainer")
    with pytest.raises(Forbidden):
        tokens.set_backend_token(runtime, user("max"), org_id, "dwave", SECRET)
    with pytest.raises(NotFound):
        tokens.set_backend_token(runtime, user("mallory"), org_id, "dwave", SECRET)
    with pytest.raises(NotFound):
        tokens.set_backend_token(runtime, user("olivia"), "org_" + "0" * 24, "dwave", SECRET)
    with pytest.raises(Forbidden):
        tokens.set_backend_token(runtime, resolver(), org_id, "dwave", SECRET)
    with runtime.database.session() as session:
        assert session.scalars(select(BackendToken)).all() == []


def test_who_may_set_is_one_line_of_policy_data(runtime: Runtime, tmp_path: Path) -> None:
    org_id = new_org(runtime)
    add_member(runtime, org_id, "max", "maintainer")
    with pytest.raises(Forbidden):
        tokens.set_backend_token(runtime, user("max"), org_id, "dwave", SECRET)

    policies = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, policies)
    permissions = policies / "permissions.yaml"
    text = permissions.read_text()
    assert text.count("\n      set: [owner]\n") == 1
    permissions.write_text(text.replace("\n      set: [owner]\n", "\n      set: [maintainer]\n"))
    written = apply_policy(runtime, cli_principal(), load_policy_dir(policies))
    assert written.value.added == [("p", "maintainer", "*", "backend_token", "set")]

    view = tokens.set_backend_token(runtime, user("max"), org_id, "dwave", SECRET)
    assert view.updated_by == "max"
    with pytest.raises(Forbidden):
        tokens.delete_backend_token(runtime, user("max"), org_id, "dwave")  # only `set` moved
