"""The adapter's configuration: one TOML file (emr-adapter.example.toml), read once into typed,
frozen values. A bad or missing key fails with a ConfigError that names it."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from relay_emr_adapter.errors import ConfigError

T = TypeVar("T")


class Profile(StrEnum):
    """How an image is filed (docs/emr-adapter.md, "Profiles")."""

    MEDIA = "media"
    DOCUMENT_REFERENCE = "document_reference"
    PDF = "pdf"
    DICOM = "dicom"


class ConsentCheck(StrEnum):
    """``emr``: the manifest's consent_ref must name an active Consent in the EMR that permits
    treatment for the same patient; ``reference``: a consent_ref must be present."""

    EMR = "emr"
    REFERENCE = "reference"


@dataclass(frozen=True)
class RelaySection:
    url: str
    client_id: str
    private_key: Path
    token_audience: str | None = None
    device_name: str = "EMR adapter"


@dataclass(frozen=True)
class EmrSection:
    fhir_base_url: str
    token_url: str
    client_id: str
    private_key: Path
    scope: str = ("system/Patient.read system/Consent.read system/Binary.write system/Media.write "
                  "system/DocumentReference.write")
    request_timeout: float = 30.0
    patient_identifier_system: str | None = None


@dataclass(frozen=True)
class RetrySection:
    attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 60.0


@dataclass(frozen=True)
class Config:
    relay: RelaySection
    emr: EmrSection
    state_dir: Path
    profile: Profile = Profile.MEDIA
    consent_check: ConsentCheck = ConsentCheck.EMR
    identifier_system: str = "urn:relay:envelope"
    poll_interval: float = 30.0
    max_image_bytes: int = 32 * 1024 * 1024
    status_port: int | None = None
    retry: RetrySection = field(default_factory=RetrySection)

    @property
    def device_key_file(self) -> Path:
        return self.state_dir / "device.json"

    @property
    def journal_file(self) -> Path:
        return self.state_dir / "journal.sqlite3"


def load_config(path: str | Path) -> Config:
    """Read and check the TOML file at ``path``; relative paths in it are relative to the file."""
    path = Path(path)
    try:
        document = tomllib.loads(path.read_text())
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from None
    return parse_config(document, base=path.parent)


def parse_config(document: dict[str, Any], *, base: Path) -> Config:
    reader = _Reader(document, base)
    relay = RelaySection(
        url=reader.url("relay.url"), client_id=reader.get("relay.client_id", str),
        private_key=reader.path("relay.private_key"),
        token_audience=reader.get("relay.token_audience", str, None),
        device_name=reader.get("relay.device_name", str, "EMR adapter"),
    )
    emr = EmrSection(
        fhir_base_url=reader.url("emr.fhir_base_url"), token_url=reader.url("emr.token_url"),
        client_id=reader.get("emr.client_id", str), private_key=reader.path("emr.private_key"),
        scope=reader.get("emr.scope", str, EmrSection.scope),
        request_timeout=reader.number("emr.request_timeout", 30.0, low=0.1),
        patient_identifier_system=reader.get("emr.patient_identifier_system", str, None),
    )
    retry = RetrySection(
        attempts=reader.integer("retry.attempts", 5, low=1, high=100),
        base_delay=reader.number("retry.base_delay", 1.0, low=0.0),
        max_delay=reader.number("retry.max_delay", 60.0, low=0.0),
    )
    config = Config(
        relay=relay, emr=emr, state_dir=reader.path("adapter.state_dir"),
        profile=reader.choice("adapter.profile", Profile, Profile.MEDIA),
        consent_check=reader.choice("adapter.consent_check", ConsentCheck, ConsentCheck.EMR),
        identifier_system=reader.get("adapter.identifier_system", str, "urn:relay:envelope"),
        poll_interval=reader.number("adapter.poll_interval", 30.0, low=0.01),
        max_image_bytes=reader.integer("adapter.max_image_bytes", 32 * 1024 * 1024, low=1),
        status_port=reader.get("adapter.status_port", int, None),
        retry=retry,
    )
    reader.no_unknown_keys()
    return config


_MISSING: Any = object()


class _Reader:
    def __init__(self, document: dict[str, Any], base: Path) -> None:
        self._document = document
        self._base = base
        self._seen: set[str] = set()

    def get(self, key: str, kind: Callable[..., T] | type[T], default: Any = _MISSING) -> T:
        section, name = key.split(".")
        self._seen.add(key)
        table = self._document.get(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"[{section}] must be a table")
        if name not in table:
            if default is _MISSING:
                raise ConfigError(f"{key} is required")
            return default  # type: ignore[no-any-return]
        value = table[name]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):  # type: ignore[arg-type]
            raise ConfigError(f"{key} must be a {getattr(kind, '__name__', kind)}")
        return value

    def url(self, key: str) -> str:
        value = self.get(key, str)
        if not value.startswith(("https://", "http://")):
            raise ConfigError(f"{key} must be an http(s) URL")
        return value.rstrip("/")

    def path(self, key: str) -> Path:
        value = Path(self.get(key, str)).expanduser()
        return value if value.is_absolute() else self._base / value

    def number(self, key: str, default: float, *, low: float) -> float:
        value = self.get(key, (int, float), default)  # type: ignore[arg-type]
        if isinstance(value, bool) or value < low:
            raise ConfigError(f"{key} must be a number of at least {low}")
        return float(value)

    def integer(self, key: str, default: int, *, low: int, high: int | None = None) -> int:
        value = self.get(key, int, default)
        if value < low or (high is not None and value > high):
            raise ConfigError(f"{key} must be an integer from {low}" + (f" to {high}" if high else ""))
        return value

    def choice(self, key: str, kind: type[StrEnum], default: StrEnum) -> Any:
        value = self.get(key, str, default.value)
        try:
            return kind(value)
        except ValueError:
            raise ConfigError(f"{key} must be one of {', '.join(item.value for item in kind)}") from None

    def no_unknown_keys(self) -> None:
        for section, table in self._document.items():
            if not isinstance(table, dict):
                raise ConfigError(f"{section} is not a known section")
            for name in table:
                if f"{section}.{name}" not in self._seen:
                    raise ConfigError(f"{section}.{name} is not a known key")
