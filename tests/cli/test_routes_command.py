"""`authz routes test METHOD PATH` and the route file in `authz policy validate`."""

import shutil
from pathlib import Path

from typer.testing import CliRunner

from authz.cli import app
from tests.conftest import POLICY_DIR

runner = CliRunner()


def test_routes_test_shows_what_a_request_maps_to() -> None:
    result = runner.invoke(app, ["routes", "test", "DELETE", "/algorithms/grover?force=1", "--dir", str(POLICY_DIR)])
    assert result.exit_code == 0, result.output
    assert "route:    DELETE /algorithms/{id}" in result.output
    assert "routes.yaml:" in result.output
    assert "resource: algorithm:grover" in result.output
    assert "action:   delete" in result.output
    assert "context:  the resource's own" in result.output

    create = runner.invoke(app, ["routes", "test", "POST", "/algorithms", "--dir", str(POLICY_DIR)])
    assert create.exit_code == 0, create.output
    assert "resource: algorithm (type-level)" in create.output
    assert "X-Account-Context" in create.output


def test_routes_test_says_when_forward_auth_denies_outright() -> None:
    unknown = runner.invoke(app, ["routes", "test", "GET", "/billing", "--dir", str(POLICY_DIR)])
    assert unknown.exit_code == 1
    assert "no route" in unknown.output and "denied (403)" in unknown.output
    traversal = runner.invoke(app, ["routes", "test", "GET", "/algorithms/../organizations", "--dir", str(POLICY_DIR)])
    assert traversal.exit_code == 1
    assert "traversal is refused" in traversal.output
    hostile = runner.invoke(app, ["routes", "test", "GET", "/algorithms/a:b", "--dir", str(POLICY_DIR)])
    assert hostile.exit_code == 1
    assert "not a valid resource id" in hostile.output


def test_policy_validate_checks_the_route_file_too(tmp_path: Path) -> None:
    ok = runner.invoke(app, ["policy", "validate", str(POLICY_DIR)])
    assert ok.exit_code == 0, ok.output
    assert "forward-auth routes" in ok.output

    broken = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, broken)
    routes = broken / "routes.yaml"
    text = routes.read_text()
    routes.write_text(text.replace("DELETE /algorithms/{id}:          {type: algorithm, id: id, action: delete}",
                                   "DELETE /algorithms/{id}:          {type: algorithm, id: id, action: erase}"))
    line = next(n for n, row in enumerate(routes.read_text().splitlines(), 1) if "action: erase" in row)
    result = runner.invoke(app, ["policy", "validate", str(broken)])
    assert result.exit_code == 1
    assert (
        f"{routes}:{line}: route 'DELETE /algorithms/{{id}}': type 'algorithm' has no action 'erase'" in result.output
    )
