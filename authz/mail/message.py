"""The text of an invitation email, stored with a slot where the secret token goes.

The outbox keeps the message with `TOKEN_SLOT` in the acceptance link and the token
beside it only until delivery (see `authz.mail.outbox`), so the stored body itself is
never a secret and can be shown, logged or kept after the token is gone.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Final

TOKEN_SLOT: Final = "<TOKEN>"
ACCEPT_PATH: Final = "/invitations/accept?token="


@dataclass(frozen=True)
class MailContent:
    subject: str
    text: str


def accept_link(public_url: str, token: str = TOKEN_SLOT) -> str:
    return f"{public_url.rstrip('/')}{ACCEPT_PATH}{token}"


def inviter_name(user_id: str, email: str | None) -> str:
    return f"{user_id} ({email})" if email and email != user_id else user_id


def invitation_message(
    *, org_name: str, inviter: str, role: str, recipient: str, public_url: str, expires_at: datetime
) -> MailContent:
    """Plain text naming the org, the inviter and the role, with the link on a line of its own."""
    subject = f"Invitation to join {org_name}"
    text = "\n".join(
        [
            "Hello,",
            "",
            f"{inviter} invited you to join the organization \"{org_name}\" as {role}.",
            "",
            f"To accept, open this link while signed in with the email address {recipient}:",
            "",
            accept_link(public_url),
            "",
            f"The invitation expires on {expires_at:%Y-%m-%d at %H:%M} UTC and works only once.",
            "If you did not expect it, you can ignore this email.",
            "",
        ]
    )
    return MailContent(subject, text)


def fill_token(text: str, token: str) -> str:
    """Put `token` into the acceptance link: only on a line that is the link and nothing else.

    Org names and inviter names are on lines with spaces, so a name that happens to contain
    the slot is never filled (the token would reach the same recipient anyway).
    """
    suffix = ACCEPT_PATH + TOKEN_SLOT
    lines = text.split("\n")
    for number, line in enumerate(lines):
        if line.endswith(suffix) and not any(ch.isspace() for ch in line):
            lines[number] = line[: -len(TOKEN_SLOT)] + token
    return "\n".join(lines)
