"""authz installed with pip into a fresh venv runs from any directory (issue 12, class 1).

The venv gets the project and its client distribution (the server imports the decision index
from it) by `pip install --no-deps` (real wheel builds, so
package data that is not shipped is missing here as it would be for a user); its
dependencies, and setuptools to build with, come from the test venv through a plain path entry,
which carries no editable install of authz. Every process runs in a directory under /tmp, far from the checkout.
"""

import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest

from tests.conftest import JWT_SECRET, ONE_DATABASE, POLICY_DIR, ROOT
from tests.processes import authz_env, free_port, start_authz

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin/ directory of a fresh venv with authz pip-installed from this checkout."""
    venv = tmp_path_factory.mktemp("venv")
    # No pip inside (ensurepip took 3 s of CPU): the test venv's pip installs into it (`--python`).
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True)
    purelib = subprocess.run([str(venv / "bin" / "python"), "-c",
                              "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    Path(purelib, "authz-test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # A copy of the project: setuptools builds in ./build, which must neither litter the
    # checkout nor ship stale files from an earlier build.
    source = tmp_path_factory.mktemp("source") / "authz"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "*.egg-info", "__pycache__", ".hypothesis", ".pytest_cache", "*.db", "tests",
        "bench", "node_modules"))
    # The server imports the decision index from the client distribution, so a user installs both.
    # The same build backend as a user's pip, from the test venv (the path entry above) instead of a
    # fresh isolated build environment per distribution.
    built = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"),
                            "install", "--quiet", "--no-deps", "--no-build-isolation",
                            str(source / "clients" / "python"), str(source)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    where = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import authz, api, authz_client; "
                            "print(authz.__file__, api.__file__, authz_client.__file__)"],
                           capture_output=True, text=True, cwd="/tmp", env=clean_env(), check=True).stdout
    assert str(ROOT) not in where and str(venv) in where, where  # the installed copy, not the checkout
    return venv / "bin"


def clean_env(**values: str) -> dict[str, str]:
    """authz's test settings without PYTHONPATH (nothing of the checkout) and without AUTHZ_POLICY_MODEL."""
    env = authz_env(Path("/nonexistent"), {"PYTHONPATH": None, "AUTHZ_POLICY_MODEL": None})
    env.update(values)
    return env


