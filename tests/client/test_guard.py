"""The FastAPI guard protecting a small app (TestClient), decided by a real `authz serve` behind it."""

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Annotated

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from authz.client import AsyncAuthzClient, CheckResult, Retry
from authz.client.guard import install, path_param, require
from authz_client import LocalDecisions
from tests.app_client import AppClient
from tests.client.conftest import Org
from tests.conftest import auth
from tests.processes import ServerProcess, create_service_key, free_port

pytestmark = pytest.mark.e2e


def build_app(authz_url: str, **client_options: object) -> FastAPI:
    """A platform service as its authors would write it: one line per protected route."""
    authz = AsyncAuthzClient(authz_url, **client_options)  # type: ignore[arg-type]

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await authz.aclose()

    app = FastAPI(lifespan=lifespan)
    install(app, authz)

    @app.get("/algorithms/{id}", dependencies=[require("read", resource=("algorithm", path_param("id")))])
    def read_algorithm(id: str) -> dict[str, str]:
        return {"id": id}

    @app.delete("/algorithms/{id}", dependencies=[require("delete", resource=("algorithm", path_param("id")))])
    def delete_algorithm(id: str) -> dict[str, str]:
        return {"deleted": id}

    @app.post("/algorithms")
    def create_algorithm(decision: Annotated[CheckResult, require("create", resource="algorithm")]) -> dict[str, int]:
        return {"decided_at": decision.revision}

    @app.get("/organizations/{org}/jobs", dependencies=[require("read", resource="job", context=path_param("org"))])
    def list_jobs(org: str) -> list[str]:
        return []

    return app


@pytest.fixture
def service(server: ServerProcess) -> Iterator[TestClient]:
    with AppClient(build_app(server.url)) as client:
        yield client


def problem_of(response: object) -> dict[str, object]:
    assert response.headers["content-type"] == "application/problem+json", response.headers  # type: ignore[attr-defined]
    body: dict[str, object] = response.json()  # type: ignore[attr-defined]
    assert body["status"] == response.status_code  # type: ignore[attr-defined]
    return body


def test_allowed_callers_get_through(service: TestClient, org: Org) -> None:
    assert service.get(f"/algorithms/{org.algorithm}", headers=auth(org.viewer)).json() == {"id": org.algorithm}
    assert service.delete(f"/algorithms/{org.algorithm}", headers=auth(org.owner)).status_code == 200
    created = service.post("/algorithms", headers=auth(org.maintainer, context=org.id))
    assert created.status_code == 200
    assert created.json()["decided_at"] >= org.revision
    assert service.get(f"/organizations/{org.id}/jobs", headers=auth(org.viewer)).status_code == 200


def test_refused_callers_get_403_problem_json(service: TestClient, org: Org) -> None:
    for method, path, user, context in [
        ("DELETE", f"/algorithms/{org.algorithm}", org.viewer, None),
        ("DELETE", f"/algorithms/{org.algorithm}", org.maintainer, None),
        ("GET", f"/algorithms/{org.algorithm}", "mallory", None),
        ("POST", "/algorithms", org.viewer, org.id),            # X-Account-Context is forwarded
        ("GET", f"/organizations/{org.id}/jobs", "mallory", None),
    ]:
        response = service.request(method, path, headers=auth(user, context=context))
        assert response.status_code == 403, (method, path, user, response.text)
        assert "may not" in str(problem_of(response)["detail"])


def test_unauthenticated_callers_get_401_problem_json(service: TestClient, org: Org) -> None:
    for headers, detail in [
        ({}, "missing Authorization"),
        ({"Authorization": "Token abc"}, "Bearer <credential>"),
        ({"Authorization": "Bearer forged"}, "invalid token"),   # authz's own reason, forwarded
        (auth(org.owner, ttl=-120), "expired"),
    ]:
        response = service.delete(f"/algorithms/{org.algorithm}", headers=headers)
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert detail in str(problem_of(response)["detail"])


