"""`authz sidecar` against a real `authz serve`, on SQLite and PostgreSQL.

The sidecar has no database (its AUTHZ_DATABASE_URL points at nothing): everything it
knows comes from the upstream's snapshot and change feed. Over a random history of writes
made through the central service, each of its decisions, listings and revisions must
equal the central service's at the same revision; `min_revision` gives read-your-writes
through it; it survives the upstream going away and coming back, failing closed only
past AUTHZ_MAX_STALENESS.
"""

import random
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import BILLING, ONE_DATABASE, POLICY_DIR, auth
from tests.processes import ServerProcess, add_member, create_service_key, start_authz
from tests.sidecar.process import UPSTREAM_ENV, SidecarProcess, feed_key, start_sidecar, upstream

# the sidecar has no database; the upstream's feed and snapshot are tested on both in tests/api
pytestmark = [pytest.mark.e2e, ONE_DATABASE]
__all__ = ["feed_key", "upstream"]  # fixtures (tests/sidecar/process.py)
USERS = ["ann", "ben", "cat", "dan"]
ROLES = ["viewer", "maintainer", "owner"]
ACTIONS = ["read", "update", "delete", "share", "create"]
TYPES = ["algorithm", "job"]


@pytest.fixture
def sidecar(tmp_path: Path, upstream: ServerProcess, feed_key: str) -> Iterator[SidecarProcess]:
    process = start_sidecar(tmp_path / "sidecar", upstream, feed_key, {"AUTHZ_MIN_REVISION_WAIT": "3"})
    try:
        yield process
    finally:
        process.stop()


def _written(response: httpx.Response) -> int:
    assert response.status_code in (200, 201, 204), response.text
    return int(response.headers["X-Authz-Revision"])


class History:
    """Random writes through the central service; what exists, to pick plausible next writes."""

    def __init__(self, api: httpx.Client, seed: int) -> None:
        self.api = api
        self.rng = random.Random(seed)
        self.orgs: dict[str, str] = {}  # org id → owner
        self.resources: dict[tuple[str, str], str] = {}  # (type, id) → the user who may manage it
        self.count = 0

    def step(self) -> int:
        rng = self.rng
        choice = rng.random()
        if not self.orgs or choice < 0.15:
            owner = rng.choice(USERS)
            created = self.api.post("/v1/organizations", json={"name": "Lab", "billing_address": BILLING},
                                    headers=auth(owner))
            self.orgs[created.json()["id"]] = owner
            return _written(created)
        if choice < 0.45 or not self.resources:
            self.count += 1
            kind = rng.choice(TYPES)
            org = rng.choice([*self.orgs, None])
            user = self.orgs[org] if org else rng.choice(USERS)
            response = self.api.post("/v1/resources", json={"type": kind, "id": f"r{self.count}"},
                                     headers=auth(user, context=org or "personal"))
            self.resources[(kind, f"r{self.count}")] = user
            return _written(response)
        (kind, rid), manager = rng.choice(list(self.resources.items()))
        if choice < 0.75:
            target, role = rng.choice(USERS), rng.choice(ROLES)
            return _written(self.api.put(f"/v1/resources/{kind}/{rid}/members/{target}", json={"role": role},
                                         headers=auth(manager)))
        if choice < 0.88:
            target = rng.choice(USERS)
            response = self.api.delete(f"/v1/resources/{kind}/{rid}/members/{target}", headers=auth(manager))
            if response.status_code == 404:
                return self.step()
            return _written(response)
        del self.resources[(kind, rid)]
        return _written(self.api.delete(f"/v1/resources/{kind}/{rid}", headers=auth(manager)))

    def questions(self, n: int) -> list[dict[str, Any]]:
        known = [rid for _, rid in self.resources] + ["nope"]
        return [
            {"subject": self.rng.choice(USERS), "action": self.rng.choice(ACTIONS),
             "resource": {"type": self.rng.choice(TYPES), "id": self.rng.choice(known)}}
            if self.rng.random() < 0.8 else
            {"subject": self.rng.choice(USERS), "action": "create", "resource": {"type": "algorithm"},
             "context": self.rng.choice([*self.orgs, "personal"])}
            for _ in range(n)
        ]


