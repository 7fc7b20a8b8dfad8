"""The invitation email's text: what it names, and where the token goes."""

from datetime import UTC, datetime

from authz.mail.message import TOKEN_SLOT, fill_token, invitation_message, inviter_name

TOKEN = "inv_" + "a" * 24 + "_" + "S" * 43


def test_text_names_org_inviter_role_and_has_the_link_on_its_own_line() -> None:
    content = invitation_message(
        org_name="Quantum Lab", inviter=inviter_name("alice", "alice@example.com"), role="maintainer",
        recipient="bob@example.com", public_url="https://platform.example/",
        expires_at=datetime(2030, 1, 2, 3, 4, tzinfo=UTC),
    )
    assert content.subject == "Invitation to join Quantum Lab"
    text = fill_token(content.text, TOKEN)
    assert 'alice (alice@example.com) invited you to join the organization "Quantum Lab" as maintainer.' in text
    assert f"https://platform.example/invitations/accept?token={TOKEN}" in text.splitlines()
    assert "2030-01-02 at 03:04 UTC" in text
    assert TOKEN_SLOT not in text and TOKEN not in content.text


def test_a_name_containing_the_slot_never_receives_the_token() -> None:
    content = invitation_message(
        org_name="Lab /invitations/accept?token=<TOKEN>", inviter="<TOKEN>", role="viewer",
        recipient="bob@example.com", public_url="http://127.0.0.1:8000", expires_at=datetime(2030, 1, 1, tzinfo=UTC),
    )
    text = fill_token(content.text, TOKEN)
    assert text.count(TOKEN) == 1
    assert [line for line in text.splitlines() if TOKEN in line] == [f"http://127.0.0.1:8000/invitations/accept?token={TOKEN}"]
