"""Where the keys come from: configured keys, a key file, a development key generated once, or a refusal."""

import logging
import re
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from authz.bootstrap import open_runtime
from authz.cli import app
from authz.domain.principal import Principal
from authz.secrets import KeyRing, SecretKeyError, load_key_ring, new_key
from authz.services.backend_tokens import resolve_backend_token, set_backend_token
from tests.conftest import POLICY_DIR, POLICY_MODEL, make_settings

runner = CliRunner()
SECRET = "aqt-" + "Pl0Ok9Ij8Uh7" * 3


def sqlite_db(tmp_path: Path, template: Path) -> str:
    path = tmp_path / "authz.db"
    shutil.copy(template, path)
    return f"sqlite:///{path}"


def test_development_generates_one_private_key_file_beside_the_database(
    tmp_path: Path, sqlite_template: Path, caplog: Any
) -> None:
    caplog.set_level(logging.INFO, logger="authz.secrets")
    settings = make_settings(sqlite_db(tmp_path, sqlite_template), env="development", secret_keys=None)
    first = load_key_ring(settings)
    key_file = tmp_path / "authz.secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text().strip()
    assert KeyRing([key]).newest_key_id == first.newest_key_id
    generated = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(generated) == 1 and str(key_file) in generated[0].getMessage()
    assert "generated" in generated[0].getMessage() and "AUTHZ_SECRET_KEYS" in generated[0].getMessage()

    second = load_key_ring(settings)  # the same key on the next start: tokens stay readable
    assert second.decrypt(first.encrypt(SECRET)) == SECRET
    assert key_file.read_text().strip() == key
    assert key not in caplog.text
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_configured_key_file_is_used_and_created_if_missing(tmp_path: Path, sqlite_template: Path) -> None:
    key_file = tmp_path / "keys" / "backend.key"
    settings = make_settings(sqlite_db(tmp_path, sqlite_template), secret_keys=None, secret_key_file=key_file)
    ring = load_key_ring(settings)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert not (tmp_path / "authz.secret.key").exists()

    newer = new_key()
    key_file.write_text(f"{newer}\n{key_file.read_text()}")
    rotated_ring = load_key_ring(settings)
    assert rotated_ring.newest_key_id == KeyRing([newer]).newest_key_id
    assert rotated_ring.decrypt(ring.encrypt(SECRET)) == SECRET


def test_configured_keys_win_over_any_file(tmp_path: Path, sqlite_template: Path) -> None:
    key = new_key()
    settings = make_settings(sqlite_db(tmp_path, sqlite_template), secret_keys=key)
    assert load_key_ring(settings).newest_key_id == KeyRing([key]).newest_key_id
    assert not (tmp_path / "authz.secret.key").exists()


def test_production_without_keys_stops_before_touching_anything(tmp_path: Path) -> None:
    database = tmp_path / "prod.db"
    settings = make_settings(f"sqlite:///{database}", env="production", secret_keys=None)
    with pytest.raises(SecretKeyError) as caught:
        open_runtime(settings)
    assert "AUTHZ_ENV=production" in str(caught.value) and "AUTHZ_SECRET_KEYS" in str(caught.value)
    assert list(tmp_path.iterdir()) == []  # no database, no generated key

    missing_file = make_settings(f"sqlite:///{database}", env="production", secret_keys=None,
                                 secret_key_file=tmp_path / "absent.key")
    with pytest.raises(SecretKeyError, match=re.escape("absent.key does not exist")):
        load_key_ring(missing_file)
    assert list(tmp_path.iterdir()) == []


def test_production_accepts_a_mounted_key_file(tmp_path: Path) -> None:
    key_file = tmp_path / "mounted.key"
    key_file.write_text(new_key() + "\n")
    key_file.chmod(0o400)
    settings = make_settings(f"sqlite:///{tmp_path / 'prod.db'}", env="production", secret_keys=None,
                             secret_key_file=key_file)
    assert len(load_key_ring(settings).key_ids) == 1


def test_invalid_configured_key_stops_start_up_without_showing_it(tmp_path: Path) -> None:
    good = new_key()
    settings = make_settings(f"sqlite:///{tmp_path / 'x.db'}", secret_keys=f"{good},short")
    with pytest.raises(SecretKeyError) as caught:
        load_key_ring(settings)
    assert "key 2 of 2" in str(caught.value) and good not in str(caught.value)


def test_serve_in_production_without_keys_exits_with_a_clear_message(tmp_path: Path, monkeypatch: Any) -> None:
    import uvicorn

    def must_not_start(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the server started without keys")

    monkeypatch.setattr(uvicorn, "run", must_not_start)
    # `serve` configures logging onto this runner's stderr, closed afterwards: restore the root
    # logger, or later in-process commands print "--- Logging error ---" into their output.
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    env = {"AUTHZ_ENV": "production", "AUTHZ_SECRET_KEYS": "", "AUTHZ_DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}",
           "AUTHZ_POLICY_DIR": str(POLICY_DIR), "AUTHZ_POLICY_MODEL": str(POLICY_MODEL)}
    result = runner.invoke(app, ["serve"], env=env)
    assert result.exit_code == 1, result.output
    assert "cannot start: AUTHZ_ENV=production needs the backend-token encryption keys" in result.output
    assert "Traceback" not in result.output


def test_new_key_prints_a_usable_fresh_key() -> None:
    first = runner.invoke(app, ["secrets", "new-key"])
    second = runner.invoke(app, ["secrets", "new-key"])
    assert first.exit_code == 0 and second.exit_code == 0
    assert first.output.strip() != second.output.strip()
    KeyRing.parse(first.output, source="output")


def test_a_generated_development_key_survives_a_restart(tmp_path: Path, sqlite_template: Path) -> None:
    settings = make_settings(sqlite_db(tmp_path, sqlite_template), env="development", secret_keys=None)
    owner = Principal(kind="user", id="alice")
    runtime = open_runtime(settings, migrate=False)
    set_backend_token(runtime, owner, "user:alice", "aqt", SECRET)
    runtime.database.dispose()

    restarted = open_runtime(settings, migrate=False)
    asker = Principal(kind="service", id="feedfacefeedface", scopes=frozenset({"tokens:resolve"}))
    assert resolve_backend_token(restarted, asker, "alice", "user:alice", "aqt") == SECRET
    restarted.database.dispose()
