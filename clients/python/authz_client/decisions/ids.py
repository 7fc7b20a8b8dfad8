"""How the decision index spells subjects, contexts and resource scopes in Casbin rules.

The server's identifier checks (`authz.domain.ids`) import these from here, so the index
the server runs and the one embedded in a client agree on every name by construction.
"""

from typing import Final

ALL_DOMAINS: Final = "*"  # the policy's own domain: rules written once for every context (the only wildcard)
USER_SUBJECT_PREFIX: Final = "user:"
# The subject that stands for the holder of a personal account in their own context: the
# policy's rule `g, account-holder, <context owner role>, *` gives it a role, and the Casbin
# matcher asks for it when r.dom == r.sub. No role ("-"), user ("user:") or scope can be it.
ACCOUNT_HOLDER: Final = "account-holder"

Rule = tuple[str, ...]
"""A Casbin rule as stored: (ptype, v0, v1, ...)."""


def subject_of(user: str) -> str:
    """The Casbin subject of a user: prefixed, so a user id can never be a role name."""
    return USER_SUBJECT_PREFIX + user


def user_of(subject: str) -> str:
    return subject.removeprefix(USER_SUBJECT_PREFIX)


def personal_context(user: str) -> str:
    """A user's personal account context; also its Casbin domain. Org ids never look like this."""
    return USER_SUBJECT_PREFIX + user


def is_personal_context(context: str) -> bool:
    return context.startswith(USER_SUBJECT_PREFIX)


def resource_scope(resource_type: str, resource: str) -> str:
    """The Casbin domain of one resource's own roles."""
    return f"{resource_type}:{resource}"
