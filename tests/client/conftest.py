"""One real `authz serve` for the client and guard tests of this package, and ways to fill it."""

import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.conftest import BILLING, auth
from tests.processes import ServerProcess, add_member, start_authz, wait_for_revision


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # A min_revision the server has not reached waits 1 s before the 503 (2 s by default): a write
    # beside it arrives by the 0.2 s poll, and the retry test waits three times for one that never comes.
    process = start_authz(tmp_path_factory.mktemp("client-authz"), {"AUTHZ_MIN_REVISION_WAIT": "1"})
    try:
        yield process
    finally:
        process.stop()


@dataclass
class Org:
    """An organization of its own per test: owner, maintainer and viewer with unique names."""

    id: str
    owner: str
    maintainer: str
    viewer: str
    algorithm: str
    revision: int


@pytest.fixture
def org(server: ServerProcess) -> Org:
    tag = secrets.token_hex(3)
    owner, maintainer, viewer, algorithm = f"olivia-{tag}", f"max-{tag}", f"vic-{tag}", f"grover-{tag}"
    with httpx.Client(base_url=server.url, timeout=10) as api:
        created = api.post("/v1/organizations", json={"name": "Lab", "billing_address": BILLING}, headers=auth(owner))
        assert created.status_code == 201, created.text
        org_id = created.json()["id"]
        registered = api.post("/v1/resources", json={"type": "algorithm", "id": algorithm},
                              headers=auth(owner, context=org_id))
        assert registered.status_code == 201, registered.text
    add_member(server, org_id, maintainer, "maintainer")
    revision = add_member(server, org_id, viewer, "viewer")
    wait_for_revision(server, revision)  # written beside the server: wait until it has read it
    return Org(org_id, owner, maintainer, viewer, algorithm, revision)


def bearer(user: str) -> str:
    """The credential alone (what AuthzClient takes), not the header."""
    return auth(user)["Authorization"].removeprefix("Bearer ")
