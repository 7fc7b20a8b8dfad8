"""Decisions from memory: the compiled index of the Casbin rules, with no dependency beyond the standard library.

The server answers every check with this index, and `authz_client` can embed the same
one in an application's process; there is one implementation, checked against pycasbin
by the server's oracle test (tests/engine/test_oracle.py).
"""
