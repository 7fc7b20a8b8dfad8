"""Opaque, authenticated paging cursors (API.md "Listing order").

A cursor holds a keyset position (the last id of a page) and a MAC over that position and
the query it belongs to (endpoint, subject, action, type, context or resource). The query
itself is not in the cursor: it is given again with the next request, so a cursor from
another query, an altered one or a forged one fails the MAC and is refused with 400.
The key is shared by every replica (AUTHZ_CURSOR_KEY, or derived from the backend-token
keys), so any replica continues a walk another one started.

The position is signed, not encrypted: it is an id the caller has just been shown.
"""

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from authz.domain.errors import Malformed

Position = str | int
T = TypeVar("T")
VERSION = b"\x01"
MAC_BYTES = 16  # 128 bits: forging one is as hard as guessing the key
MAX_CURSOR_CHARS = 1000
_DOMAIN = b"authz-cursor-v1\x00"


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing: its items, and the cursor of the next page (None on the last)."""

    items: list[T]
    next_cursor: str | None


class CursorCodec:
    """Encodes and checks cursors with one secret key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("a cursor key needs at least 16 bytes")
        self._key = key

    def encode(self, query: Sequence[object], position: Position) -> str:
        payload = VERSION + _json(position)
        mac = self._mac(query, payload)
        return _b64(payload) + "." + _b64(mac)

    def decode(self, query: Sequence[object], cursor: str, field: str = "cursor") -> Position:
        """The position of a cursor this server made for this very query; 400 (Malformed) otherwise."""
        refused = Malformed(
            f"{field} is not a cursor of this listing (altered, forged, or from another query); "
            "start again without it", field=field,
        )
        if not isinstance(cursor, str) or len(cursor) > MAX_CURSOR_CHARS or cursor.count(".") != 1:
            raise refused
        encoded_payload, encoded_mac = cursor.split(".")
        try:
            payload, mac = _unb64(encoded_payload), _unb64(encoded_mac)
        except (ValueError, binascii.Error):
            raise refused from None
        if not hmac.compare_digest(mac, self._mac(query, payload)):
            raise refused
        if payload[:1] != VERSION:
            raise refused
        try:
            position = json.loads(payload[1:])
        except (ValueError, UnicodeDecodeError):
            raise refused from None
        if isinstance(position, bool) or not isinstance(position, str | int):
            raise refused
        return position

    def _mac(self, query: Sequence[object], payload: bytes) -> bytes:
        # The query is serialized as a JSON list, so no choice of ids can make two queries collide.
        message = _DOMAIN + _json(list(query)) + b"\x00" + payload
        return hmac.new(self._key, message, hashlib.sha256).digest()[:MAC_BYTES]


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    """Strict: only the canonical unpadded url-safe form, so every changed character is a different cursor."""
    if not text or not text.isascii():
        raise ValueError("empty or non-ASCII")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(data) != text:
        raise ValueError("not canonical base64url")
    return data


def derive_key(secret: bytes, purpose: str) -> bytes:
    """A key for one purpose from a master secret (HMAC-SHA256 as a PRF with a label)."""
    return hmac.new(secret, b"authz key derivation\x00" + purpose.encode(), hashlib.sha256).digest()
