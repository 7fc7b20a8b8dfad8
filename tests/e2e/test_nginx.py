"""A real nginx with `auth_request` to a real `authz serve`, in front of a small upstream app.

It runs the shipped example (examples/nginx/authz.conf) with only its three addresses
filled in, and proves through it that allowed requests reach the upstream (with the
subject and context authz decided), and that denied, unauthenticated, unknown, traversing
and spoofed requests never do.
"""

import http.client
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from string import Template

import httpx
import pytest

from tests.conftest import BILLING, ROOT, auth
from tests.processes import (
    ServerProcess,
    add_member,
    free_port,
    start_authz,
    stop_process,
    wait_for_port,
    wait_for_revision,
)

pytestmark = pytest.mark.e2e
EXAMPLE = ROOT / "examples" / "nginx" / "authz.conf"


def _nginx_binary() -> str:
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)
    if found is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("nginx is required in CI (.ci/run installs Debian's nginx package) but is not installed")
        pytest.skip("nginx is not installed (apt-get install nginx, or run .ci/run); CI runs this test")
    return found


class _Upstream(BaseHTTPRequestHandler):
    """Answers every request with what it received, and remembers it."""

    seen: list[dict[str, str]]

    def _answer(self) -> None:
        record = {
            "method": self.command,
            "path": self.path,
            "subject": self.headers.get("X-Authz-Subject", ""),
            "context": self.headers.get("X-Authz-Context", ""),
            "revision": self.headers.get("X-Authz-Revision", ""),
        }
        self.server.seen.append(record)  # type: ignore[attr-defined]
        body = json.dumps(record).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

    def log_message(self, *_: object) -> None:  # quiet
        pass


@dataclass
class Stack:
    proxy: str
    authz: ServerProcess
    seen: list[dict[str, str]]
    org: str
    error_log: Path

    def raw(self, method: str, target: str, headers: dict[str, str]) -> tuple[int, dict[str, str], str]:
        """A request with its target exactly as written (no client-side normalization of ../ or %2F)."""
        host, port = self.proxy.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        try:
            conn.request(method, target, headers=headers)
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read().decode()
        finally:
            conn.close()


def render_config(template: Path, *, authz: str, upstream: str, listen: str) -> str:
    """The example with its placeholders filled in, like `envsubst` with only these three names."""
    return Template(template.read_text()).safe_substitute(AUTHZ_ADDR=authz, UPSTREAM_ADDR=upstream, LISTEN_ADDR=listen)


