"""Several real `authz serve` replicas on one PostgreSQL: following the changelog, and faults.

DESIGN.md invariants 3 and 4, end to end: every process is real, every change goes
through the HTTP API or the core, and the database is taken away through a proxy the
test owns (never by stopping the machine's PostgreSQL).
"""

import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from authz.domain import ids
from authz.domain.principal import cli_principal
from authz.services.runtime import Runtime
from authz.services.service_keys import create_service_key
from authz.store.tables import CasbinRule, Membership, Organization
from tests.conftest import BILLING, POLICY_DIR, add_member, auth
from tests.metrics import sample
from tests.replicas.cluster import Cluster, ReplicaProcess, wait_until
from tests.replicas.conftest import MAX_STALENESS, head_revision
from tests.replicas.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.postgres, pytest.mark.e2e]

Replicas = tuple[ReplicaProcess, ReplicaProcess, ReplicaProcess]
PROBLEM = "application/problem+json"


def create_org(replica: ReplicaProcess, owner: str, name: str) -> tuple[str, int]:
    response = replica.http.post("/v1/organizations", json={"name": name, "billing_address": BILLING},
                                 headers=auth(owner))
    assert response.status_code == 201, response.text
    return response.json()["id"], int(response.headers["X-Authz-Revision"])


def register(replica: ReplicaProcess, owner: str, org: str, resource_id: str) -> int:
    response = replica.http.post("/v1/resources", json={"type": "algorithm", "id": resource_id},
                                 headers=auth(owner, context=org))
    assert response.status_code == 201, response.text
    return int(response.headers["X-Authz-Revision"])


def seen_everywhere(replicas: list[ReplicaProcess], within: float, question: dict[str, Any], expected: bool) -> None:
    """Each replica gives `expected` to `question` before `within` seconds have passed."""
    for replica in replicas:
        def answers(r: ReplicaProcess = replica) -> bool:
            return r.allowed(**question) is expected

        wait_until(answers, within, what=f"{replica.name} to answer {expected} to {question}")


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    assert response.headers.get("Retry-After")
    assert response.json()["status"] == 503


# ---- following the changelog ---------------------------------------------------------------


def test_a_membership_change_on_one_replica_is_seen_on_the_others_within_one_second(
    replicas: Replicas, direct: Runtime
) -> None:
    a, b, c = replicas
    org, _ = create_org(a, "alice", "Follow Lab")
    add_member(direct, org, "bob", "viewer")  # a writer outside the replicas: they follow it too
    seen_everywhere([a, b, c], 1.0, {"user": "bob", "action": "read", "resource_type": "organization",
                                     "context": org}, True)

    promote = a.http.patch(f"/v1/organizations/{org}/members/bob", json={"role": "maintainer"}, headers=auth("alice"))
    assert promote.status_code == 200, promote.text
    seen_everywhere([b, c], 1.0, {"user": "bob", "action": "create", "resource_type": "algorithm",
                                  "context": org}, True)

    removed = a.http.delete(f"/v1/organizations/{org}/members/bob", headers=auth("alice"))
    assert removed.status_code == 204, removed.text
    seen_everywhere([b, c], 1.0, {"user": "bob", "action": "read", "resource_type": "organization",
                                  "context": org}, False)

    head = int(removed.headers["X-Authz-Revision"])
    for replica in (b, c):
        def caught_up(r: ReplicaProcess = replica) -> bool:
            return r.revision() >= head

        wait_until(caught_up, 1.0, what=f"{replica.name} at revision {head}")


def test_min_revision_gives_read_your_writes_across_replicas(replicas: Replicas) -> None:
    a, b, c = replicas
    org, _ = create_org(a, "carol", "RYW Lab")
    for n in range(10):
        revision = register(a, "carol", org, f"ryw-{n}")
        reader = (b, c)[n % 2]
        response = reader.check("carol", "read", "algorithm", resource_id=f"ryw-{n}", min_revision=revision)
        assert response.status_code == 200, response.text
        assert response.json()["allowed"] is True
        assert response.json()["revision"] >= revision

    # A check that arrives before the write waits for it, woken by the follower.
    with ThreadPoolExecutor(1) as pool:
        expected = b.revision() + 1
        waiting = pool.submit(b.check, "carol", "read", "algorithm", resource_id="ryw-late", min_revision=expected)
        time.sleep(0.2)
        written = register(a, "carol", org, "ryw-late")
        answer = waiting.result(timeout=10)
    assert written >= expected
    assert answer.status_code == 200, answer.text
    assert answer.json()["revision"] >= expected

    # A revision the replica cannot reach within AUTHZ_MIN_REVISION_WAIT: 503, retry later.
    assert_unavailable(c.check("carol", "read", "algorithm", resource_id="ryw-0", min_revision=10**9))

    # Without min_revision: an answer at once, at the revision the replica has, reported.
    plain = c.check("carol", "read", "algorithm", resource_id="ryw-0")
    assert plain.status_code == 200 and isinstance(plain.json()["revision"], int)


