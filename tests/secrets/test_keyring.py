"""The key ring: newest key encrypts, every key decrypts, and nothing secret leaks through errors or reprs."""

import pytest
from cryptography.fernet import Fernet

from authz.secrets import KeyRing, SecretKeyError, UndecryptableSecret, new_key

PLAINTEXT = "ionq-" + "Wq3Er5Ty7Ui9" * 3


def test_encrypts_with_the_newest_key_and_decrypts_with_any() -> None:
    old, new = new_key(), new_key()
    written_before = KeyRing([old]).encrypt(PLAINTEXT)
    ring = KeyRing.parse(f"{new}, {old}", source="test")
    assert PLAINTEXT.encode() not in written_before
    assert ring.decrypt(written_before) == PLAINTEXT
    written_now = ring.encrypt(PLAINTEXT)
    assert Fernet(new).decrypt(written_now) == PLAINTEXT.encode()
    with pytest.raises(UndecryptableSecret):
        KeyRing([old]).decrypt(written_now)


def test_rotate_moves_a_value_to_the_newest_key() -> None:
    old, new = new_key(), new_key()
    rotated = KeyRing([new, old]).rotate(KeyRing([old]).encrypt(PLAINTEXT))
    assert KeyRing([new]).decrypt(rotated) == PLAINTEXT
    with pytest.raises(UndecryptableSecret):
        KeyRing([old]).decrypt(rotated)


def test_tampered_or_foreign_ciphertext_is_refused() -> None:
    ring = KeyRing([new_key()])
    ciphertext = bytearray(ring.encrypt(PLAINTEXT))
    ciphertext[-5] ^= 1
    with pytest.raises(UndecryptableSecret):
        ring.decrypt(bytes(ciphertext))
    with pytest.raises(UndecryptableSecret):
        ring.decrypt(KeyRing([new_key()]).encrypt(PLAINTEXT))


def test_key_lists_parse_commas_spaces_and_lines() -> None:
    a, b, c = new_key(), new_key(), new_key()
    ring = KeyRing.parse(f"  {a},{b}\n{c}\n", source="test")
    assert len(ring.key_ids) == 3 and ring.newest_key_id == KeyRing([a]).newest_key_id


def test_bad_keys_are_named_by_position_never_by_value() -> None:
    good = new_key()
    with pytest.raises(SecretKeyError) as caught:
        KeyRing.parse(f"{good},not-a-fernet-key-value", source="AUTHZ_SECRET_KEYS")
    message = str(caught.value)
    assert "key 2 of 2 in AUTHZ_SECRET_KEYS" in message and "authz secrets new-key" in message
    assert good not in message and "not-a-fernet-key-value" not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    with pytest.raises(SecretKeyError):
        KeyRing.parse(" , ", source="AUTHZ_SECRET_KEYS")


def test_repr_shows_no_key() -> None:
    key = new_key()
    ring = KeyRing([key])
    assert key not in repr(ring) and key not in str(ring)
    assert ring.newest_key_id in repr(ring)