def _compare(central: httpx.Client, local: httpx.Client, key: str, history: History, revision: int) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    batch = {"checks": history.questions(40), "min_revision": revision}
    expected = central.post("/v1/check/batch", json=batch, headers=headers)
    got = local.post("/v1/check/batch", json=batch, headers=headers)
    assert got.status_code == expected.status_code == 200, got.text
    assert got.json() == expected.json()  # the same answers at the same revision
    assert got.json()["revision"] == revision
    for user in USERS:
        for kind in TYPES:
            listing = {"subject": user, "action": "read", "type": kind, "min_revision": revision}
            expected = central.post("/v1/list-resources", json=listing, headers=headers)
            got = local.post("/v1/list-resources", json=listing, headers=headers)
            assert got.status_code == 200, got.text
            assert got.json()["resources"] == expected.json()["resources"]
            assert got.json()["revision"] == expected.json()["revision"]


def test_decisions_equal_the_central_services_over_a_random_history(
        upstream: ServerProcess, sidecar: SidecarProcess, feed_key: str) -> None:
    with httpx.Client(base_url=upstream.url, timeout=10) as central, \
            httpx.Client(base_url=sidecar.url, timeout=10) as local:
        history = History(central, seed=17)
        for step in range(60):
            revision = history.step()
            if step % 3 == 0:
                _compare(central, local, feed_key, history, revision)
        # A membership written behind the service's back (straight into the database): the feed brings it.
        org = next(iter(history.orgs))
        revision = add_member(upstream, org, "eve", "maintainer")
        _compare(central, local, feed_key, history, revision)
        check = {"action": "create", "resource": {"type": "algorithm"}, "context": org, "min_revision": revision}
        answer = local.post("/v1/check", json=check, headers=auth("eve")).json()
        assert answer == {"allowed": True, "revision": revision}
        # The same answer by AuthZEN, listing subjects, and explain.
        (kind, rid), _ = next(iter(history.resources.items()))
        evaluation = {"subject": {"type": "user", "id": "eve"}, "action": {"name": "read"},
                      "resource": {"type": kind, "id": rid}}
        headers = {"Authorization": f"Bearer {feed_key}"}
        assert local.post("/access/v1/evaluation", json=evaluation, headers=headers).json() == \
            central.post("/access/v1/evaluation", json=evaluation, headers=headers).json()
        subjects = {"action": "read", "resource": {"type": kind, "id": rid}, "min_revision": revision}
        assert local.post("/v1/list-subjects", json=subjects, headers=headers).json() == \
            central.post("/v1/list-subjects", json=subjects, headers=headers).json()
        explained = {"subject": "eve", "action": "read", "resource": {"type": kind, "id": rid}}
        assert local.post("/v1/check?explain=true", json=explained, headers=headers).json() == \
            central.post("/v1/check?explain=true", json=explained, headers=headers).json()


