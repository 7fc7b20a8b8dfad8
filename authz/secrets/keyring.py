"""A ring of Fernet keys: new secrets are encrypted with the newest key, reads try every key.

Keeping older keys in the ring is what makes rotation safe: add a new key in front, run
`authz secrets rotate`, then drop the old key once every row has been re-encrypted.
Nothing here ever puts a key or a plaintext into an exception message or a repr.
"""

import hashlib
import hmac
import re
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

_SEPARATORS = re.compile(r"[\s,]+")


class SecretKeyError(Exception):
    """The key configuration is missing or invalid; start-up must stop (the message is safe to print)."""


class UndecryptableSecret(Exception):
    """A stored ciphertext cannot be decrypted with any key of the ring (or was tampered with)."""


def new_key() -> str:
    """A fresh random key in the form AUTHZ_SECRET_KEYS expects (url-safe base64 of 32 bytes)."""
    return Fernet.generate_key().decode("ascii")


def key_id(key: str) -> str:
    """A short, non-reversible name of a key for logs and audit entries (SHA-256 prefix)."""
    return hashlib.sha256(key.encode("ascii", "replace")).hexdigest()[:12]


class KeyRing:
    """Fernet keys, newest first."""

    def __init__(self, keys: Sequence[str], *, source: str = "the key list") -> None:
        if not keys:
            raise SecretKeyError(f"{source} holds no key; make one with `authz secrets new-key`")
        fernets = []
        for position, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key))
            except (ValueError, TypeError):
                raise SecretKeyError(
                    f"key {position} of {len(keys)} in {source} is not a valid Fernet key "
                    "(url-safe base64 of 32 bytes); make one with `authz secrets new-key`"
                ) from None
        self._ring = MultiFernet(fernets)
        self._newest = fernets[0]
        self._newest_material = keys[0].encode("ascii", "replace")  # only ever fed to `derive`
        self.key_ids: tuple[str, ...] = tuple(key_id(k) for k in keys)

    @classmethod
    def parse(cls, text: str, *, source: str) -> "KeyRing":
        """Keys separated by commas or whitespace (one per line in a key file), newest first."""
        return cls([k for k in _SEPARATORS.split(text) if k], source=source)

    def derive(self, purpose: str) -> bytes:
        """A 32-byte key for another purpose (paging cursors), derived from the newest key.

        Every replica has the same ring, so every replica derives the same key; a new
        newest key (rotation) derives a new one.
        """
        return hmac.new(self._newest_material, b"authz key derivation\x00" + purpose.encode(), hashlib.sha256).digest()

    @property
    def newest_key_id(self) -> str:
        return self.key_ids[0]

    def encrypt(self, plaintext: str) -> bytes:
        """Encrypted (and authenticated) with the newest key."""
        return self._newest.encrypt(plaintext.encode("utf-8"))

    def decrypt(self, ciphertext: bytes) -> str:
        try:
            return self._ring.decrypt(bytes(ciphertext)).decode("utf-8")
        except InvalidToken:
            raise UndecryptableSecret("no configured key decrypts this value") from None

    def rotate(self, ciphertext: bytes) -> bytes:
        """The same secret, re-encrypted with the newest key."""
        try:
            return self._ring.rotate(bytes(ciphertext))
        except InvalidToken:
            raise UndecryptableSecret("no configured key decrypts this value") from None

    def __repr__(self) -> str:
        return f"KeyRing(keys={len(self.key_ids)}, newest={self.newest_key_id})"
