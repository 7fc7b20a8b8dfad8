"""A policy document survives its JSON form (the database and the replicas' feed hold it)."""

from authz.policy.document import PolicyDocument
from authz.policy.loader import load_policy_dir
from tests.conftest import POLICY_DIR


def test_json_round_trip_keeps_everything_including_the_context_owner() -> None:
    document = load_policy_dir(POLICY_DIR)
    again = PolicyDocument.from_json(document.to_json())
    assert again == document and again.context_owner == "owner"


def test_a_document_stored_before_the_context_owner_was_named_reads_as_owner() -> None:
    stored = load_policy_dir(POLICY_DIR).to_json()
    del stored["context_owner"]
    assert PolicyDocument.from_json(stored).context_owner == "owner"


def test_the_routes_survive_the_json_form_and_map_requests_as_before() -> None:
    document = load_policy_dir(POLICY_DIR)
    again = PolicyDocument.from_json(document.to_json())
    assert again.routes == document.routes and len(again.routes) == len(document.routes) > 0
    for method, path in (("DELETE", "/algorithms/grover"), ("HEAD", "/algorithms"), ("GET", "/organizations/o1/jobs")):
        assert again.routes.match(method, path) == document.routes.match(method, path) is not None


def test_a_document_stored_before_routes_were_policy_has_none() -> None:
    stored = load_policy_dir(POLICY_DIR).to_json()
    del stored["routes"]
    routes = PolicyDocument.from_json(stored).routes
    assert routes.source is None and routes.match("GET", "/algorithms") is None