def main_config(prefix: Path, include: Path) -> str:
    """A whole nginx.conf of its own: foreground, every file under `prefix`, the example included."""
    user = "user root;\n" if os.geteuid() == 0 else ""  # tmp dirs are private to this user
    kinds = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    temp = "\n".join(f"    {kind}_temp_path {prefix / kind};" for kind in kinds)
    return f"""daemon off;
{user}worker_processes 1;
pid {prefix / 'nginx.pid'};
error_log {prefix / 'error.log'} info;
events {{ worker_connections 64; }}
http {{
    access_log {prefix / 'access.log'};
{temp}
    include {include};
}}
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    nginx = _nginx_binary()
    base = tmp_path_factory.mktemp("nginx-e2e")
    server = start_authz(base / "authz")
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    upstream.seen = []  # type: ignore[attr-defined]
    upstream_thread = threading.Thread(target=upstream.serve_forever, daemon=True)
    upstream_thread.start()
    process = None
    try:
        with httpx.Client(base_url=server.url, timeout=10) as api:
            created = api.post("/v1/organizations", json={"name": "Lab", "billing_address": BILLING},
                               headers=auth("alice"))
            assert created.status_code == 201, created.text
            org = created.json()["id"]
            registered = api.post("/v1/resources", json={"type": "algorithm", "id": "grover"},
                                  headers=auth("alice", context=org))
            assert registered.status_code == 201, registered.text
        wait_for_revision(server, add_member(server, org, "vic", "viewer"))

        prefix = base / "nginx"
        prefix.mkdir()
        port = free_port()
        site = prefix / "authz.conf"
        site.write_text(render_config(EXAMPLE, authz=f"127.0.0.1:{server.port}",
                                      upstream=f"127.0.0.1:{upstream.server_address[1]}", listen=f"127.0.0.1:{port}"))
        conf = prefix / "nginx.conf"
        conf.write_text(main_config(prefix, site))
        checked = subprocess.run([nginx, "-t", "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")],
                                 capture_output=True, text=True, timeout=30, check=False)
        assert checked.returncode == 0, checked.stderr
        log = prefix / "nginx.out"
        with log.open("wb") as out:
            process = subprocess.Popen([nginx, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")],
                                       stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_for_port("127.0.0.1", port, process, 30, log)
        yield Stack(f"http://127.0.0.1:{port}", server, upstream.seen, org, prefix / "error.log")  # type: ignore[attr-defined]
    finally:
        if process is not None:
            stop_process(process)
        upstream.shutdown()
        upstream.server_close()
        server.stop()


@pytest.fixture
def proxy(stack: Stack) -> Iterator[httpx.Client]:
    stack.seen.clear()
    with httpx.Client(base_url=stack.proxy, timeout=10) as client:
        yield client


def test_allowed_request_reaches_the_upstream_with_subject_and_context(stack: Stack, proxy: httpx.Client) -> None:
    response = proxy.get("/algorithms/grover?view=full", headers=auth("vic"))
    assert response.status_code == 200, response.text
    assert response.json()["subject"] == "vic"
    assert response.json()["context"] == stack.org
    assert int(response.json()["revision"]) >= 1
    owner = proxy.delete("/algorithms/grover", headers=auth("alice"))
    assert owner.status_code == 200
    assert [(r["method"], r["path"], r["subject"]) for r in stack.seen] == [
        ("GET", "/algorithms/grover?view=full", "vic"), ("DELETE", "/algorithms/grover", "alice")]


def test_denied_request_is_403_problem_json_and_never_reaches_the_upstream(stack: Stack, proxy: httpx.Client) -> None:
    for method, path, user, context in [
        ("DELETE", "/algorithms/grover", "vic", None),        # a viewer may not delete
        ("GET", "/algorithms/grover", "mallory", None),       # not a member at all
        ("POST", "/algorithms", "vic", stack.org),            # creating needs maintainer
        ("GET", "/billing/export", "alice", None),            # no route: denied, whoever asks
    ]:
        response = proxy.request(method, path, headers=auth(user, context=context))
        assert response.status_code == 403, (method, path, user, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["status"] == 403
    assert stack.seen == []
    assert "no route in the route file for GET /billing/export" in stack.authz.log_text()


def test_unauthenticated_request_is_401_with_a_bearer_challenge(stack: Stack, proxy: httpx.Client) -> None:
    for headers in [{}, {"Authorization": "Bearer not-a-token"}, auth("alice", ttl=-120)]:
        response = proxy.get("/algorithms/grover", headers=headers)
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["title"] == "Not authenticated"
    assert stack.seen == []


def test_type_level_create_is_decided_in_the_account_context(stack: Stack, proxy: httpx.Client) -> None:
    assert proxy.post("/algorithms", headers=auth("alice", context=stack.org)).status_code == 200
    assert proxy.post("/algorithms", headers=auth("vic")).status_code == 200  # vic's personal account
    assert proxy.post("/algorithms", headers=auth("vic", context=stack.org)).status_code == 403
    assert [r["context"] for r in stack.seen] == [stack.org, "user:vic"]


def test_traversal_encoded_slashes_and_hostile_ids_are_refused(stack: Stack) -> None:
    stack.seen.clear()
    viewer = auth("vic")
    for target, expected in [
        ("/algorithms/../organizations", 403),          # authz refuses dot segments, never resolves them
        ("/algorithms/grover/../../billing", 403),
        ("/algorithms/x%2F..%2F..%2Fbilling", 403),     # encoded slashes
        ("/algorithms/%2e%2e", 403),                    # encoded dots
        ("/algorithms/*", 403),                         # not a valid resource id
        ("/algorithms/gro%20ver", 403),
        ("//algorithms/grover", 403),                   # empty segment
        ("/algorithms/grover%00", 400),                 # nginx itself refuses a NUL
    ]:
        status, _, body = stack.raw("GET", target, viewer)
        assert status == expected, (target, status, body)
    assert stack.seen == []


def test_a_client_cannot_describe_its_request_differently_or_forge_the_subject(
    stack: Stack, proxy: httpx.Client
) -> None:
    spoofed = {**auth("vic"), "X-Original-Method": "GET", "X-Original-URI": "/algorithms/grover"}
    assert proxy.delete("/algorithms/grover", headers=spoofed).status_code == 403
    traefik_style = {**auth("vic"), "X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/algorithms/grover"}
    assert proxy.delete("/algorithms/grover", headers=traefik_style).status_code == 403
    forged = proxy.get("/algorithms/grover", headers={**auth("vic"), "X-Authz-Subject": "alice",
                                                      "X-Authz-Context": "org_" + "0" * 24})
    assert forged.status_code == 200
    assert forged.json()["subject"] == "vic"
    assert forged.json()["context"] == stack.org
    assert [r["method"] for r in stack.seen] == ["GET"]
