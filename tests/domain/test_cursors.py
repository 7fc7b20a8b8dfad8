"""Cursor keys: shared by replicas configured alike, different otherwise; positions round-trip."""

import pytest

from authz.bootstrap import cursor_codec
from authz.domain.cursors import CursorCodec
from authz.domain.errors import Malformed
from authz.secrets import KeyRing, SecretKeyError, new_key
from tests.conftest import make_settings

QUERY = ("list-resources", "alice", "read", "algorithm", "")


@pytest.mark.parametrize("position", ["a", "grover-2", "x" * 128, 0, 17, 2**40])
def test_positions_round_trip(position: str | int) -> None:
    codec = CursorCodec(b"0123456789abcdef")
    assert codec.decode(QUERY, codec.encode(QUERY, position)) == position


def test_replicas_with_the_same_backend_keys_accept_each_others_cursors() -> None:
    keys = new_key()
    settings = make_settings("sqlite://")
    one, two = cursor_codec(settings, KeyRing([keys])), cursor_codec(settings, KeyRing([keys]))
    assert two.decode(QUERY, one.encode(QUERY, "grover")) == "grover"
    other = cursor_codec(settings, KeyRing([new_key()]))
    with pytest.raises(Malformed):
        other.decode(QUERY, one.encode(QUERY, "grover"))


def test_a_configured_cursor_key_wins_and_must_be_long_enough() -> None:
    ring = KeyRing([new_key()])
    configured = cursor_codec(make_settings("sqlite://", cursor_key="k" * 32), ring)
    same = cursor_codec(make_settings("sqlite://", cursor_key="k" * 32), KeyRing([new_key()]))
    assert same.decode(QUERY, configured.encode(QUERY, "a")) == "a"
    with pytest.raises(SecretKeyError, match="AUTHZ_CURSOR_KEY"):
        cursor_codec(make_settings("sqlite://", cursor_key="short"), ring)


def test_the_cursor_does_not_hold_the_query() -> None:
    codec = CursorCodec(b"0123456789abcdef")
    cursor = codec.encode(("list-subjects", "read", "algorithm", "secret-project"), "bob")
    assert "secret" not in cursor and "c2VjcmV0" not in cursor