def test_invitations_are_rate_limited_in_the_database_whichever_replica_is_asked(
    replicas: Replicas, direct: Runtime
) -> None:
    """60 invitations into one org at once through three replicas: exactly the 50 of the limit are made."""
    org, _ = create_org(replicas[0], "rita", "Limited Lab")
    inviters = ["rita", "rolf", "rosa"]  # three owners: the org's limit is reached, not an inviter's
    for inviter in inviters[1:]:
        add_member(direct, org, inviter, "owner")

    def invite(n: int) -> httpx.Response:
        return replicas[n % 3].http.post(f"/v1/organizations/{org}/invitations", headers=auth(inviters[n % 3]),
                                         json={"email": f"guest{n}@example.com", "role": "viewer"})

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(invite, range(60)))
    statuses = sorted(response.status_code for response in answers)
    assert statuses == [201] * 50 + [429] * 10, statuses
    for response in answers:
        if response.status_code == 429:
            assert response.headers["content-type"].startswith(PROBLEM)
            assert 0 < int(response.headers["Retry-After"]) <= 24 * 3600
    for replica in replicas:  # and every replica goes on refusing
        late = replica.http.post(f"/v1/organizations/{org}/invitations", headers=auth("rita"),
                                 json={"email": "late@example.com", "role": "viewer"})
        assert late.status_code == 429, late.text


def test_an_archive_on_one_replica_is_deny_on_the_others_and_a_restore_brings_it_back(replicas: Replicas) -> None:
    a, b, c = replicas
    org, _ = create_org(a, "arne", "Archived Lab")
    register(a, "arne", org, "archived-algo")
    archived = a.http.delete(f"/v1/organizations/{org}", headers=auth("arne"))
    assert archived.status_code == 204, archived.text
    revision = int(archived.headers["X-Authz-Revision"])
    for replica in (b, c):
        response = replica.check("arne", "read", "algorithm", resource_id="archived-algo", min_revision=revision)
        assert response.status_code == 200 and response.json()["allowed"] is False, response.text
        contexts = replica.http.get("/v1/me", headers=auth("arne")).json()["contexts"]
        assert [context["id"] for context in contexts] == ["personal"]
    restored = c.http.post(f"/v1/organizations/{org}/restore", headers=auth("arne"))
    assert restored.status_code == 200, restored.text
    revision = int(restored.headers["X-Authz-Revision"])
    for replica in (a, b):
        response = replica.check("arne", "read", "algorithm", resource_id="archived-algo", min_revision=revision)
        assert response.status_code == 200 and response.json()["allowed"] is True, response.text


def test_a_late_replica_catches_up_to_the_same_revision_and_answers(
    cluster: Cluster, replicas: Replicas, direct: Runtime
) -> None:
    a, b, _ = replicas
    org, _ = create_org(a, "dave", "Late Lab")
    for n in range(5):
        register(a, "dave", org, f"late-{n}")
    share = a.http.put("/v1/resources/algorithm/late-1/members/erin", json={"role": "viewer"}, headers=auth("dave"))
    assert share.status_code == 200, share.text
    assert a.http.delete("/v1/resources/algorithm/late-4", headers=auth("dave", context=org)).status_code == 204
    add_member(direct, org, "frank", "maintainer")

    late = cluster.start("late").wait_ready()
    try:
        head = head_revision(direct)
        for replica in (late, b):
            def at_head(r: ReplicaProcess = replica) -> bool:
                return r.revision() == head

            wait_until(at_head, 2.0, what=f"{replica.name} at revision {head}")
        questions = [
            {"user": user, "action": action, "resource_type": "algorithm", "resource_id": f"late-{n}"}
            for user in ("dave", "erin", "frank", "nobody") for action in ("read", "delete") for n in range(5)
        ] + [
            {"user": user, "action": "create", "resource_type": "algorithm", "context": org}
            for user in ("dave", "erin", "frank")
        ]
        assert [late.allowed(**q) for q in questions] == [b.allowed(**q) for q in questions]
        listing = {"action": "read", "type": "algorithm", "context": org}
        assert (late.http.post("/v1/list-resources", json=listing, headers=auth("dave")).json()
                == b.http.post("/v1/list-resources", json=listing, headers=auth("dave")).json())

        # ... and then follows new changes like the others.
        revision = register(a, "dave", org, "late-after")
        answer = late.check("dave", "read", "algorithm", resource_id="late-after", min_revision=revision)
        assert answer.status_code == 200 and answer.json()["allowed"] is True
    finally:
        late.stop()


