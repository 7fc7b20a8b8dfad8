"""Real processes for end-to-end tests: `authz serve` on a free port, and free loopback ports.

    server = start_authz(tmp_path)            # SQLite file in tmp_path, JWT secret of conftest
    try:
        httpx.get(server.url + "/readyz")
    finally:
        server.stop()

or the `authz_server` fixture of tests/conftest.py. The process's output goes to a file
(`server.log_text()`), never to a pipe that could fill up and stall it. `start_cli` forks it from a
process that has already imported the server (tests/forked_cli.py) unless the test names a command to
execute, such as an installed `authz` script.
"""

import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.conftest import JWT_SECRET, POLICY_DIR, POLICY_MODEL, ROOT
from tests.forked_cli import StartedProcess, fork_cli

START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, process: StartedProcess, timeout: float, log: Path) -> None:
    """Until something accepts connections on host:port; fails early if `process` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening:\n{_tail(log)}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listened on {host}:{port} within {timeout}s:\n{_tail(log)}")


def _tail(path: Path, limit: int = 4000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-limit:]
    except OSError:
        return ""


def stop_process(process: StartedProcess, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM, then SIGKILL if it has not exited after `timeout` seconds."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


@dataclass
class ServerProcess:
    """A running `authz serve`: its URL, environment (for `cli`), and its log file."""

    url: str
    port: int
    database_url: str
    env: dict[str, str]
    process: StartedProcess
    log_path: Path
    workdir: Path

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def cli(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run `authz ARGS...` with this server's settings (same database, same secret), forked as
        `start_cli` starts it; its stdout and stderr apart, as `subprocess.run` captures them."""
        with tempfile.TemporaryDirectory(prefix="authz-cli-") as scratch:
            stdout, stderr = Path(scratch, "stdout"), Path(scratch, "stderr")
            process = fork_cli(args, self.env, cwd=self.workdir, log_path=stdout, stderr_path=stderr)
            try:
                returncode = process.wait(timeout)
            finally:
                if process.returncode is None:  # the timeout: stop it, and reap it
                    process.kill()
                    process.wait(5)
            return subprocess.CompletedProcess(["authz", *args], returncode, stdout.read_text(), stderr.read_text())

    def stop(self) -> None:
        stop_process(self.process)

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def authz_env(tmp_path: Path, env: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """The environment of an authz process: the tests' settings; of the caller's AUTHZ_* only the secret keys.

    A value of None in `env` removes that variable (e.g. AUTHZ_POLICY_MODEL, to use the packaged model).
    """
    values = {k: v for k, v in os.environ.items() if not k.startswith("AUTHZ_")}
    if os.environ.get("AUTHZ_SECRET_KEYS"):  # the session's backend-token key (tests/conftest.py)
        values["AUTHZ_SECRET_KEYS"] = os.environ["AUTHZ_SECRET_KEYS"]
    values.update({
        "AUTHZ_ENV": "test",
        "AUTHZ_DATABASE_URL": f"sqlite:///{tmp_path / 'authz.db'}",
        "AUTHZ_POLICY_DIR": str(POLICY_DIR),
        "AUTHZ_POLICY_MODEL": str(POLICY_MODEL),
        "AUTHZ_JWT_SECRET": JWT_SECRET,
        "AUTHZ_SYNC_POLL_INTERVAL": "0.2",
        "AUTHZ_LOG_LEVEL": "INFO",
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
        "PYTHONUNBUFFERED": "1",
    })
    for name, value in (env or {}).items():
        if value is None:
            values.pop(name, None)
        else:
            values[name] = value
    return values


def start_authz(tmp_path: Path, env: Mapping[str, str | None] | None = None, *, timeout: float = START_TIMEOUT,
                attempts: int = 3, port: int | None = None, command: list[str] | None = None,
                serve_args: tuple[str, ...] = ()) -> ServerProcess:
    """Start `authz serve` on a free loopback port and wait until /readyz answers 200.

    `env` overrides the defaults of `authz_env` (e.g. AUTHZ_DATABASE_URL for PostgreSQL); "{port}"
    in a value is replaced by the port chosen. `command` executes a fresh process instead of forking
    the CLI (e.g. an installed `authz` script); `serve_args` are added after the port (e.g. `--workers 2`).
    Retries on a fresh port if another process took the chosen one first; `port` asks for
    one port only (a restart on the port a client already follows).
    """
    tmp_path.mkdir(parents=True, exist_ok=True)
    values = authz_env(tmp_path, env)
    error: Exception | None = None
    fixed = port
    for attempt in range(1 if fixed else attempts):
        port = fixed or free_port()
        # "{port}" in a value is this server's port (AUTHZ_PUBLIC_URL=http://127.0.0.1:{port}).
        values = {name: value.replace("{port}", str(port)) for name, value in authz_env(tmp_path, env).items()}
        log_path = tmp_path / f"authz-{port}.log"
        log_path.write_bytes(b"")  # a restart on the same port has a log of its own
        process = start_cli(["serve", "--host", "127.0.0.1", "--port", str(port), *serve_args], values,
                            cwd=tmp_path, log_path=log_path, command=command)
        server = ServerProcess(f"http://127.0.0.1:{port}", port, values["AUTHZ_DATABASE_URL"], values, process,
                               log_path, tmp_path)
        try:
            _wait_ready(server, timeout)
            return server
        except RuntimeError as exc:
            server.stop()
            error = exc
            if "address already in use" not in server.log_text().lower() or attempt + 1 == attempts:
                break
    raise RuntimeError(f"authz serve did not become ready: {error}")


def start_cli(argv: Sequence[str], env: Mapping[str, str], *, cwd: Path, log_path: Path,
              command: Sequence[str] | None = None) -> StartedProcess:
    """`authz ARGV...` in `cwd` with exactly `env`, its output appended to `log_path`.

    Forked from the worker's preloaded fork server (tests/forked_cli.py), or, given `command` (an
    installed `authz` script, say), executed as a fresh process.
    """
    if command is None:
        return fork_cli(argv, env, cwd=cwd, log_path=log_path)
    with log_path.open("ab") as log:  # a session of its own, as a forked one has
        return subprocess.Popen([*command, *argv], env=dict(env), cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


# One TLS context for the waits' clients: an httpx client building its own took 30 ms of CPU to open,
# and the suite waits for a server a few hundred times (over plain HTTP, but httpx builds it anyway).
_TLS = httpx.create_ssl_context()


def _wait_ready(server: ServerProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0, verify=_TLS) as http:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise RuntimeError(f"exited with {server.process.returncode}:\n{_tail(server.log_path)}")
            try:
                if http.get(server.url + "/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    raise RuntimeError(f"/readyz did not answer 200 within {timeout}s:\n{_tail(server.log_path)}")


def add_member(server: ServerProcess, org_id: str, user: str, role: str) -> int:
    """Make `user` a member through the core, on the server's database; returns the revision written.

    The server learns of it from the changelog (pass the revision as `min_revision`, or
    `wait_for_revision`).
    """
    from authz.bootstrap import open_runtime
    from tests.conftest import add_member as add_member_rows
    from tests.conftest import make_settings

    runtime = open_runtime(make_settings(server.database_url), migrate=False)
    try:
        add_member_rows(runtime, org_id, user, role)
        return runtime.replica.revision
    finally:
        runtime.database.dispose()


def wait_for_revision(server: ServerProcess, revision: int, timeout: float = 30.0) -> None:
    """Until the server's /readyz reports at least `revision`."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0, verify=_TLS) as http:
        while time.monotonic() < deadline:
            if http.get(server.url + "/readyz").json().get("revision", -1) >= revision:
                return
            time.sleep(0.05)
    raise RuntimeError(f"the server did not reach revision {revision} within {timeout}s")


def create_service_key(server: ServerProcess, *scopes: str) -> tuple[str, int]:
    """A new service key on the server's database: (the key, the revision that created it)."""
    from authz.bootstrap import open_runtime
    from authz.domain.principal import cli_principal
    from authz.services.service_keys import create_service_key as create_key
    from tests.conftest import make_settings

    runtime = open_runtime(make_settings(server.database_url), migrate=False)
    try:
        written = create_key(runtime, cli_principal(), "tests", list(scopes))
        assert written.revision is not None
        return written.value, written.revision
    finally:
        runtime.database.dispose()


def revoke_service_key(server: ServerProcess, key: str) -> int:
    """Revoke `key` on the server's database; the revision that revoked it."""
    from authz.bootstrap import open_runtime
    from authz.domain.principal import cli_principal
    from authz.services.service_keys import revoke_service_key as revoke_key
    from tests.conftest import make_settings

    runtime = open_runtime(make_settings(server.database_url), migrate=False)
    try:
        written = revoke_key(runtime, cli_principal(), key.split("_")[1])
        assert written.revision is not None
        return written.revision
    finally:
        runtime.database.dispose()
