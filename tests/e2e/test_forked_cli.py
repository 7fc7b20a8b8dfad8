"""The tests' forked `authz` (tests/forked_cli.py) behaves as a freshly executed one: same exit code,
same output, only the environment and working directory it was given, stopped by the same signals."""

import importlib.util
import os
import signal
import sys
from pathlib import Path

import pytest

from tests.forked_cli import PRELOAD
from tests.processes import authz_env, free_port, start_cli, wait_for_port

FRESH = [sys.executable, "-m", "authz.cli"]


@pytest.mark.parametrize("command", [None, FRESH], ids=["forked", "executed"])
def test_a_refusal_exits_1_with_its_message(tmp_path: Path, command: list[str] | None) -> None:
    log = tmp_path / "cli.log"
    process = start_cli(["sidecar", "--upstream", "ftp://upstream", "--key-file", "key"], authz_env(tmp_path),
                        cwd=tmp_path, log_path=log, command=command)
    assert process.wait(timeout=60) == 1
    assert "--upstream must be an http:// or https:// URL" in log.read_text()


@pytest.mark.parametrize("command", [None, FRESH], ids=["forked", "executed"])
def test_it_sees_only_its_environment_and_directory(tmp_path: Path, command: list[str] | None,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # Settings of the test process that are not in the child's environment must not reach it, whether
    # the fork server started before this test or during it. AUTHZ_SECRET_KEYS is in every worker's
    # environment from the session's start (tests/conftest.py), so the fork server has it too: without
    # it, `secrets rotate` generates a development key beside the database. The AUTHZ_DATABASE_URL set
    # here would point the child at a database that does not exist, instead of the default ./authz.db.
    monkeypatch.setenv("AUTHZ_DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    env = authz_env(tmp_path, {"AUTHZ_DATABASE_URL": None, "AUTHZ_SECRET_KEYS": None})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    log = tmp_path / "cli.log"
    for argv in (["db", "upgrade"], ["secrets", "rotate"]):
        process = start_cli(argv, env, cwd=elsewhere, log_path=log, command=command)
        assert process.wait(timeout=60) == 0, log.read_text()
    assert "schema is up to date" in log.read_text()
    assert (elsewhere / "authz.db").is_file()  # the default, relative to the working directory
    assert (elsewhere / "authz.secret.key").is_file()  # no AUTHZ_SECRET_KEYS: a development key


@pytest.mark.parametrize("command", [None, FRESH], ids=["forked", "executed"])
def test_sigterm_stops_a_server_cleanly(tmp_path: Path, command: list[str] | None) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    process = start_cli(["serve", "--port", str(port)], authz_env(tmp_path), cwd=tmp_path, log_path=log,
                        command=command)
    try:
        wait_for_port("127.0.0.1", port, process, 60, log)
        assert process.poll() is None
        os.kill(process.pid, signal.SIGTERM)
        # uvicorn shuts down, then raises the signal again: the exit status says what stopped it.
        assert process.wait(timeout=15) == -signal.SIGTERM
        assert "Application shutdown complete" in log.read_text()
    finally:
        process.kill()


def test_every_preloaded_module_exists() -> None:
    # The fork server skips a module it cannot import without a word: a renamed one would make every
    # start import it again (slower, never wrong), so the list is checked here.
    assert [name for name in PRELOAD if importlib.util.find_spec(name) is None] == []
