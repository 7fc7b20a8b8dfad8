"""RSA signing keys for tests, each made once per process: generating a 2048-bit key takes
50-150 ms of CPU, and the OIDC, token and fuzz tests needed one or more per test."""

import functools

from cryptography.hazmat.primitives.asymmetric import rsa


@functools.cache
def rsa_key(name: str) -> rsa.RSAPrivateKey:
    """The 2048-bit RSA key called `name`: the same key for the same name, another for another name."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)
