"""`authz serve` with a setting that cannot work stops before it listens, with one line naming it.

In process, through the command itself: the checks are `authz.startup_checks`, run by `serve`
before anything is opened. `tests/e2e/test_runs_anywhere.py` runs the cases that depend on the
working directory (relative paths) through the pip-installed script from another directory.
"""

import os
from pathlib import Path

import pytest
import uvicorn
from typer.testing import CliRunner

from authz.cli import app
from tests.conftest import JWT_SECRET, POLICY_DIR, POLICY_MODEL

runner = CliRunner()


def unusable_settings(folder: Path) -> list[tuple[str, dict[str, str]]]:
    """(the variable the refusal must name, the settings that cannot work), files made in `folder`."""
    garbage = folder / "garbage.pem"
    garbage.write_text("-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n")
    unreadable = folder / "unreadable.pem"
    unreadable.mkdir()  # a directory: exists, cannot be read as a file (root ignores file modes)
    broken_policy = folder / "broken-policies"
    broken_policy.mkdir()
    (broken_policy / "roles.yaml").write_text("roles:\n  owner:\n    inherits: [nobody]\n")
    bad_model = folder / "model.conf"
    bad_model.write_text("[request_definition]\nr = sub\n")
    return [
        ("AUTHZ_JWT_SECRET", {"AUTHZ_JWT_SECRET": ""}),
        ("AUTHZ_JWT_SECRET", {"AUTHZ_JWT_SECRET": "   "}),
        ("AUTHZ_JWT_PUBLIC_KEY", {"AUTHZ_JWT_PUBLIC_KEY": str(folder / "missing.pem")}),
        ("AUTHZ_JWT_PUBLIC_KEY", {"AUTHZ_JWT_PUBLIC_KEY": str(garbage)}),
        ("AUTHZ_JWT_PUBLIC_KEY", {"AUTHZ_JWT_PUBLIC_KEY": str(unreadable)}),
        ("AUTHZ_POLICY_DIR", {"AUTHZ_POLICY_DIR": "policies"}),  # relative: not in this directory
        ("AUTHZ_POLICY_DIR", {"AUTHZ_POLICY_DIR": str(broken_policy)}),
        ("AUTHZ_POLICY_MODEL", {"AUTHZ_POLICY_MODEL": "policy_model.conf"}),
        ("AUTHZ_POLICY_MODEL", {"AUTHZ_POLICY_MODEL": str(bad_model)}),
        ("AUTHZ_SMTP_CA_FILE", {"AUTHZ_SMTP_CA_FILE": str(folder / "ca.pem")}),
        ("AUTHZ_SECRET_KEY_FILE", {"AUTHZ_SECRET_KEY_FILE": str(unreadable)}),
        ("AUTHZ_SECRET_KEY_FILE", {"AUTHZ_SECRET_KEY_FILE": str(folder / "no" / "such" / "authz.key")}),
        ("AUTHZ_DATABASE_URL", {"AUTHZ_DATABASE_URL": f"sqlite:///{folder / 'no' / 'such' / 'dir' / 'authz.db'}"}),
        ("AUTHZ_DATABASE_URL", {"AUTHZ_DATABASE_URL": "mysql://localhost/authz"}),
        ("AUTHZ_LOG_LEVEL", {"AUTHZ_LOG_LEVEL": "LOUD"}),
        ("AUTHZ_MAX_BODY_BYTES", {"AUTHZ_MAX_BODY_BYTES": "a lot"}),
    ]


def test_a_setting_that_cannot_work_stops_serve_before_it_listens(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # no .env here, and relative paths point at nothing
    listened: list[object] = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: listened.append(args))
    for name in [n for n in os.environ if n.startswith("AUTHZ_")]:  # only what this test sets
        monkeypatch.delenv(name)
    usable = {"AUTHZ_ENV": "test", "AUTHZ_DATABASE_URL": f"sqlite:///{elsewhere / 'authz.db'}",
              "AUTHZ_POLICY_DIR": str(POLICY_DIR), "AUTHZ_POLICY_MODEL": str(POLICY_MODEL),
              "AUTHZ_JWT_SECRET": JWT_SECRET}
    for setting, values in unusable_settings(elsewhere):
        result = runner.invoke(app, ["serve", "--port", "1"], env={**usable, **values})
        assert result.exit_code == 1, (setting, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, (setting, result.stderr)
        assert setting in lines[0] and "Traceback" not in result.output, (setting, lines)
        assert result.exception is None or isinstance(result.exception, SystemExit), (setting, result.exception)
    assert listened == []
    assert not (elsewhere / "authz.db").exists()  # stopped before touching any database
