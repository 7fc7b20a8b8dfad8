"""The client package on its own: installed into a fresh virtualenv with nothing but httpx, against a real server.

`pip install ./clients/python` brings httpx and its dependencies only; the script below runs
there in isolated mode (`-I`: not this checkout, not this venv), proves that no server
dependency is importable, and asks the package-scoped `authz serve` with both clients and
with `LocalDecisions` (the embedded mode: the decision index follows the feed in the script).
pip's cache makes the install take a few seconds.
"""

import json
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.client.conftest import Org, bearer
from tests.conftest import ROOT
from tests.processes import ServerProcess, create_service_key, wait_for_revision

pytestmark = pytest.mark.e2e

SCRIPT = r'''
import asyncio, importlib.util, json, sys
args = json.loads(sys.argv[1])
SERVER_SIDE = ("fastapi", "starlette", "sqlalchemy", "pydantic", "casbin", "authz", "api", "tests")
out = {"not_installed": [m for m in SERVER_SIDE if importlib.util.find_spec(m) is None]}

import authz_client
from authz_client import AsyncAuthzClient, AuthzClient, Backoff, Unauthenticated
out["module"] = authz_client.__file__

from authz_client.guard import require   # imports without FastAPI; using it says which extra brings it
try:
    require("read", "algorithm")
except ModuleNotFoundError as exc:
    out["guard_without_fastapi"] = str(exc)

with AuthzClient(args["url"], args["viewer"]) as client:
    read = client.check("read", ("algorithm", args["algorithm"]), min_revision=args["revision"])
    delete = client.check("delete", ("algorithm", args["algorithm"]))
    out["sync"] = [read.allowed, delete.allowed, read.revision >= args["revision"]]
    out["pages"] = list(client.iter_resources("read", "algorithm", context=args["org"], page_size=1))
with AuthzClient(args["url"], "not-a-token") as client:
    try:
        client.check("read", "algorithm:x")
    except Unauthenticated as exc:
        out["unauthenticated"] = exc.status

async def main():
    async with AsyncAuthzClient(args["url"], args["viewer"]) as client:
        out["async"] = (await client.check("read", ("algorithm", args["algorithm"]))).allowed
    async with AsyncAuthzClient(args["url"], args["feed"]) as client:
        seen = []
        async for change in client.follow_changes(args["revision"] - 2, backoff=Backoff(first=0.05)):
            seen.append(change.revision)
            if len(seen) == 2:
                break
        out["feed"] = seen

asyncio.run(main())

from authz_client import LocalDecisions   # the embedded mode: the server's decision index, read with json alone
out["orjson_absent"] = importlib.util.find_spec("orjson") is None
with LocalDecisions(args["url"], args["feed"]) as local:
    algorithm = ("algorithm", args["algorithm"])
    out["local"] = [local.check("read", algorithm, subject=args["viewer_id"], min_revision=args["revision"]),
                    local.check("delete", algorithm, subject=args["viewer_id"]), local.revision >= args["revision"]]
print(json.dumps(out))
'''


@pytest.fixture(scope="module")
def client_only_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv holding `pip install ./clients/python` and nothing else (built from a copy,
    so the checkout gets no build directory)."""
    base = tmp_path_factory.mktemp("client-only")
    source = base / "authz-client"
    shutil.copytree(ROOT / "clients" / "python", source,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    env_dir = base / "venv"
    venv.create(env_dir, with_pip=False)  # this venv's pip installs into it (`pip --python`): seconds faster
    python = env_dir / "bin" / "python"
    # The wheel is built by this venv's setuptools (the build backend, in the test extra) instead of a
    # fresh isolated build environment; then installed into the new venv with its dependencies.
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    built = subprocess.run([*pip, "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--wheel-dir",
                            str(base / "dist"), str(source)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    wheels = [str(wheel) for wheel in (base / "dist").iterdir()]
    installed = subprocess.run([*pip, "--python", str(python), "install", "--quiet", *wheels],
                               capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr[-3000:]
    return python


def test_the_client_package_works_with_httpx_alone(
        client_only_python: Path, server: ServerProcess, org: Org, tmp_path: Path) -> None:
    feed_key, revision = create_service_key(server, "changes:read")
    wait_for_revision(server, revision)
    args = {"url": server.url, "viewer": bearer(org.viewer), "viewer_id": org.viewer, "feed": feed_key, "org": org.id,
            "algorithm": org.algorithm, "revision": revision}
    ran = subprocess.run([str(client_only_python), "-I", "-c", SCRIPT, json.dumps(args)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr[-3000:]
    out = json.loads(ran.stdout)

    assert out["not_installed"] == ["fastapi", "starlette", "sqlalchemy", "pydantic", "casbin", "authz", "api", "tests"]
    assert out["module"].startswith(str(client_only_python.parent.parent))  # the installed copy, not the checkout
    assert "pip install 'authz-client[fastapi]'" in out["guard_without_fastapi"]
    assert out["sync"] == [True, False, True]
    assert out["pages"] == [org.algorithm]
    assert out["unauthenticated"] == 401
    assert out["async"] is True
    assert out["feed"] == [revision - 1, revision]
    assert out["orjson_absent"] is True
    assert out["local"] == [True, False, True]
