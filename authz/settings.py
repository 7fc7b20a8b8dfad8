"""All configuration: one pydantic-settings object, from the environment (AUTHZ_*) and `.env`."""

from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The Casbin model ships inside the package, so every command works from any directory.
PACKAGED_POLICY_MODEL = Path(__file__).resolve().parent / "policy" / "policy_model.conf"


class Settings(BaseSettings):
    """Built once at start-up and passed down; nothing reads the environment elsewhere."""

    model_config = SettingsConfigDict(env_prefix="AUTHZ_", env_file=".env", extra="ignore")

    env: Literal["development", "production", "test"] = "development"
    database_url: str = "sqlite:///./authz.db"
    policy_dir: Path = Path("policies")
    policy_model: Path = PACKAGED_POLICY_MODEL

    # Authentication of user tokens (API.md "Authentication").
    jwt_secret: SecretStr | None = None
    jwt_public_key: Path | None = None
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    jwt_leeway_seconds: int = Field(default=30, ge=0, le=300)
    # OpenID Connect: discovery and JWKS (by kid) verify bearer tokens; the console signs in there.
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None  # the console's client at the provider (sign-in is off without it)
    oidc_client_secret: SecretStr | None = None  # unset: a public client (PKCE alone)
    oidc_scopes: str = "openid email profile"
    oidc_jwks_refresh: float = Field(default=3600.0, ge=10, le=86400, description="seconds between JWKS refreshes")
    oidc_timeout: float = Field(default=5.0, gt=0, le=60, description="seconds per request to the provider")

    # The console (api/console): its signed session cookie, dev sign-in, admins.
    session_secret: SecretStr | None = None  # unset: a random one per process (sessions end at restart)
    session_ttl: int = Field(default=8 * 3600, ge=60, le=30 * 24 * 3600, description="seconds")
    dev_login: bool = False  # development only: sign in as anyone, and a mailbox page of sent emails
    admin_users: str = ""  # comma-separated user ids who see the policy and the "why" explorer

    # HTTP.
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    min_revision_wait: float = Field(default=2.0, ge=0, le=30)
    log_level: str = "INFO"

    # Following the changelog (several replicas on one PostgreSQL).
    sync_poll_interval: float = Field(default=1.0, gt=0, le=60)
    max_staleness: float = Field(default=60.0, gt=0)
    # The sidecar: after its upstream is lost, it retries 0.1 s later, doubling up to this (jittered).
    upstream_max_backoff: float = Field(default=5.0, gt=0, le=300, description="seconds")

    # Invitations and mail.
    invitation_ttl: int = Field(default=7 * 24 * 3600, ge=60, le=30 * 24 * 3600, description="seconds")
    public_url: str = "http://127.0.0.1:8000"
    smtp_host: str | None = None
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_from: str = "authz@localhost"
    smtp_starttls: bool = False
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_ca_file: Path | None = None  # trust this CA for STARTTLS (a relay with a private CA)
    smtp_timeout: float = Field(default=10.0, gt=0, le=120, description="seconds per SMTP operation")
    mail_log_tokens: bool = False  # local development only: print unmasked links in the log
    mail_sender: bool = True  # run the outbox sender thread in this process
    mail_poll_interval: float = Field(default=2.0, gt=0, le=300)
    # Expired grants stop counting at once; the sweeper then removes their rules (a revision each).
    expiry_sweep_interval: float = Field(default=30.0, gt=0, le=3600)
    mail_max_attempts: int = Field(default=10, ge=1, le=100)
    mail_retry_base: float = Field(default=5.0, gt=0, le=3600, description="seconds before the 2nd attempt")
    mail_retry_max: float = Field(default=3600.0, gt=0, le=86400, description="longest wait between attempts")

    # Organization lifecycle (API.md "Organization lifecycle").
    org_retention: timedelta = Field(
        default=timedelta(days=30), description="how long an archived org can be restored; seconds or ISO 8601 (P30D)"
    )
    org_purger: bool = True  # purge archived orgs past the retention from this process
    purge_interval: float = Field(default=600.0, gt=0, le=86400, description="seconds between purge runs")
    invitations_per_day: int = Field(default=50, ge=1, le=100_000, description="per org and per inviter, any 24 h")

    # Paging cursors: the HMAC key shared by every replica (default: derived from the backend-token keys).
    cursor_key: SecretStr | None = None

    # Change feed: the longest `wait` of a long-poll, and the SSE keep-alive interval (seconds).
    changes_max_wait: float = Field(default=30.0, gt=0, le=300)
    changes_keepalive: float = Field(default=15.0, gt=0, le=300)

    # Tracing: the standard OpenTelemetry variables (no AUTHZ_ prefix); off unless one of these is set.
    otel_sdk_disabled: bool = Field(default=False, validation_alias="OTEL_SDK_DISABLED")
    otel_traces_exporter: str | None = Field(default=None, validation_alias="OTEL_TRACES_EXPORTER")
    otel_exporter_otlp_endpoint: str | None = Field(default=None, validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT")
    otel_exporter_otlp_traces_endpoint: str | None = Field(
        default=None, validation_alias="OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")

    # Backend token encryption: comma-separated Fernet keys, newest first.
    secret_keys: SecretStr | None = None
    secret_key_file: Path | None = None

    @field_validator("org_retention", mode="before")
    @classmethod
    def _seconds(cls, value: object) -> object:
        """AUTHZ_ORG_RETENTION=86400 means seconds, like every other duration here (P30D works too)."""
        if isinstance(value, str):
            try:
                return timedelta(seconds=float(value))
            except ValueError:
                return value
        return value

    @field_validator("org_retention")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("org_retention must be positive")
        return value

    @field_validator("public_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @model_validator(mode="after")
    def _no_dev_login_in_production(self) -> "Settings":
        if self.dev_login and self.env == "production":
            raise ValueError("AUTHZ_DEV_LOGIN must not be set with AUTHZ_ENV=production: "
                             "it lets anyone sign in as anyone")
        return self

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def admins(self) -> frozenset[str]:
        return frozenset(name.strip() for name in self.admin_users.split(",") if name.strip())
