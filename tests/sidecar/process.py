"""A real `authz sidecar` process following a real `authz serve` (tests/processes.py), and that upstream.

The fixtures `upstream` (a real `authz serve` on each database) and `feed_key` (the
sidecar's key) are imported by the test modules that use them.
"""

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.forked_cli import StartedProcess
from tests.processes import (
    ServerProcess,
    authz_env,
    create_service_key,
    free_port,
    start_authz,
    start_cli,
    stop_process,
    wait_for_port,
)

# The upstream's settings in these tests: a keep-alive on the change stream every half second.
UPSTREAM_ENV = {"AUTHZ_CHANGES_KEEPALIVE": "0.5", "AUTHZ_SYNC_POLL_INTERVAL": "0.2"}


@pytest.fixture
def upstream(tmp_path: Path, database_url: str) -> Iterator[ServerProcess]:
    server = start_authz(tmp_path / "upstream", {**UPSTREAM_ENV, "AUTHZ_DATABASE_URL": database_url})
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def feed_key(upstream: ServerProcess) -> str:
    return create_service_key(upstream, "changes:read", "check")[0]


@dataclass
class SidecarProcess:
    url: str
    port: int
    process: StartedProcess
    log_path: Path

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def readyz(self) -> dict[str, object]:
        body: dict[str, object] = httpx.get(self.url + "/readyz", timeout=2.0).json()
        return body

    def wait_ready(self, revision: int = 0, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the sidecar exited:\n{self.log_text()[-3000:]}")
            try:
                ready = self.readyz()
                reached = ready.get("revision", -1)
                if ready.get("status") != "not ready" and isinstance(reached, int) and reached >= revision:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"the sidecar did not reach revision {revision}:\n{self.log_text()[-3000:]}")

    def stop(self) -> None:
        stop_process(self.process)


def start_sidecar(tmp_path: Path, upstream: ServerProcess | str, key: str,
                  env: Mapping[str, str] | None = None, *, wait: bool = True) -> SidecarProcess:
    """`authz sidecar` on a free port, with the JWT settings of the tests and NO database setting."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    key_file = tmp_path / "sidecar.key"
    key_file.write_text(key + "\n", encoding="utf-8")
    values = authz_env(tmp_path, env)
    values["AUTHZ_DATABASE_URL"] = "postgresql+psycopg://nobody@127.0.0.1:1/none"  # proves it is never used
    url = upstream if isinstance(upstream, str) else upstream.url
    port = free_port()
    log_path = tmp_path / f"sidecar-{port}.log"
    process = start_cli(["sidecar", "--upstream", url, "--key-file", str(key_file), "--host", "127.0.0.1",
                         "--port", str(port)], values, cwd=tmp_path, log_path=log_path)
    sidecar = SidecarProcess(f"http://127.0.0.1:{port}", port, process, log_path)
    try:
        wait_for_port("127.0.0.1", port, process, 30.0, log_path)
        if wait:
            sidecar.wait_ready()
    except BaseException:
        sidecar.stop()
        raise
    return sidecar
