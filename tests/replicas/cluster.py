"""Real `authz serve` replicas on one PostgreSQL database of their own, for tests and the bench.

Each replica is a separate process on a free port, started with the environment an
operator would give it; its log goes to a file (shown when a test fails) so a full pipe
can never block it. Every wait has a deadline and every process is killed on the way out.
"""

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
from cryptography.fernet import Fernet
from sqlalchemy.engine import make_url

from tests.conftest import JWT_SECRET, POLICY_DIR, POLICY_MODEL, auth
from tests.forked_cli import StartedProcess
from tests.processes import free_port, start_cli, stop_process

ROOT = Path(__file__).resolve().parents[2]
HTTP_TIMEOUT = 10.0


def via(url: str, host: str, port: int) -> str:
    """The same database URL, reached through host:port (a proxy)."""
    return make_url(url).set(host=host, port=port).render_as_string(hide_password=False)


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.02, what: str = "condition") -> Any:
    """Poll `predicate` until it returns something truthy; AssertionError at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except httpx.HTTPError:
            value = None
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@dataclass
class ReplicaProcess:
    """One `authz serve` process."""

    name: str
    port: int
    env: dict[str, str]
    log_path: Path
    process: StartedProcess | None = None
    http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.Client(base_url=self.url, timeout=HTTP_TIMEOUT)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        # A restart appends to the replica's log, so a failure shows both lives.
        self.process = start_cli(["serve", "--host", "127.0.0.1", "--port", str(self.port)], self.env,
                                 cwd=self.log_path.parent, log_path=self.log_path)
        return self

    def wait_ready(self, timeout: float = 45.0) -> Self:
        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            return self.http.get("/readyz", timeout=2).status_code == 200

        wait_until(ready, timeout, interval=0.1, what=f"{self.name} to be ready")
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, as a crash or the OOM killer would do."""
        if self.alive():
            assert self.process is not None
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, timeout=5)
        self.http.close()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # ---- the API, as a client would use it ------------------------------------------------

    def revision(self) -> int:
        return int(self.http.get("/readyz", timeout=2).json()["revision"])

    def readyz(self) -> httpx.Response:
        return self.http.get("/readyz", timeout=5)

    def check(self, user: str, action: str, resource_type: str, *, resource_id: str | None = None,
              context: str | None = None, min_revision: int | None = None) -> httpx.Response:
        body: dict[str, Any] = {"action": action, "resource": {"type": resource_type}}
        if resource_id is not None:
            body["resource"]["id"] = resource_id
        if context is not None:
            body["context"] = context
        if min_revision is not None:
            body["min_revision"] = min_revision
        return self.http.post("/v1/check", json=body, headers=auth(user))

    def allowed(self, user: str, action: str, resource_type: str, **kwargs: Any) -> bool | None:
        """The decision, or None when the replica did not answer 200."""
        response = self.check(user, action, resource_type, **kwargs)
        return bool(response.json()["allowed"]) if response.status_code == 200 else None


class Cluster:
    """Replicas started with one environment; all stopped (or killed) on exit."""

    def __init__(self, database_url: str, workdir: Path, **settings: str) -> None:
        self.database_url = database_url
        self.workdir = workdir
        self.settings = settings
        self.secret_keys = Fernet.generate_key().decode()
        self.replicas: list[ReplicaProcess] = []

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def environment(self, **overrides: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHZ_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        env.update({
            "AUTHZ_ENV": "test",
            "AUTHZ_DATABASE_URL": self.database_url,
            "AUTHZ_JWT_SECRET": JWT_SECRET,
            "AUTHZ_POLICY_DIR": str(POLICY_DIR),
            "AUTHZ_POLICY_MODEL": str(POLICY_MODEL),
            "AUTHZ_SECRET_KEYS": self.secret_keys,  # every replica must share the keys
            "AUTHZ_LOG_LEVEL": "INFO",
        })
        env.update({f"AUTHZ_{k.upper()}": v for k, v in {**self.settings, **overrides}.items()})
        return env

    def start(self, name: str, **overrides: str) -> ReplicaProcess:
        """Start a replica (not waiting for it to be ready)."""
        replica = ReplicaProcess(name, free_port(), self.environment(**overrides), self.workdir / f"{name}.log")
        self.replicas.append(replica)
        return replica.start()

    def start_ready(self, *names: str, timeout: float = 45.0, **overrides: str) -> list[ReplicaProcess]:
        """Start several replicas at once and wait until every one is ready."""
        started = [self.start(name, **overrides) for name in names]
        for replica in started:
            replica.wait_ready(timeout)
        return started

    def logs(self) -> str:
        return "\n".join(f"--- {r.name} (port {r.port}) ---\n{r.log_tail()}" for r in self.replicas)

    def close(self) -> None:
        for replica in self.replicas:
            try:
                replica.stop()
            except Exception:  # noqa: BLE001 - make sure the others are stopped too
                replica.kill()
