"""Encryption at rest of backend tokens: a ring of Fernet keys, newest first, and where it comes from."""

from authz.secrets.keyring import KeyRing, SecretKeyError, UndecryptableSecret, new_key
from authz.secrets.source import default_key_file, load_key_ring

__all__ = ["KeyRing", "SecretKeyError", "UndecryptableSecret", "default_key_file", "load_key_ring", "new_key"]
