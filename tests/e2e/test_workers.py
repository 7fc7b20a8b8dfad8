"""`authz serve --workers 2`: one load, two forked workers that each follow the changelog."""

import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import BILLING, auth
from tests.processes import authz_env, free_port, start_cli, wait_for_port

pytestmark = pytest.mark.e2e


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_two_forked_workers_serve_and_follow_the_changelog(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    process = start_cli(["serve", "--port", str(port), "--workers", "2"], authz_env(tmp_path), cwd=tmp_path,
                        log_path=log)
    try:
        wait_for_port("127.0.0.1", port, process, 60, log)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while len(workers := _children(process.pid)) < 2 or httpx.get(url + "/readyz").status_code != 200:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
        assert len(workers) == 2
        assert log.read_text().count("forking 2 workers") == 1  # one load, by the supervisor
        with httpx.Client(base_url=url, timeout=10) as http:
            created = http.post("/v1/organizations", json={"name": "Lab", "billing_address": BILLING},
                                headers=auth("alice"))
            assert created.status_code == 201, created.text
            revision = int(created.headers["X-Authz-Revision"])
            # Whichever worker answers, with min_revision it has the write (the other follows the changelog).
            check = {"action": "delete", "resource": {"type": "algorithm"}, "context": created.json()["id"],
                     "min_revision": revision}
            for _ in range(20):
                answer = http.post("/v1/check", json=check, headers=auth("alice"))
                assert answer.json() == {"allowed": True, "revision": revision}, answer.text
            deadline = time.monotonic() + 10
            while {http.get("/readyz").json()["revision"] for _ in range(10)} != {revision}:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
        assert not any(_alive(pid) for pid in workers)  # no orphaned worker
    finally:
        if process.poll() is None:
            process.kill()


def test_workers_do_not_outlive_a_killed_supervisor(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    process = start_cli(["serve", "--port", str(port), "--workers", "2"], authz_env(tmp_path), cwd=tmp_path,
                        log_path=log)
    try:
        wait_for_port("127.0.0.1", port, process, 60, log)
        deadline = time.monotonic() + 30
        while len(workers := _children(process.pid)) < 2:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
    finally:
        process.kill()  # SIGKILL: no chance to stop them itself
        process.wait()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers):
        assert time.monotonic() < deadline, "a worker outlived its supervisor (an orphan keeps the port)"
        time.sleep(0.1)