def test_service_keys_follow_the_feed_and_writes_go_upstream(
        upstream: ServerProcess, sidecar: SidecarProcess) -> None:
    key, revision = create_service_key(upstream, "check")
    body = {"subject": "ann", "action": "read", "resource": {"type": "algorithm", "id": "x"}, "min_revision": revision}
    sidecar.wait_ready(revision)  # (the key is checked before min_revision is waited for, as upstream)
    with httpx.Client(base_url=sidecar.url, timeout=10) as local:
        allowed = local.post("/v1/check", json=body, headers={"Authorization": f"Bearer {key}"})
        assert allowed.status_code == 200, allowed.text  # a key created after the snapshot works
        # This key lacks changes:read: the sidecar would not start with it, nor may it read the upstream's snapshot.
        assert httpx.get(upstream.url + "/v1/snapshot", headers={"Authorization": f"Bearer {key}"}).status_code == 403
        key_id = key.split("_")[1]
        revoked = upstream.cli("service-key", "revoke", key_id)
        assert revoked.returncode == 0, revoked.stderr
        deadline = time.monotonic() + 10
        while local.post("/v1/check", json=body, headers={"Authorization": f"Bearer {key}"}).status_code != 401:
            assert time.monotonic() < deadline, "a revoked key still works at the sidecar"
            time.sleep(0.05)
        # A well-formed key nobody created: 401 like the service's (after a catch-up with the upstream).
        unknown = {"Authorization": "Bearer azk_" + "0" * 16 + "_" + "A" * 43}
        assert local.post("/v1/check", json=body, headers=unknown).status_code == 401
        # Writes, secrets and the console are not the sidecar's: 404 naming the upstream.
        for method, path in [("POST", "/v1/organizations"), ("GET", "/v1/changes"), ("GET", "/v1/snapshot"),
                             ("POST", "/v1/backend-tokens/resolve"), ("GET", "/")]:
            response = local.request(method, path, headers=auth("ann"))
            assert response.status_code == 404, (method, path)
            assert upstream.url in response.json()["detail"]


def test_min_revision_reads_your_writes_through_the_sidecar(upstream: ServerProcess, sidecar: SidecarProcess) -> None:
    with httpx.Client(base_url=upstream.url, timeout=10) as central, \
            httpx.Client(base_url=sidecar.url, timeout=10) as local:
        org = central.post("/v1/organizations", json={"name": "Lab", "billing_address": BILLING}, headers=auth("ann"))
        for n in range(15):
            revision = _written(central.post("/v1/resources", json={"type": "algorithm", "id": f"a{n}"},
                                             headers=auth("ann", context=org.json()["id"])))
            shared = _written(central.put(f"/v1/resources/algorithm/a{n}/members/ben", json={"role": "viewer"},
                                          headers=auth("ann")))
            assert shared > revision
            # Asked at once, with the revision of the write: never an answer from before it.
            check = {"action": "read", "resource": {"type": "algorithm", "id": f"a{n}"}, "min_revision": shared}
            answer = local.post("/v1/check", json=check, headers=auth("ben"))
            assert answer.json() == {"allowed": True, "revision": shared}, answer.text
        # A revision that never comes: bounded wait (AUTHZ_MIN_REVISION_WAIT=3 here), then 503.
        started = time.monotonic()
        late = local.post("/v1/check", json={**check, "min_revision": shared + 1000}, headers=auth("ben"))
        assert late.status_code == 503
        assert 2.5 < time.monotonic() - started < 8


