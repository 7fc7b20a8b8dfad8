"""The forward-auth route file: validation with file and line, and strict matching of concrete requests."""

import shutil
from pathlib import Path

import pytest

from authz.domain.errors import Invalid
from authz.policy.loader import load_policy_dir
from authz.policy.route_table import RouteTable, validated_id
from authz.policy.routes import load_routes
from authz.policy.yaml_nodes import PolicyInvalid
from tests.conftest import POLICY_DIR

DOCUMENT = load_policy_dir(POLICY_DIR)


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    target = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, target)
    return target


def table(directory: Path, body: str) -> RouteTable:
    (directory / "routes.yaml").write_text(body)
    return load_routes(directory, DOCUMENT)


def errors(directory: Path, body: str) -> list[tuple[str, int, str]]:
    with pytest.raises(PolicyInvalid) as caught:
        table(directory, body)
    return [(Path(e.file).name, e.line, e.reason) for e in caught.value.errors]


def test_the_shipped_route_file_is_valid_and_maps_content_routes() -> None:
    routes = load_routes(POLICY_DIR, DOCUMENT)
    assert routes.source is not None and routes.source.endswith("routes.yaml")
    found = routes.match("DELETE", "/algorithms/grover")
    assert found is not None
    assert (found.resource_type, found.resource_id, found.action) == ("algorithm", "grover", "delete")
    create = routes.match("POST", "/algorithms")
    assert create is not None
    assert (create.resource_type, create.resource_id, create.action) == ("algorithm", None, "create")
    assert routes.match("GET", "/no/such/thing") is None


def test_each_mistake_is_reported_with_file_and_line(policy_dir: Path) -> None:
    body = """routes:
  GET /algorithms/{id}: {type: algorithm, id: id, action: read}
  GET /qubits/{id}: {type: qubit, id: id, action: read}
  PUT /algorithms/{id}: {type: algorithm, id: id, action: fly}
  GET /algorithms/{name}: {type: algorithm, id: name, action: read}
  FETCH /algorithms: {type: algorithm, action: read}
  GET algorithms: {type: algorithm, action: read}
  GET /algorithms/{id}/../x: {type: algorithm, id: id, action: read}
  GET /a/{id}x: {type: algorithm, action: read}
  GET /b/{id}/{id}: {type: algorithm, id: id, action: read}
  GET /c/{x}: {type: algorithm, id: y, action: read}
  GET /orgs/{org}: {type: organization, id: org, action: read}
  GET /d/{x}: {type: algorithm, id: x, context: x, action: read}
  GET /e: {type: algorithm}
  GET /f: {type: algorithm, action: read, owner: me}
  GET /g?x=1: {type: algorithm, action: read}
  GET /h: {type: algorithm, id: {id: 1}, action: read}
"""
    found = errors(policy_dir, body)
    reasons = {line: reason for _, line, reason in found}
    assert {name for name, _, _ in found} == {"routes.yaml"}
    assert "unknown object type 'qubit'" in reasons[3]
    assert "has no action 'fly'" in reasons[4]
    assert "matches the same requests as 'GET /algorithms/{id}' (line 2)" in reasons[5]
    assert "METHOD /path" in reasons[6]
    assert "METHOD /path" in reasons[7] or "must start with /" in reasons[7]
    assert ". or .. segment" in reasons[8]
    assert "a parameter must be a whole segment" in reasons[9]
    assert "uses parameter {id} twice" in reasons[10]
    assert "'y' is not one" in reasons[11]
    assert "not a content type" in reasons[12]
    assert "not both" in reasons[13]
    assert "needs `action`" in reasons[14]
    assert "unknown key 'owner'" in reasons[15]
    assert "may not contain" in reasons[16]
    assert "must be a string" in reasons[17]
    assert sorted(reasons) == list(range(3, 18))


