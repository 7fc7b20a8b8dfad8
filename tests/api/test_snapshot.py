"""`GET /v1/snapshot` over HTTP: who may read it, what it holds, and no secret in it."""

import hashlib

import orjson
from fastapi.testclient import TestClient

from authz.domain.principal import cli_principal
from authz.engine import transfer
from authz.services.runtime import Runtime
from authz.services.service_keys import create_service_key
from authz_client.decisions import stream
from tests.conftest import add_member, auth, create_org, service_key


def test_only_a_service_key_with_changes_read_may_read_it(client: TestClient, runtime: Runtime) -> None:
    assert client.get("/v1/snapshot").status_code == 401
    for headers in (auth("alice"), service_key(runtime, "check"), service_key(runtime, "admin")):
        refused = client.get("/v1/snapshot", headers=headers)
        assert refused.status_code == 403, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
    bad = client.get("/v1/snapshot", params={"part": "everything"}, headers=service_key(runtime, "changes:read"))
    assert bad.status_code == 422 and "part" in bad.text


def test_it_is_the_decision_state_at_its_revision_without_secrets(client: TestClient, runtime: Runtime) -> None:
    headers = service_key(runtime, "changes:read")
    created = create_service_key(runtime, cli_principal(), "other", ["check"]).value
    org = create_org(client, "alice")
    add_member(runtime, org, "bob", "viewer")
    client.post("/v1/resources", json={"type": "algorithm", "id": "grover"}, headers=auth("alice", context=org))
    client.put("/v1/organizations/" + org + "/backend-tokens/ibm", json={"token": "qiskit-SECRET-1234"},
               headers=auth("alice"))
    response = client.get("/v1/snapshot", headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    assert int(response.headers["X-Authz-Revision"]) == runtime.replica.revision
    loaded = transfer.load(stream.lines_of([response.content]))
    assert loaded.revision == runtime.replica.revision
    assert loaded.index.check("bob", "read", "algorithm", "grover", None)
    assert not loaded.index.check("bob", "delete", "algorithm", "grover", None)
    assert loaded.index.list_resources("alice", "read", "algorithm", None) == ["grover"]
    assert loaded.policy == runtime.replica.snapshot.policy
    assert dict(loaded.service_keys) == dict(runtime.replica.snapshot.service_keys)
    secret = created[len("azk_") + 17:]  # azk_<16 hex>_<secret> (the secret may hold "_")
    assert hashlib.sha256(secret.encode()).hexdigest() in response.text  # hashes, to verify keys ...
    for leaked in (created, secret, "qiskit-SECRET-1234", "1234\""):
        assert leaked not in response.text  # ... but never a key or a backend token

    keys = client.get("/v1/snapshot", params={"part": "service_keys"}, headers=headers)
    revision, records = transfer.read_service_keys(stream.lines_of([keys.content]))
    assert revision == runtime.replica.revision and dict(records) == dict(loaded.service_keys)
    assert all(b"rules" not in line for line in keys.content.splitlines()[1:2])
    assert orjson.loads(keys.content.splitlines()[-1]) == {"end": revision}


def test_a_revision_this_replica_lacks_is_waited_for_then_503(client: TestClient, runtime: Runtime) -> None:
    headers = service_key(runtime, "changes:read")
    head = runtime.replica.revision
    ok = client.get("/v1/snapshot", params={"part": "service_keys", "min_revision": head}, headers=headers)
    assert ok.status_code == 200
    runtime.settings.min_revision_wait = 0.2
    late = client.get("/v1/snapshot", params={"part": "service_keys", "min_revision": head + 5}, headers=headers)
    assert late.status_code == 503, late.text
    assert late.headers["content-type"] == "application/problem+json"
