"""Settings that cannot work stop the process before it listens, with one line naming the setting.

Every path setting is resolved and opened here, at start-up, instead of at the first
request that needs it (a relative path resolved against another working directory used
to turn `?explain=true` into a 500 an hour later). Each check raises `SettingUnusable`
whose text is `AUTHZ_<NAME>: <reason>`; the command line prints it and exits 1.
"""

import logging
import os
import ssl
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from authz.jwt_keys import KeyUnusable, load_public_key, shared_secret
from authz.settings import Settings


class SettingUnusable(Exception):
    """`setting` (an environment variable name) cannot work; `reason` says why, never a secret."""

    def __init__(self, setting: str, reason: str) -> None:
        super().__init__(f"{setting}: {reason}")
        self.setting = setting
        self.reason = reason


def _shown(path: Path) -> str:
    """The path as configured, and where it points when relative (the working directory matters)."""
    return str(path) if path.is_absolute() else f"{path} (= {Path.cwd() / path})"


def settings_from_environment() -> Settings:
    """Settings(), with an invalid value reported as SettingUnusable naming its variable."""
    try:
        return Settings()
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        name = "AUTHZ_" + str(error["loc"][0]).upper() if error.get("loc") else "settings"
        raise SettingUnusable(name, str(error.get("msg", "invalid value"))) from None


def check_settings(settings: Settings, *, policy_dir: bool = True) -> None:
    """Raise SettingUnusable for the first setting that cannot work in a serving process.

    `policy_dir=False` for the sidecar: its policy, routes included, comes from the upstream.
    """
    _check_log_level(settings.log_level)
    _check_database_url(settings.database_url)
    _check_policy_model(settings.policy_model)
    if policy_dir:
        _check_policy_dir(settings.policy_dir)
    _check_jwt(settings)
    if settings.smtp_ca_file is not None:
        _check_ca_file(settings.smtp_ca_file)
    if settings.secret_key_file is not None:
        _check_key_file(settings.secret_key_file)


def check_policy_model(settings: Settings) -> None:
    """For the offline commands (`policy test`, `check --explain`): the model must load."""
    _check_policy_model(settings.policy_model)


def _check_log_level(level: str) -> None:
    if not isinstance(logging.getLevelName(level.upper()), int):
        raise SettingUnusable("AUTHZ_LOG_LEVEL", f"{level!r} is not a log level (DEBUG, INFO, WARNING, ERROR)")


def _check_database_url(url: str) -> None:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise SettingUnusable("AUTHZ_DATABASE_URL", "is not a database URL "
                              "(sqlite:///path/authz.db or postgresql+psycopg://user@host/db)") from None
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise SettingUnusable(
            "AUTHZ_DATABASE_URL", f"{parsed.get_backend_name()} is not supported (sqlite or postgresql)"
        )
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        folder = Path(parsed.database).parent
        if not folder.is_dir():
            raise SettingUnusable(
                "AUTHZ_DATABASE_URL", f"the directory of the SQLite file, {_shown(folder)}, does not exist"
            )
        if not os.access(folder, os.W_OK):
            raise SettingUnusable(
                "AUTHZ_DATABASE_URL", f"the directory of the SQLite file, {_shown(folder)}, is not writable"
            )


def _check_policy_model(path: Path) -> None:
    from authz.policy.model import build_enforcer

    if not path.is_file():
        raise SettingUnusable(
            "AUTHZ_POLICY_MODEL", f"{_shown(path)} is not a file (unset it to use the model shipped with authz)"
        )
    try:
        build_enforcer(path, [])
    except Exception as exc:  # noqa: BLE001 - pycasbin raises many kinds for a bad model
        raise SettingUnusable(
            "AUTHZ_POLICY_MODEL", f"{_shown(path)} is not a Casbin model ({type(exc).__name__})"
        ) from None


def _check_policy_dir(path: Path) -> None:
    if not path.is_dir():
        raise SettingUnusable(
            "AUTHZ_POLICY_DIR",
            f"{_shown(path)} is not a directory (it holds roles.yaml, permissions.yaml and routes.yaml)",
        )
    if not os.access(path, os.R_OK | os.X_OK):
        raise SettingUnusable("AUTHZ_POLICY_DIR", f"{_shown(path)} is not readable")
    from authz.policy.loader import load_policy_dir
    from authz.policy.yaml_nodes import PolicyInvalid

    try:  # applied at the first start, by reload, and its routes.yaml at an upgrade's start: it must be valid
        load_policy_dir(path)
    except PolicyInvalid as exc:
        more = f" (and {len(exc.errors) - 1} more; see `authz policy validate`)" if len(exc.errors) > 1 else ""
        raise SettingUnusable("AUTHZ_POLICY_DIR", f"{exc.errors[0]}{more}") from None


def _check_jwt(settings: Settings) -> None:
    try:
        if settings.jwt_public_key is not None:
            load_public_key(settings.jwt_public_key)
        elif settings.jwt_secret is not None:
            shared_secret(settings.jwt_secret.get_secret_value(), production=settings.is_production)
    except KeyUnusable as exc:
        name = "AUTHZ_JWT_PUBLIC_KEY" if settings.jwt_public_key is not None else "AUTHZ_JWT_SECRET"
        raise SettingUnusable(name, str(exc)) from None


def _check_ca_file(path: Path) -> None:
    try:
        ssl.create_default_context(cafile=str(path))
    except (OSError, ssl.SSLError) as exc:
        raise SettingUnusable(
            "AUTHZ_SMTP_CA_FILE", f"{_shown(path)} is not a readable PEM CA file ({type(exc).__name__})"
        ) from None


def _check_key_file(path: Path) -> None:
    """AUTHZ_SECRET_KEY_FILE: readable if it exists; else its directory must exist (development creates it)."""
    if path.exists():
        if not path.is_file() or not os.access(path, os.R_OK):
            raise SettingUnusable("AUTHZ_SECRET_KEY_FILE", f"{_shown(path)} is not a readable file")
    elif not path.parent.is_dir():
        raise SettingUnusable("AUTHZ_SECRET_KEY_FILE", f"{_shown(path)} does not exist, nor does its directory")
