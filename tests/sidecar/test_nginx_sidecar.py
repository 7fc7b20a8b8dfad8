"""nginx `auth_request` to an `authz sidecar` (not to the service), end to end.

The shipped example (examples/nginx/authz.conf) with AUTHZ_ADDR set to the sidecar: the
sidecar follows a real `authz serve` and decides every proxied request from its replica.
A membership written centrally opens the door through nginx once the feed brings it.
"""

import subprocess
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.conftest import BILLING, auth
from tests.e2e.test_nginx import EXAMPLE, _nginx_binary, _Upstream, main_config, render_config
from tests.processes import add_member, create_service_key, free_port, start_authz, stop_process, wait_for_port
from tests.sidecar.process import start_sidecar

pytestmark = pytest.mark.e2e


def test_nginx_forward_auth_through_a_sidecar(tmp_path: Path) -> None:
    nginx = _nginx_binary()
    server = start_authz(tmp_path / "authz", {"AUTHZ_CHANGES_KEEPALIVE": "0.5"})
    app = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    app.seen = []  # type: ignore[attr-defined]
    threading.Thread(target=app.serve_forever, daemon=True).start()
    sidecar = process = None
    try:
        with httpx.Client(base_url=server.url, timeout=10) as api:
            org = api.post("/v1/organizations", json={"name": "Lab", "billing_address": BILLING},
                           headers=auth("alice")).json()["id"]
            registered = api.post("/v1/resources", json={"type": "algorithm", "id": "grover"},
                                  headers=auth("alice", context=org))
            assert registered.status_code == 201
        sidecar = start_sidecar(tmp_path / "sidecar", server, create_service_key(server, "changes:read", "check")[0])
        prefix = tmp_path / "nginx"
        prefix.mkdir()
        port = free_port()
        site = prefix / "authz.conf"
        site.write_text(render_config(EXAMPLE, authz=f"127.0.0.1:{sidecar.port}",
                                      upstream=f"127.0.0.1:{app.server_address[1]}", listen=f"127.0.0.1:{port}"))
        conf = prefix / "nginx.conf"
        conf.write_text(main_config(prefix, site))
        with (prefix / "nginx.out").open("wb") as out:
            process = subprocess.Popen([nginx, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")],
                                       stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_for_port("127.0.0.1", port, process, 30, prefix / "nginx.out")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as proxy:
            allowed = proxy.get("/algorithms/grover", headers=auth("alice"))
            assert allowed.status_code == 200, allowed.text
            assert allowed.json()["subject"] == "alice" and allowed.json()["context"] == org
            assert proxy.get("/algorithms/grover", headers=auth("vic")).status_code == 403
            assert proxy.get("/algorithms/grover", headers={"Authorization": "Bearer nope"}).status_code == 401
            revision = add_member(server, org, "vic", "viewer")  # written centrally
            deadline = time.monotonic() + 10
            while (answer := proxy.get("/algorithms/grover", headers=auth("vic"))).status_code != 200:
                assert time.monotonic() < deadline, answer.text
                time.sleep(0.05)
            assert int(answer.json()["revision"]) >= revision
            assert proxy.delete("/algorithms/grover", headers=auth("vic")).status_code == 403
        seen = [(r["method"], r["subject"]) for r in app.seen]  # type: ignore[attr-defined]
        assert seen == [("GET", "alice"), ("GET", "vic")]
        assert "/v1/authorize" in sidecar.log_text()  # decided by the sidecar ...
        assert "/v1/authorize" not in server.log_text()  # ... never by the service
    finally:
        if process is not None:
            stop_process(process)
        app.shutdown()
        app.server_close()
        if sidecar is not None:
            sidecar.stop()
        server.stop()
