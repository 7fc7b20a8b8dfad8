"""The fixed keys that verify user tokens, and the algorithms each one may verify.

A key verifies only its own algorithm family: an RSA key RS*/PS*, an EC key the one ES*
of its curve, an Ed25519/Ed448 key EdDSA, a shared secret HS256. A token whose header
names anything else is refused before any key is used (PyJWT would otherwise try to use
an RSA key as an EC key and raise InvalidKeyError instead of a verification failure).
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from cryptography.x509 import load_pem_x509_certificate

RSA_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
MIN_SECRET_BYTES = 32  # RFC 7518 §3.2: an HS256 key at least as long as the hash


class KeyUnusable(ValueError):
    """A configured key that cannot verify anything; the message says why (never the key)."""


@dataclass(frozen=True)
class VerificationKey:
    key: Any  # a cryptography public key, or the HS256 secret
    algorithms: tuple[str, ...]


def load_public_key(path: Path) -> VerificationKey:
    """The PEM public key (or certificate) at `path`, with the algorithms of its type."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise KeyUnusable(f"{path} cannot be read ({exc.strerror or type(exc).__name__})") from None
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            key: Any = load_pem_x509_certificate(data).public_key()
        else:
            key = load_pem_public_key(data)
    except ValueError:
        raise KeyUnusable(f"{path} is not a PEM public key or certificate") from None
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise KeyUnusable(f"{path} is an RSA key of {key.key_size} bits; at least 2048 are needed")
        return VerificationKey(key, RSA_ALGORITHMS)
    if isinstance(key, ec.EllipticCurvePublicKey):
        algorithm = EC_ALGORITHMS.get(key.curve.name)
        if algorithm is None:
            raise KeyUnusable(f"{path} is an EC key on {key.curve.name}; P-256, P-384 or P-521 are supported")
        return VerificationKey(key, (algorithm,))
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return VerificationKey(key, ("EdDSA",))
    raise KeyUnusable(f"{path} holds a {type(key).__name__}; RSA, EC or Ed25519 public keys are supported")


def shared_secret(secret: str, *, production: bool = False) -> VerificationKey:
    """The HS256 secret. An empty one verifies tokens anyone can forge; in production a short one too."""
    if not secret.strip():
        raise KeyUnusable("it is empty; set a random secret (e.g. `python -c 'import secrets; "
                          "print(secrets.token_urlsafe(32))'`) or unset it")
    if production and len(secret.encode()) < MIN_SECRET_BYTES:
        raise KeyUnusable(f"it is shorter than {MIN_SECRET_BYTES} bytes, too short for production")
    return VerificationKey(secret, ("HS256",))
