"""A real `authz serve` process, walked through as a newcomer would: org, resource, member, checks."""

import json

import httpx

from tests.processes import ServerProcess, add_member, wait_for_revision

BILLING = {"line1": "1 Qubit Way", "postal_code": "10115", "city": "Berlin", "country": "DE"}


def test_from_creating_an_org_to_a_check(authz_server: ServerProcess) -> None:
    token = authz_server.cli("dev-token", "--sub", "alice", "--email", "alice@example.com").stdout.strip()
    alice = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=authz_server.url, timeout=10) as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        created = http.post(
            "/v1/organizations", json={"name": "Quantum Lab", "billing_address": BILLING}, headers=alice
        )
        assert created.status_code == 201, created.text
        org_id = created.json()["id"]

        resource = http.post(
            "/v1/resources", json={"type": "algorithm", "id": "grover"}, headers={**alice, "X-Account-Context": org_id}
        )
        assert resource.status_code == 201
        assert resource.json()["context"] == org_id

        revision = add_member(authz_server, org_id, "bob", "viewer")
        key_output = authz_server.cli("service-key", "create", "e2e", "--scope", "check")
        assert key_output.returncode == 0, key_output.stderr
        key = key_output.stdout.strip()
        assert key.startswith("azk_")
        wait_for_revision(authz_server, revision + 1)

        sidecar = {"Authorization": f"Bearer {key}"}
        ask = {"resource": {"type": "algorithm", "id": "grover"}}
        bob_reads = http.post("/v1/check", json={**ask, "subject": "bob", "action": "read"}, headers=sidecar)
        bob_deletes = http.post("/v1/check", json={**ask, "subject": "bob", "action": "delete"}, headers=sidecar)
        alice_deletes = http.post("/v1/check?explain=true", json={**ask, "action": "delete"}, headers=alice)
        assert bob_reads.json()["allowed"] is True
        assert bob_deletes.json()["allowed"] is False
        assert alice_deletes.json()["explanation"]["role"] == "owner"
        assert bob_reads.json()["revision"] >= revision + 1

    log = authz_server.log_text()
    access = [json.loads(line) for line in log.splitlines() if '"authz.access"' in line]
    assert {"method": "POST", "route": "/v1/check", "status": 200} in [
        {k: entry[k] for k in ("method", "route", "status")} for entry in access
    ]
    assert token not in log and key not in log