def test_the_upstream_killed_and_restarted(tmp_path: Path, upstream: ServerProcess, feed_key: str) -> None:
    sidecar = start_sidecar(tmp_path / "sidecar", upstream, feed_key,
                            {"AUTHZ_MAX_STALENESS": "4", "AUTHZ_UPSTREAM_MAX_BACKOFF": "0.5"})
    try:
        with httpx.Client(base_url=upstream.url, timeout=10) as central:
            created = central.post("/v1/organizations", json={"name": "Lab", "billing_address": BILLING},
                                   headers=auth("ann"))
        org = created.json()["id"]
        check = {"action": "delete", "resource": {"type": "algorithm"}, "context": org}
        with httpx.Client(base_url=sidecar.url, timeout=10) as local:
            first = local.post("/v1/check", json={**check, "min_revision": _written(created)}, headers=auth("ann"))
            assert first.json()["allowed"] is True
            upstream.process.kill()  # no goodbye
            upstream.process.wait()
            # Within the bound it goes on answering from what it has, and says it is degraded.
            time.sleep(1.0)
            assert local.post("/v1/check", json=check, headers=auth("ann")).status_code == 200
            assert local.get("/readyz").json()["status"] == "degraded"
            # A write lands in the database while the upstream is away.
            revision = add_member(upstream, org, "ben", "owner")
            time.sleep(4.0)
            stale = local.post("/v1/check", json=check, headers=auth("ann"))
            assert stale.status_code == 503, stale.text  # past AUTHZ_MAX_STALENESS: fail closed
            assert local.get("/readyz").status_code == 503
            # The upstream back on its port: the sidecar catches up by itself, no restart.
            restarted = start_authz(upstream.workdir, {**UPSTREAM_ENV, "AUTHZ_DATABASE_URL": upstream.database_url},
                                    port=upstream.port)
            try:
                answer = local.post("/v1/check", json={**check, "min_revision": revision}, headers=auth("ben"))
                deadline = time.monotonic() + 15
                while answer.status_code != 200 and time.monotonic() < deadline:
                    time.sleep(0.1)
                    answer = local.post("/v1/check", json={**check, "min_revision": revision}, headers=auth("ben"))
                assert answer.json() == {"allowed": True, "revision": revision}, answer.text
                assert local.get("/readyz").json()["status"] == "ready"
            finally:
                restarted.stop()
        assert sidecar.process.poll() is None
    finally:
        sidecar.stop()


def test_forward_auth_maps_paths_with_the_upstreams_routes_without_a_route_file_of_its_own(
    tmp_path: Path, database_url: str
) -> None:
    """The routes come with the policy in the snapshot and the feed: a reload upstream that adds a route
    changes the sidecar's mapping at that revision, though its AUTHZ_POLICY_DIR is an empty directory."""
    policies = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, policies)
    upstream = start_authz(tmp_path / "upstream", {**UPSTREAM_ENV, "AUTHZ_DATABASE_URL": database_url,
                                                   "AUTHZ_POLICY_DIR": str(policies)})
    nothing = tmp_path / "no-policy"
    nothing.mkdir()
    sidecar = None
    try:
        admin = {"Authorization": f"Bearer {create_service_key(upstream, 'admin')[0]}"}
        feed_key = create_service_key(upstream, "changes:read", "check")[0]
        sidecar = start_sidecar(tmp_path / "sidecar", upstream, feed_key, {"AUTHZ_POLICY_DIR": str(nothing)})
        requests = [("GET", "/reports/weekly"), ("POST", "/algorithms"), ("DELETE", "/algorithms/grover"),
                    ("GET", "/algorithms/../organizations")]
        with httpx.Client(base_url=upstream.url, timeout=10) as central, \
                httpx.Client(base_url=sidecar.url, timeout=10) as local:
            def answers(client: httpx.Client) -> list[tuple[int, Any]]:
                found = []
                for method, uri in requests:
                    response = client.get("/v1/authorize", headers={**auth("vic"), "X-Original-Method": method,
                                                                    "X-Original-URI": uri})
                    body = response.json()
                    found.append((response.status_code, body.get("route", body.get("detail"))))
                return found

            sidecar.wait_ready(upstream_revision(central))
            before = answers(local)
            assert before == answers(central)
            assert before[0][0] == 403 and before[1] == (200, "POST /algorithms")

            routes = policies / "routes.yaml"
            routes.write_text(routes.read_text() + "  GET /reports/{name}: {type: algorithm, action: read}\n")
            reloaded = central.post("/v1/policy/reload", headers=admin)
            assert reloaded.status_code == 200, reloaded.text
            sidecar.wait_ready(reloaded.json()["revision"])
            after = answers(local)
            assert after == answers(central)
            assert after[0] == (200, "GET /reports/{name}")
    finally:
        if sidecar is not None:
            sidecar.stop()
        upstream.stop()


def upstream_revision(client: httpx.Client) -> int:
    return int(client.get("/readyz").json()["revision"])