def test_a_policy_reload_on_one_replica_changes_forward_auth_on_the_others(
    cluster: Cluster, replicas: Replicas, direct: Runtime, tmp_path: Path
) -> None:
    """The routes are policy data: the others map the new path once they have the reload's revision,
    although their own AUTHZ_POLICY_DIR (the shipped policy) never had it."""
    a, b, _ = replicas
    policies = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, policies)
    admin_key = create_service_key(direct, cli_principal(), "routes-admin", ["admin"])
    admin = {"Authorization": f"Bearer {admin_key.value}"}
    editor = cluster.start("editor", policy_dir=str(policies)).wait_ready()
    reports = {**auth("grace"), "X-Original-Method": "GET", "X-Original-URI": "/reports/weekly"}
    try:
        for replica in (a, b):
            assert replica.http.get("/v1/authorize", headers=reports).status_code == 403
        routes = policies / "routes.yaml"
        shipped = routes.read_text()
        routes.write_text(shipped + "  GET /reports/{name}: {type: algorithm, action: read}\n")

        def reloaded() -> httpx.Response | None:
            response = editor.http.post("/v1/policy/reload", headers=admin)
            return None if response.status_code == 401 else response  # until the key's revision arrives

        response = wait_until(reloaded, 5.0, what="the editor to know the admin key")
        assert response.status_code == 200, response.text
        revision = response.json()["revision"]
        for replica in (a, b):
            def at_reload(r: ReplicaProcess = replica) -> bool:
                return r.revision() >= revision

            wait_until(at_reload, 2.0, what=f"{replica.name} at revision {revision}")
            answer = replica.http.get("/v1/authorize", headers=reports)
            assert answer.status_code == 200, answer.text
            assert answer.json()["route"] == "GET /reports/{name}" and answer.json()["subject"] == "grace"

        routes.write_text(shipped)  # the shipped routes again, for the tests after this one
        assert editor.http.post("/v1/policy/reload", headers=admin).status_code == 200
    finally:
        editor.stop()


# ---- faults --------------------------------------------------------------------------------


