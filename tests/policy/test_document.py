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
