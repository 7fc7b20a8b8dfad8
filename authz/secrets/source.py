"""Where the key ring comes from: AUTHZ_SECRET_KEYS, a key file, or (development only) a generated file.

Production must be given its keys: starting without them would either lose every token on
restart or silently write a key to disk, so it stops with a message saying what to set.
"""

import logging
import os
import secrets
import stat
from pathlib import Path

from sqlalchemy.engine import make_url

from authz.secrets.keyring import KeyRing, SecretKeyError, new_key
from authz.settings import Settings

log = logging.getLogger("authz.secrets")

DEV_KEY_SUFFIX = ".secret.key"
NON_FILE_DEFAULT = Path("authz" + DEV_KEY_SUFFIX)
PRODUCTION_MISSING = (
    "AUTHZ_ENV=production needs the backend-token encryption keys: set AUTHZ_SECRET_KEYS "
    "(comma-separated, newest first) or AUTHZ_SECRET_KEY_FILE (a file holding them); "
    "make a key with `authz secrets new-key`"
)


def default_key_file(database_url: str) -> Path:
    """Beside a SQLite database file (`authz.db` -> `authz.secret.key`), else in the working directory."""
    url = make_url(database_url)
    database = url.database
    if url.get_backend_name() == "sqlite" and database and database != ":memory:" and not database.startswith("file:"):
        return Path(database).with_suffix(DEV_KEY_SUFFIX)
    return NON_FILE_DEFAULT


def load_key_ring(settings: Settings) -> KeyRing:
    """The configured keys; in development, a key generated once into a 0600 file."""
    if settings.secret_keys is not None and settings.secret_keys.get_secret_value().strip():
        return KeyRing.parse(settings.secret_keys.get_secret_value(), source="AUTHZ_SECRET_KEYS")
    configured = settings.secret_key_file
    if configured is not None and configured.exists():
        return _read_key_file(configured)
    if settings.is_production:
        if configured is not None:
            raise SecretKeyError(f"AUTHZ_SECRET_KEY_FILE {configured} does not exist; " + PRODUCTION_MISSING)
        raise SecretKeyError(PRODUCTION_MISSING)
    path = configured or default_key_file(settings.database_url)
    if _create_key_file(path):
        log.warning(
            "no AUTHZ_SECRET_KEYS configured: generated a development key for backend tokens into %s "
            "(mode 0600); keep it with the database, and set AUTHZ_SECRET_KEYS in production", path,
        )
    else:
        log.warning("no AUTHZ_SECRET_KEYS configured: backend tokens use the development key in %s", path)
    return _read_key_file(path)


def _read_key_file(path: Path) -> KeyRing:
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretKeyError(f"cannot read the key file {path}: {type(exc).__name__}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("the key file %s is accessible to other users; make it mode 0600", path)
    return KeyRing.parse(text, source=str(path))


def _create_key_file(path: Path) -> bool:
    """Write a new key to `path` atomically with mode 0600; False when the file already exists.

    The key is written to a private temporary file and hard-linked into place, so two
    processes starting at once agree on one key and no reader ever sees a half-written file.
    """
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as file:
            os.fchmod(file.fileno(), 0o600)
            file.write(new_key() + "\n")
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False
        return True
    finally:
        temporary.unlink(missing_ok=True)