def test_sigkill_during_a_burst_of_writes_loses_no_acknowledged_write(
    cluster: Cluster, replicas: Replicas, direct: Runtime
) -> None:
    _, b, c = replicas
    victim = cluster.start("victim").wait_ready()
    acknowledged: list[tuple[str, int]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def writer(n: int) -> None:
        with httpx.Client(base_url=victim.url, timeout=5) as http:
            for i in range(1000):
                if stop.is_set():
                    return
                try:
                    response = http.post("/v1/organizations", headers=auth("kim"),
                                         json={"name": f"burst {n}-{i}", "billing_address": BILLING})
                except httpx.HTTPError:
                    return  # the replica is gone: this write was never acknowledged
                if response.status_code == 201:
                    with lock:
                        acknowledged.append((response.json()["id"], int(response.headers["X-Authz-Revision"])))

    threads = [threading.Thread(target=writer, args=(n,), daemon=True) for n in range(4)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: len(acknowledged) >= 25, 20, what="25 acknowledged writes")
        victim.kill()  # SIGKILL while the writers are still sending
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
        victim.stop()
    assert not any(t.is_alive() for t in threads)

    orgs = [org for org, _ in acknowledged]
    with direct.database.session() as session:
        stored = set(session.scalars(select(Organization.id).where(Organization.id.in_(orgs))))
        # Nothing half-written either: every org of the burst (acknowledged or not) has its owner.
        burst = set(session.scalars(select(Organization.id).where(Organization.created_by == "kim")))
        owners = set(session.scalars(select(Membership.org_id).where(Membership.user_id == "kim")))
        rules = set(session.scalars(select(CasbinRule.v2).where(
            CasbinRule.ptype == "g", CasbinRule.v0 == ids.subject_of("kim"), CasbinRule.v1 == "owner")))
    assert stored == set(orgs)
    assert burst <= owners and burst <= rules

    newest = max(revision for _, revision in acknowledged)
    checks = [{"action": "read", "resource": {"type": "organization"}, "context": org} for org in orgs]
    for replica in (b, c):
        response = replica.http.post("/v1/check/batch", json={"checks": checks, "min_revision": newest},
                                     headers=auth("kim"))
        assert response.status_code == 200, response.text
        assert all(result["allowed"] for result in response.json()["results"])
    print(f"\nSIGKILL: {len(acknowledged)} writes acknowledged, all stored and visible; "
          f"{len(burst) - len(stored)} more committed without an acknowledgement")


def test_database_outage_fresh_answers_then_fail_closed_then_recovery(
    replicas: Replicas, proxy: TcpProxy, direct: Runtime
) -> None:
    a, b, c = replicas
    org, _ = create_org(a, "gina", "Outage Lab")
    add_member(direct, org, "hank", "viewer")
    hank_reads: dict[str, Any] = {"user": "hank", "action": "read", "resource_type": "organization", "context": org}
    seen_everywhere([a, b, c], 1.0, hank_reads, True)
    before = head_revision(direct)

    proxy.cut()
    # While fresh: checks answer from memory; readyz stays 200 but says what is wrong.
    for replica in (a, b, c):
        assert replica.allowed(**hank_reads) is True
    for replica in (a, b, c):
        def degraded_report(r: ReplicaProcess = replica) -> dict[str, Any] | None:
            response = r.readyz()
            report: dict[str, Any] = response.json()
            return report if response.status_code == 200 and "reason" in report else None

        degraded = wait_until(degraded_report, MAX_STALENESS / 2,
                              what=f"{replica.name} to report the database unreachable")
        assert degraded["status"] == "degraded" and "database unreachable" in degraded["reason"]
    # Writes: 503 problem+json, nothing written.
    assert_unavailable(a.http.post("/v1/organizations", json={"name": "Half Written", "billing_address": BILLING},
                                   headers=auth("gina")))
    assert_unavailable(b.http.patch(f"/v1/organizations/{org}/members/hank", json={"role": "owner"},
                                    headers=auth("gina")))
    assert_unavailable(c.http.post("/v1/resources", json={"type": "algorithm", "id": "outage-alg"},
                                   headers=auth("gina", context=org)))
    assert "authz_database_up 0.0" in b.http.get("/metrics").text
    # Meanwhile hank is removed by a writer the replicas cannot hear.
    removed = direct_remove(direct, org, "hank")

    # Past AUTHZ_MAX_STALENESS: fail closed (a removed member must not keep access for ever).
    for replica in (a, b, c):
        def fails_closed(r: ReplicaProcess = replica) -> bool:
            return r.check(**hank_reads).status_code == 503

        wait_until(fails_closed, MAX_STALENESS + 4, what=f"{replica.name} to fail closed")
        assert_unavailable(replica.check(**hank_reads))
        ready = replica.readyz()
        assert ready.status_code == 503
        assert "database unreachable" in ready.json()["reason"] and "changelog not read" in ready.json()["reason"]
        assert ready.json()["staleness_seconds"] > MAX_STALENESS
    staleness = sample(b.http.get("/metrics").text, "authz_staleness_seconds")
    assert staleness > MAX_STALENESS

    proxy.restore()
    # Back on their own, no restart: caught up with what happened meanwhile.
    for replica in (a, b, c):
        def ready_again(r: ReplicaProcess = replica) -> bool:
            return r.readyz().json().get("status") == "ready"

        wait_until(ready_again, 10, what=f"{replica.name} to be ready again")
        assert replica.revision() == removed
        assert replica.allowed(**hank_reads) is False
    for replica in (a, b, c):  # the notification listeners reconnect too (with backoff)
        def listening(r: ReplicaProcess = replica) -> bool:
            return r.readyz().json()["notifications"] == "listening"

        wait_until(listening, 10, what=f"{replica.name} to listen again")
    with direct.database.session() as session:
        half_written = select(func.count()).select_from(Organization).where(Organization.name == "Half Written")
        assert session.scalar(half_written) == 0
        assert session.get(Organization, org) is not None
    assert removed == before + 1
    revision = register(a, "gina", org, "after-outage")
    for replica in (b, c):
        answer = replica.check("gina", "read", "algorithm", resource_id="after-outage", min_revision=revision)
        assert answer.status_code == 200 and answer.json()["allowed"] is True


def direct_remove(runtime: Runtime, org: str, user: str) -> int:
    """`user` leaves `org`, written by the core in this process (not through any replica)."""
    from authz.domain.principal import Principal
    from authz.services.members import remove_member

    revision = remove_member(runtime, Principal(kind="user", id=user), org, user).revision
    assert revision is not None
    return revision