def test_invalid_ids_and_contexts_are_422_naming_the_field(service: TestClient, org: Org) -> None:
    bad_id = service.get("/algorithms/a:b", headers=auth(org.owner))
    assert bad_id.status_code == 422
    assert problem_of(bad_id)["errors"] == [{"field": "id", "message": "id is not a valid resource id"}]
    bad_context = service.post("/algorithms", headers=auth(org.owner, context="org_*"))
    assert bad_context.status_code == 422
    assert problem_of(bad_context)["errors"][0]["field"] == "X-Account-Context"  # type: ignore[index]
    bad_org = service.get("/organizations/not-an-org/jobs", headers=auth(org.owner))
    assert bad_org.status_code == 422
    assert problem_of(bad_org)["errors"][0]["field"] == "org"  # type: ignore[index]


def test_when_authz_cannot_be_asked_the_guard_fails_closed() -> None:
    app = build_app(f"http://127.0.0.1:{free_port()}", retry=Retry(attempts=2, backoff=0.0))
    with AppClient(app) as client:
        response = client.get("/algorithms/grover", headers=auth("alice"))
    assert response.status_code == 503
    assert "unavailable" in str(problem_of(response)["detail"])


def test_an_app_that_forgot_install_still_refuses(server: ServerProcess, org: Org) -> None:
    authz = AsyncAuthzClient(server.url)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await authz.aclose()

    app = FastAPI(lifespan=lifespan)

    @app.delete("/algorithms/{id}",
                dependencies=[require("delete", resource=("algorithm", path_param("id")), client=authz)])
    def delete_algorithm(id: str) -> None:
        raise AssertionError("must not run")

    with AppClient(app) as client:
        refused = client.delete(f"/algorithms/{org.algorithm}", headers=auth(org.viewer))
        anonymous = client.delete(f"/algorithms/{org.algorithm}")
    assert refused.status_code == 403
    assert anonymous.status_code == 401


def test_the_guard_decides_in_process_with_local_decisions(server: ServerProcess, org: Org) -> None:
    """The same guard over `LocalDecisions`: the app names the caller; no request to authz per check."""
    feed_key, revision = create_service_key(server, "changes:read")
    decisions = LocalDecisions(server.url, feed_key)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with decisions:  # the follower lives as long as the app
            yield

    app = FastAPI(lifespan=lifespan)
    install(app, decisions, subject=lambda request: request.headers.get("x-test-user"))  # the app's own sign-in

    @app.delete("/algorithms/{id}", dependencies=[require("delete", resource=("algorithm", path_param("id")))])
    def delete_algorithm(id: str) -> dict[str, str]:
        return {"deleted": id}

    @app.post("/algorithms")
    def create_algorithm(decision: Annotated[CheckResult, require("create", resource="algorithm")]) -> dict[str, int]:
        return {"decided_at": decision.revision}

    def caller(user: str, context: str | None = None) -> dict[str, str]:
        return {"X-Test-User": user, **({"X-Account-Context": context} if context else {})}

    with AppClient(app) as client:
        assert decisions.wait_for(revision, timeout=10)
        assert client.delete(f"/algorithms/{org.algorithm}", headers=caller(org.owner)).status_code == 200
        refused = client.delete(f"/algorithms/{org.algorithm}", headers=caller(org.viewer))
        assert refused.status_code == 403
        assert "may not" in str(problem_of(refused)["detail"])
        assert client.delete(f"/algorithms/{org.algorithm}").status_code == 401
        created = client.post("/algorithms", headers=caller(org.maintainer, org.id))
        assert created.status_code == 200 and created.json()["decided_at"] >= org.revision
        assert client.post("/algorithms", headers=caller(org.viewer, org.id)).status_code == 403
        assert client.post("/algorithms", headers=caller(org.maintainer)).status_code == 200  # personal account
        # A follower that has lost the upstream for longer than its bound: 503, never a guess.
        decisions.stop()
        decisions.max_staleness = 0.0
        stale = client.delete(f"/algorithms/{org.algorithm}", headers=caller(org.owner))
        assert stale.status_code == 503
        assert "stale" in str(problem_of(stale)["detail"])
