"""The bench's API callers: user tokens for the dataset's people, and member writes through the API.

Adding a member is what API.md offers: an owner invites by email, and the invitee accepts
with the token from the email. The bench reads that token from the outbox row the
invitation wrote (the mail sender is off in bench servers), as the invitee's inbox would.
"""

import re
import time
from dataclasses import dataclass, field

import httpx
import jwt
from sqlalchemy import create_engine, text

from bench.server import JWT_SECRET

_TOKEN_IN_MAIL = re.compile(r"token=([A-Za-z0-9_.~-]+)")


def user_headers(user: str) -> dict[str, str]:
    claims = {"sub": user, "email": f"{user}@example.com", "email_verified": True, "exp": int(time.time()) + 3600}
    return {"Authorization": "Bearer " + jwt.encode(claims, JWT_SECRET, algorithm="HS256")}


@dataclass
class MemberWriter:
    """Removes and re-adds members through the HTTP API, timing each call (milliseconds)."""

    base_url: str
    database_url: str
    timings: dict[str, list[float]] = field(default_factory=lambda: {"remove": [], "invite": [], "accept": []})

    def __post_init__(self) -> None:
        self.http = httpx.Client(base_url=self.base_url, timeout=30.0)
        self.engine = create_engine(self.database_url)

    def close(self) -> None:
        self.http.close()
        self.engine.dispose()

    def remove(self, owner: str, org: str, user: str) -> None:
        started = time.perf_counter()
        response = self.http.delete(f"/v1/organizations/{org}/members/{user}", headers=user_headers(owner))
        self._done("remove", started, response, 204)

    def add(self, owner: str, org: str, user: str, role: str = "viewer") -> None:
        started = time.perf_counter()
        response = self.http.post(f"/v1/organizations/{org}/invitations", headers=user_headers(owner),
                                  json={"email": f"{user}@example.com", "role": role})
        self._done("invite", started, response, 201)
        token = self._mailed_token(response.json()["id"])
        started = time.perf_counter()
        response = self.http.post("/v1/invitations/accept", headers=user_headers(user), json={"token": token})
        self._done("accept", started, response, 200)

    def _done(self, kind: str, started: float, response: httpx.Response, expected: int) -> None:
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != expected:
            raise RuntimeError(f"{kind}: {response.status_code} {response.text[:300]}")
        self.timings[kind].append(elapsed)

    def _mailed_token(self, invitation_id: str) -> str:
        """The token of the pending mail: its own column (the body keeps a slot), else the link."""
        with self.engine.connect() as connection:
            try:
                row = connection.execute(
                    text("SELECT token, body_text FROM outbox WHERE invitation_id = :id ORDER BY id DESC"),
                    {"id": invitation_id},
                ).first()
            except Exception:  # noqa: BLE001 - an outbox without a token column keeps it in the text
                connection.rollback()
                row = connection.execute(
                    text("SELECT NULL, body_text FROM outbox WHERE invitation_id = :id ORDER BY id DESC"),
                    {"id": invitation_id},
                ).first()
        if row is None:
            raise RuntimeError(f"no outbox mail for invitation {invitation_id}")
        if row[0]:
            return str(row[0])
        found = _TOKEN_IN_MAIL.search(row[1])
        if found is None:
            raise RuntimeError("the invitation mail carries no token")
        return found.group(1)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")
