"""Starting and stopping real server processes for the bench: `authz serve` and the no-op app.

Each server is its own process group on 127.0.0.1 (loopback only), stopped by its own
pid; its stderr goes to a log file under the run's directory for post-mortems.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    started: float  # time.perf_counter() at spawn
    ready_after: float | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pids(self) -> list[int]:
        """The server and its children (uvicorn workers)."""
        found = [self.process.pid]
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == self.process.pid:
                    found.append(int(entry.name))
        return found

    def rss_mb(self) -> float:
        """Resident memory of the server and its workers, in MB."""
        return sum(rss_mb(pid) for pid in self.pids())


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def authz_env(database_url: str, **extra: str) -> dict[str, str]:
    """The environment of a bench `authz serve`: no .env, the repo's policy, quiet, no mail thread."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHZ_")}
    env.update(
        AUTHZ_DATABASE_URL=database_url,
        AUTHZ_POLICY_DIR=str(ROOT / "policies"),
        AUTHZ_POLICY_MODEL=str(ROOT / "authz" / "policy" / "policy_model.conf"),
        AUTHZ_ENV="test",
        AUTHZ_MAIL_SENDER="false",
        AUTHZ_JWT_SECRET=JWT_SECRET,
    )
    env.update(extra)
    return env


JWT_SECRET = "bench-secret-" + "b" * 32


@contextmanager
def serve(command: list[str], env: dict[str, str], port: int, log_path: Path, *, ready_path: str = "/readyz",
          timeout: float = 180.0) -> Iterator[Server]:
    """Run `command`, wait until `ready_path` answers 200, yield, then stop the process group."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=log, start_new_session=True)
        server = Server(process, port, started)
        try:
            server.ready_after = _wait_ready(server, ready_path, timeout)
            yield server
        finally:
            _stop(process)


def authz_serve(
    database_url: str, port: int, log_path: Path, *, workers: int = 1, **env: str
) -> AbstractContextManager[Server]:
    command = [str(ROOT / ".venv/bin/authz") if (ROOT / ".venv/bin/authz").exists() else "authz",
               "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    return serve(command, authz_env(database_url, **env), port, log_path)


def noop_serve(port: int, log_path: Path) -> AbstractContextManager[Server]:
    command = [sys.executable, "-m", "bench.noop_app", "--port", str(port)]
    return serve(command, dict(os.environ), port, log_path, ready_path="/healthz")


def _wait_ready(server: Server, path: str, timeout: float) -> float:
    deadline = time.perf_counter() + timeout
    with httpx.Client(timeout=2.0) as client:
        while time.perf_counter() < deadline:
            if server.process.poll() is not None:
                raise RuntimeError(f"the server exited with {server.process.returncode} before it was ready")
            try:
                if client.get(server.url + path).status_code == 200:
                    return time.perf_counter() - server.started
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
    raise TimeoutError(f"{server.url}{path} not ready after {timeout:.0f}s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