@pytest.fixture
def elsewhere(tmp_path: Path) -> Iterator[Path]:
    """A working directory under /tmp with nothing of authz in it."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    assert str(folder).startswith("/tmp/") and not (folder / "policies").exists()
    yield folder


def token(sub: str) -> str:
    return jwt.encode({"sub": sub, "exp": int(time.time()) + 600}, JWT_SECRET, algorithm="HS256")


@ONE_DATABASE  # what is under test is the working directory and the settings, not the database
def test_serve_from_another_directory_answers_explain(installed: Path, elsewhere: Path, database_url: str) -> None:
    env = {"AUTHZ_DATABASE_URL": database_url, "PYTHONPATH": None, "AUTHZ_POLICY_MODEL": None,
           "AUTHZ_POLICY_DIR": str(POLICY_DIR)}
    server = start_authz(elsewhere, env, command=[str(installed / "authz")])
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            alice = {"Authorization": f"Bearer {token('alice')}"}
            created = http.post("/v1/resources", json={"type": "algorithm", "id": "grover"}, headers=alice)
            assert created.status_code == 201, created.text
            for query in ({"action": "delete", "resource": {"type": "algorithm", "id": "grover"}},
                          {"action": "create", "resource": {"type": "algorithm"}}):
                answer = http.post("/v1/check", params={"explain": "true"}, json=query, headers=alice)
                assert answer.status_code == 200, answer.text
                assert answer.json()["allowed"] is True
                assert answer.json()["explanation"]["rule"][0] == "p"
            # the console's templates and static files come from the package too
            assert http.get("/").status_code < 500
            assert http.get("/static/console/console.css").status_code == 200
            # a chunked body over the limit is 413 from the real server too (class 7)
            chunked = http.post("/v1/organizations", content=iter([b'{"name": "' + b"x" * 65536] * 20),
                                headers={**alice, "Content-Type": "application/json"})
            assert chunked.status_code == 413, chunked.text
        assert " 500" not in server.log_text() and '"status": 500' not in server.log_text()
    finally:
        server.stop()


def test_offline_commands_from_another_directory(installed: Path, elsewhere: Path) -> None:
    env = clean_env(AUTHZ_DATABASE_URL=f"sqlite:///{elsewhere / 'authz.db'}")
    tested = subprocess.run([str(installed / "authz"), "policy", "test", str(POLICY_DIR)], cwd=elsewhere, env=env,
                            capture_output=True, text=True, timeout=120)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "0 failed" in tested.stdout
    validated = subprocess.run([str(installed / "authz"), "policy", "validate", str(POLICY_DIR)], cwd=elsewhere,
                               env=env, capture_output=True, text=True, timeout=120)
    assert validated.returncode == 0, validated.stdout + validated.stderr
    # check asks the database as it is: its schema (Alembic's scripts come from the package) and a policy first
    for command in (["db", "upgrade"], ["policy", "apply", str(POLICY_DIR)]):
        prepared = subprocess.run([str(installed / "authz"), *command], cwd=elsewhere, env=env,
                                  capture_output=True, text=True, timeout=120)
        assert prepared.returncode == 0, prepared.stdout + prepared.stderr
    checked = subprocess.run([str(installed / "authz"), "check", "--subject", "alice", "--action", "create",
                              "--resource", "algorithm", "--context", "personal", "--explain"],
                             cwd=elsewhere, env={**env, "AUTHZ_POLICY_DIR": str(POLICY_DIR)},
                             capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert '"allowed": true' in checked.stdout


@ONE_DATABASE  # what is under test is the working directory and the settings, not the database
def test_a_setting_that_cannot_work_stops_serve_before_it_listens(installed: Path, elsewhere: Path,
                                                                  database_url: str) -> None:
    # The settings whose meaning depends on the working directory (relative paths), through the installed
    # script; every other refused setting is tested in process (tests/cli/test_serve_refuses.py).
    for setting, values in [("AUTHZ_POLICY_DIR", {"AUTHZ_POLICY_DIR": "policies"}),
                            ("AUTHZ_POLICY_MODEL", {"AUTHZ_POLICY_MODEL": "policy_model.conf"}),
                            ("AUTHZ_DATABASE_URL", {"AUTHZ_DATABASE_URL": "sqlite:///no/such/dir/authz.db"})]:
        port = free_port()
        env = clean_env(**{"AUTHZ_DATABASE_URL": database_url, "AUTHZ_POLICY_DIR": str(POLICY_DIR), **values})
        started = time.monotonic()
        result = subprocess.run([str(installed / "authz"), "serve", "--port", str(port)], cwd=elsewhere, env=env,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 1, (setting, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, (setting, result.stderr)
        assert setting in lines[0] and "Traceback" not in result.stderr, (setting, lines)
        assert time.monotonic() - started < 30
    assert not (elsewhere / "authz.db").exists()  # stopped before touching any database


def test_every_worker_logs_as_one_worker_does(elsewhere: Path, database_url: str) -> None:
    """`authz serve --workers 2` (issue 12, class 10): an access-log line per request, from both workers."""
    server = start_authz(elsewhere, {"AUTHZ_DATABASE_URL": database_url}, serve_args=("--workers", "2"))
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            for n in range(40):
                http.get("/healthz", headers={"X-Request-ID": f"probe-{n}", "Connection": "close"})
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and server.log_text().count('"probe-') < 40:
            time.sleep(0.1)
        import json

        lines = [json.loads(line) for line in server.log_text().splitlines() if line.startswith("{")]
        access = [line for line in lines if line.get("logger") == "authz.access"]
        probes = {line["request_id"] for line in access if str(line.get("request_id", "")).startswith("probe-")}
        assert probes == {f"probe-{n}" for n in range(40)}, server.log_text()[-3000:]
        assert all(set(line) >= {"ts", "level", "msg", "method", "route", "status", "duration_ms"} for line in access)
        assert any(line.get("msg") == "authz ready" for line in lines)
    finally:
        server.stop()