def test_yaml_syntax_errors_and_wrong_shapes_name_the_line(policy_dir: Path) -> None:
    assert errors(policy_dir, "routes:\n  GET /a: {type: algorithm\n")[0][:2] == ("routes.yaml", 3)
    assert errors(policy_dir, "routes:\n  - GET /a\n")[0][1] == 2
    assert "unknown section 'paths'" in errors(policy_dir, "paths: {}\n")[0][2]
    duplicate = errors(policy_dir, "routes:\n  GET /a: {type: algorithm, action: read}\n"
                                   "  GET /a: {type: algorithm, action: update}\n")
    assert duplicate[0][1] == 3 and "duplicate" in duplicate[0][2]


def test_no_route_file_means_no_routes(policy_dir: Path) -> None:
    (policy_dir / "routes.yaml").unlink()
    routes = load_routes(policy_dir, DOCUMENT)
    assert routes.source is None and len(routes) == 0
    assert routes.match("GET", "/algorithms") is None


def test_literal_segments_win_over_parameters_and_head_follows_get(policy_dir: Path) -> None:
    routes = table(policy_dir, """routes:
  GET /jobs/{id}: {type: job, id: id, action: read}
  GET /jobs/mine: {type: job, action: read}
  POST /jobs/{id}/cancel: {type: job, id: id, action: execute}
""")
    mine = routes.match("GET", "/jobs/mine")
    assert mine is not None and mine.resource_id is None
    other = routes.match("HEAD", "/jobs/j-1")
    assert other is not None and (other.resource_id, other.action) == ("j-1", "read")
    assert routes.match("POST", "/jobs/j-1") is None
    assert routes.match("DELETE", "/jobs/j-1") is None
    cancel = routes.match("post", "/jobs/j-1/cancel")
    assert cancel is not None and cancel.action == "execute"


def test_query_strings_and_fragments_do_not_confuse_the_matcher() -> None:
    routes = load_routes(POLICY_DIR, DOCUMENT)
    for uri in ["/algorithms/grover?id=other", "/algorithms/grover?x=/../../organizations", "/algorithms/grover#x",
                "/algorithms/grover?", "http://example.com/algorithms/grover?a=b"]:
        found = routes.match("GET", uri)
        assert found is not None and found.resource_id == "grover", uri


@pytest.mark.parametrize("uri", [
    "/algorithms/../organizations",
    "/algorithms/grover/..",
    "/algorithms/./grover",
    "/algorithms/%2e%2e/x",
    "/algorithms/%2E./x",
    "/algorithms/a%2Fb",
    "/algorithms/a%2fb",
    "/algorithms/a%5Cb",
    "/algorithms//grover",
    "/algorithms/grover/",
    "/algorithms/%ff",
    "/algorithms/a%00",
    "algorithms/grover",
    "/" + "a" * 5000,
])
def test_ambiguous_paths_are_refused_before_matching(uri: str) -> None:
    with pytest.raises(Invalid) as caught:
        load_routes(POLICY_DIR, DOCUMENT).match("GET", uri)
    assert caught.value.field == "path"


@pytest.mark.parametrize("hostile", ["*", "a:b", "user:alice", "a%20b", "-x", "x" * 129, "%E2%80%AE", "a%3Fb"])
def test_hostile_ids_are_refused_by_the_id_check(hostile: str) -> None:
    found = load_routes(POLICY_DIR, DOCUMENT).match("GET", f"/algorithms/{hostile}")
    assert found is not None
    with pytest.raises(Invalid) as caught:
        validated_id(found)
    assert caught.value.field == "path.id"


def test_percent_escapes_of_plain_characters_are_decoded() -> None:
    found = load_routes(POLICY_DIR, DOCUMENT).match("GET", "/%61lgorithms/gro%76er")
    assert found is not None and validated_id(found).resource_id == "grover"


def test_a_context_parameter_must_be_an_organization_id() -> None:
    routes = load_routes(POLICY_DIR, DOCUMENT)
    good = routes.match("GET", "/organizations/org_" + "a" * 24 + "/jobs")
    assert good is not None and validated_id(good).context == "org_" + "a" * 24
    bad = routes.match("GET", "/organizations/user:alice/jobs")
    assert bad is not None
    with pytest.raises(Invalid) as caught:
        validated_id(bad)
    assert caught.value.field == "path.org"
