"""Relay's settings: one typed object, declared once, built once at start-up and passed down.

Values come, highest priority first, from command-line flags, ``RELAY_*`` environment
variables, a TOML file (``--config`` or ``RELAY_CONFIG``), then the defaults below.
Every field's description is its documentation; a test checks README.md lists each one.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from relay.errors import SettingsError

ENV_PREFIX = "RELAY_"
SOURCE_WEB_ROOT = Path(__file__).resolve().parents[1] / "clients" / "web"


class Settings(BaseModel):
    """Everything an operator can configure."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field("127.0.0.1", description="Address the HTTP server binds.")
    port: int = Field(8080, ge=0, le=65535, description="TCP port the HTTP server binds (0 picks a free port).")
    data_dir: Path = Field(
        Path("relay-data"),
        description="Directory for the embedded SQLite database, the server key file and the spool.",
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the database, e.g. postgresql+asyncpg://relay@db/relay. "
        "Default: SQLite in the data directory.",
    )
    redis_url: str | None = Field(
        None,
        description="Redis URL (redis://host:6379/0) for the broker, the ciphertext spool, rate limits and "
        "one-time tokens shared by several nodes. Default: in-process.",
    )
    redis_namespace: str = Field(
        "relay", pattern=r"^[a-z0-9_-]{1,32}$", description="Prefix of every Redis key and channel Relay uses."
    )
    key_file: Path | None = Field(
        None,
        description="The server's key-encryption key file (created with mode 0600 on first run). "
        "Default: keys.json in the data directory. Every node of a cluster must share it.",
    )
    spool_dir: Path | None = Field(
        None,
        description="Directory of the filesystem spool holding sealed uploads in transit (embedded default; "
        "with redis_url the spool is in Redis). Default: spool in the data directory.",
    )
    public_url: str | None = Field(
        None,
        description="External base URL (https://relay.example.org); the audience integration "
        "client assertions must name. Default: derived from host and port.",
    )
    tls_cert: Path | None = Field(None, description="PEM certificate chain; with tls_key, Relay terminates TLS itself.")
    tls_key: Path | None = Field(None, description="PEM private key for tls_cert.")
    hsts_max_age: int = Field(31536000, ge=0, description="Strict-Transport-Security max-age in seconds when serving TLS.")
    session_idle_timeout: int = Field(900, ge=30, description="Seconds of inactivity after which a session ends.")
    session_lifetime: int = Field(43200, ge=60, description="Seconds after which a session ends regardless of activity.")
    reauth_window: int = Field(300, ge=30, description="Seconds a re-authentication stays valid for exports.")
    login_max_failures: int = Field(5, ge=1, description="Failed logins in a row before an account is locked.")
    login_lockout: int = Field(900, ge=1, description="Seconds an account stays locked after too many failures.")
    login_rate_per_minute: int = Field(
        30, ge=1, description="Login attempts allowed per client address per minute, across all accounts."
    )
    integration_token_lifetime: int = Field(
        300, ge=30, le=3600, description="Seconds an integration principal's access token lives."
    )
    max_json_body: int = Field(65536, ge=1024, description="Largest JSON request body accepted, in bytes.")
    max_one_time_keys: int = Field(
        200, ge=1, description="Most unclaimed one-time keys a device may hold on the server."
    )
    max_devices_per_user: int = Field(20, ge=1, description="Most active devices one user may register.")
    max_upload_bytes: int = Field(
        2147483648, ge=1024, le=1 << 40, description="Largest sealed upload (tus Upload-Length) accepted, in bytes."
    )
    upload_rate_per_minute: int = Field(
        120, ge=1, description="Uploads one device may start per minute; more are refused with 429."
    )
    upload_window: int = Field(
        3600, ge=60, description="Seconds an incomplete upload may take before it expires and its bytes are purged."
    )
    photo_retention: int = Field(
        259200, ge=60, description="Seconds a completed photo waits for its recipients before it is purged "
        "(a tenant may set its own window)."
    )
    blob_sweep_interval: int = Field(
        60, ge=1, le=3600, description="Seconds between sweeps that purge expired uploads and blobs past retention."
    )
    message_lifespan: int = Field(
        604800, ge=60, le=31536000, description="Default seconds a conversation's messages live (a conversation may "
        "set its own); then undelivered copies are purged and devices told to delete."
    )
    max_message_bytes: int = Field(
        262144, ge=1024, le=8388608, description="Largest sealed chat message envelope accepted over socket.io, in bytes."
    )
    consult_escalation: int = Field(
        900, ge=30, description="Seconds an open consult waits for its on-call clinician before it is offered to the "
        "pool's next member (a tenant may set its own)."
    )
    message_sweep_interval: int = Field(
        30, ge=1, le=3600, description="Seconds between sweeps that expire messages past their lifespan and escalate "
        "consults."
    )
    socket_ping_interval: int = Field(
        25, ge=1, le=300, description="Seconds between socket.io heartbeats; a client silent for this plus "
        "socket_ping_timeout is disconnected."
    )
    socket_ping_timeout: int = Field(20, ge=1, le=300, description="Seconds to wait for a heartbeat's answer.")
    socket_events_per_minute: int = Field(
        1200, ge=1, description="Client events one socket.io connection may send per minute; more are answered "
        "rate_limited."
    )
    portal_invitation_lifetime: int = Field(
        259200, ge=300, le=2592000, description="Default seconds a patient portal invitation stays valid (a clinician "
        "may choose 5 minutes to 30 days)."
    )
    smtp_host: str | None = Field(
        None, description="SMTP server that sends portal invitation e-mail. Default: none, and `relay serve` runs a "
        "development mail server on loopback whose messages admins read at /api/v1/dev/outbox."
    )
    smtp_port: int = Field(587, ge=1, le=65535, description="SMTP server port.")
    smtp_username: str | None = Field(None, description="SMTP login name, if the server needs one.")
    smtp_password: str | None = Field(None, description="SMTP password for smtp_username.")
    smtp_starttls: bool = Field(
        True, description="Upgrade the SMTP connection with STARTTLS; required for every server not on loopback."
    )
    mail_from: str = Field("relay@localhost", description="Sender address of portal invitation e-mail.")
    twilio_account_sid: str | None = Field(None, description="Twilio account SID for portal invitations by SMS.")
    twilio_auth_token: str | None = Field(None, description="Twilio auth token for twilio_account_sid.")
    twilio_from_number: str | None = Field(None, description="Twilio number (E.164) that sends portal SMS.")
    twilio_api_base_url: str = Field(
        "https://api.twilio.com", description="Base URL of Twilio's REST API (changed only to test against a "
        "stand-in)."
    )
    dev_mail_port: int = Field(
        0, ge=0, le=65535, description="Loopback port of the development mail server run when smtp_host is unset "
        "(0 picks a free port)."
    )
    log_level: str = Field("INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$", description="Log level.")
    web_root: Path | None = Field(
        None, description="Directory of the browser client (clients/web, with its vendor/ from `npm ci`) from which "
        "the patient portal page is served. Default: clients/web of the source tree Relay runs from."
    )

    @field_validator("database_url", "redis_url", "smtp_host")
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        return value or None

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key must be given together")
        if self.session_idle_timeout > self.session_lifetime:
            raise ValueError("session_idle_timeout cannot exceed session_lifetime")
        if self.smtp_host and not self.smtp_starttls and not is_loopback(self.smtp_host):
            raise ValueError("smtp_starttls can be off only for an SMTP server on loopback")
        twilio = (self.twilio_account_sid, self.twilio_auth_token, self.twilio_from_number)
        if any(twilio) and not all(twilio):
            raise ValueError("twilio_account_sid, twilio_auth_token and twilio_from_number must be given together")
        return self

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{(self.data_dir / 'relay.db').resolve()}"

    @property
    def effective_key_file(self) -> Path:
        return self.key_file or self.data_dir / "keys.json"

    @property
    def effective_web_root(self) -> Path:
        return self.web_root or SOURCE_WEB_ROOT

    @property
    def effective_spool_dir(self) -> Path:
        return self.spool_dir or self.data_dir / "spool"

    @property
    def embedded_database(self) -> bool:
        return self.effective_database_url.startswith("sqlite")

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def effective_public_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self.port}"


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses, where mail may travel without STARTTLS."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_settings(
    overrides: dict[str, Any] | None = None,
    config_file: Path | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Build the settings from flags (``overrides``), the environment and an optional TOML file.

    Raises SettingsError with a message naming the setting and what is wrong with it.
    """
    env = dict(os.environ if environ is None else environ)
    file_values: dict[str, Any] = {}
    path = config_file or (Path(env["RELAY_CONFIG"]) if env.get("RELAY_CONFIG") else None)
    if path is not None:
        try:
            file_values = tomllib.loads(path.read_text())
        except OSError as error:
            raise SettingsError(f"config file {path}: cannot read: {error.strerror}") from error
        except tomllib.TOMLDecodeError as error:
            raise SettingsError(f"config file {path}: not valid TOML: {error}") from error
        unknown = sorted(set(file_values) - set(Settings.model_fields))
        if unknown:
            raise SettingsError(f"config file {path}: unknown setting(s): {', '.join(unknown)}")
    env_values = {
        name: env[ENV_PREFIX + name.upper()]
        for name in Settings.model_fields
        if env.get(ENV_PREFIX + name.upper()) is not None
    }
    values = {**file_values, **env_values, **{k: v for k, v in (overrides or {}).items() if v is not None}}
    try:
        return Settings.model_validate(values)
    except ValidationError as error:
        raise SettingsError(_describe(error)) from None


def _describe(error: ValidationError) -> str:
    lines = []
    for problem in error.errors(include_input=False, include_url=False):
        field = ".".join(str(part) for part in problem["loc"])
        name = f"{ENV_PREFIX}{field.upper()}" if field else "settings"
        lines.append(f"{name}: {problem['msg']}")
    return "; ".join(lines)
