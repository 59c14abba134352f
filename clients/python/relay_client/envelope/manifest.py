"""The manifest at the start of every envelope's plaintext (docs/envelope.md, "Manifest"):

    plaintext = u32 manifest length M || manifest (M bytes of canonical JSON) || content

Canonical JSON: UTF-8, object keys sorted, no whitespace, no floats, integers within
±(2^53 - 1), keys of 1 to 64 characters of a-z 0-9 _. Readers re-encode what they parsed and
reject anything that is not byte-for-byte canonical, so Python and browsers agree exactly.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from relay_client.envelope.errors import MalformedManifest, UnsupportedVersion

MANIFEST_VERSION = 1
MAX_MANIFEST_LENGTH = 64 * 1024
LENGTH_PREFIX = struct.Struct(">I")
MAX_FIELD_LENGTH = 256
MAX_SAFE_INTEGER = (1 << 53) - 1
LATERALITIES = frozenset({"left", "right", "bilateral", "not_applicable"})
_KEY = re.compile(r"[a-z0-9_]{1,64}")
_CONTENT_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}(; ?[\x21-\x7e]+)*")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
SCOPES = frozenset({"treatment", "teaching", "deidentified_research"})
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z")


@dataclass(frozen=True)
class ClinicalMetadata:
    """What the content is about. Every field is optional; present strings are 1 to 256 characters."""

    patient_ref: str | None = None
    encounter_ref: str | None = None
    body_site: str | None = None
    laterality: str | None = None
    captured_at: str | None = None
    captured_by: str | None = None
    consent_ref: str | None = None

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if value is not None and (not isinstance(value, str) or not 1 <= len(value) <= MAX_FIELD_LENGTH):
                raise ValueError(f"clinical.{field.name} must be a string of 1 to {MAX_FIELD_LENGTH} characters")
        if self.laterality is not None and self.laterality not in LATERALITIES:
            raise ValueError(f"clinical.laterality must be one of {sorted(LATERALITIES)}")
        if self.captured_at is not None and not _is_timestamp(self.captured_at):
            raise ValueError("clinical.captured_at must be RFC 3339 UTC, e.g. 2025-01-31T14:05:00Z")


@dataclass(frozen=True)
class Consent:
    """A patient's consent as the portal page records it (docs/portal.md, "Consent")."""

    id: str
    scopes: tuple[str, ...]
    typed_name: str
    agreed_at: str
    text_sha256: str

    def __post_init__(self) -> None:
        if not isinstance(self.scopes, tuple) or "treatment" not in self.scopes or not set(self.scopes) <= SCOPES:
            raise ValueError(f"consent.scopes must include treatment and be among {sorted(SCOPES)}")
        for name in ("id", "typed_name"):
            value = getattr(self, name)
            if not isinstance(value, str) or not 1 <= len(value) <= MAX_FIELD_LENGTH:
                raise ValueError(f"consent.{name} must be a string of 1 to {MAX_FIELD_LENGTH} characters")
        if not isinstance(self.agreed_at, str) or not _is_timestamp(self.agreed_at):
            raise ValueError("consent.agreed_at must be RFC 3339 UTC")
        if not isinstance(self.text_sha256, str) or not _SHA256_HEX.fullmatch(self.text_sha256):
            raise ValueError("consent.text_sha256 must be 64 lowercase hex digits")

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "scopes": list(self.scopes), "typed_name": self.typed_name,
                "agreed_at": self.agreed_at, "text_sha256": self.text_sha256}

    def sha256(self) -> str:
        """The hex SHA-256 of the canonical JSON: the ``consent_sha256`` the relay keeps."""
        return hashlib.sha256(canonical_json(self.to_json())).hexdigest()

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> Consent:
        return cls(document.get("id"), tuple(document["scopes"]), document.get("typed_name"),  # type: ignore[arg-type]
                   document.get("agreed_at"), document.get("text_sha256"))  # type: ignore[arg-type]


@dataclass(frozen=True)
class Manifest:
    """The content's type and its clinical metadata; sealed, so only recipients read it.
    ``source`` and ``consent`` are set by the patient portal (``source`` is ``patient_portal``)."""

    content_type: str
    clinical: ClinicalMetadata | None = None
    source: str | None = None
    consent: Consent | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.content_type, str) or len(self.content_type) > MAX_FIELD_LENGTH or (
                not _CONTENT_TYPE.fullmatch(self.content_type)):
            raise ValueError("content_type must be a lowercase media type such as image/jpeg")
        if self.source is not None and (not isinstance(self.source, str) or not _KEY.fullmatch(self.source)):
            raise ValueError("source must be 1 to 64 characters of a-z 0-9 _")

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {"v": MANIFEST_VERSION, "content_type": self.content_type}
        if self.clinical is not None:
            document["clinical"] = {
                field.name: getattr(self.clinical, field.name) for field in fields(self.clinical)
                if getattr(self.clinical, field.name) is not None
            }
        if self.source is not None:
            document["source"] = self.source
        if self.consent is not None:
            document["consent"] = self.consent.to_json()
        return document

    def encode(self) -> bytes:
        """The canonical JSON bytes, or ValueError when they exceed the 64 KiB limit."""
        encoded = canonical_json(self.to_json())
        if len(encoded) > MAX_MANIFEST_LENGTH:
            raise ValueError(f"the manifest encodes to {len(encoded)} bytes; the limit is {MAX_MANIFEST_LENGTH}")
        return encoded

    def frame(self) -> bytes:
        """u32 length || canonical JSON: the first bytes of the plaintext."""
        encoded = self.encode()
        return LENGTH_PREFIX.pack(len(encoded)) + encoded

    @classmethod
    def decode(cls, data: bytes) -> Manifest:
        """Parse manifest bytes; raises only MalformedManifest or UnsupportedVersion. Fields a
        later minor revision adds are ignored; a different "v" is unsupported."""
        try:
            document = json.loads(data.decode("utf-8"), object_pairs_hook=_unique_keys,
                                  parse_float=_no_float, parse_constant=_no_float)
        except (UnicodeDecodeError, ValueError, RecursionError) as error:
            raise MalformedManifest(f"the manifest is not valid JSON: {error}") from None
        if not isinstance(document, dict):
            raise MalformedManifest("the manifest is not a JSON object")
        _check_canonical(document, data)
        version = document.get("v")
        if type(version) is not int:
            raise MalformedManifest("the manifest has no integer version \"v\"")
        if version != MANIFEST_VERSION:
            raise UnsupportedVersion(f"manifest version {version} is not supported (this reads {MANIFEST_VERSION})")
        clinical = document.get("clinical")
        if clinical is not None and not isinstance(clinical, dict):
            raise MalformedManifest("clinical must be an object")
        try:
            known = {field.name for field in fields(ClinicalMetadata)}
            metadata = None if clinical is None else ClinicalMetadata(
                **{key: value for key, value in clinical.items() if key in known})
            consent = document.get("consent")
            if consent is not None and not (isinstance(consent, dict) and isinstance(consent.get("scopes"), list)):
                raise MalformedManifest("consent must be an object with a scopes list")
            return cls(document.get("content_type"), metadata, document.get("source"),  # type: ignore[arg-type]
                       None if consent is None else Consent.from_json(consent))
        except ValueError as error:
            raise MalformedManifest(str(error)) from None


def canonical_json(document: Any) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def parse_frame_length(prefix: bytes, plaintext_length: int) -> int:
    """The manifest length M from the plaintext's first 4 bytes, checked against the limits."""
    if plaintext_length < LENGTH_PREFIX.size:
        raise MalformedManifest("the plaintext is too short to hold a manifest")
    (length,) = LENGTH_PREFIX.unpack(prefix)
    if not 2 <= length <= min(MAX_MANIFEST_LENGTH, plaintext_length - LENGTH_PREFIX.size):
        raise MalformedManifest(f"manifest length {length} is out of range")
    return length


def _is_timestamp(value: str) -> bool:
    if not _TIMESTAMP.fullmatch(value):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        raise ValueError("duplicate key")
    return document


def _no_float(text: str) -> Any:
    raise ValueError(f"non-integer number {text[:20]}")


def _check_canonical(document: Any, data: bytes) -> None:
    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if not _KEY.fullmatch(key):
                    raise MalformedManifest("manifest keys are 1 to 64 characters of a-z 0-9 _")
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif type(value) is int and abs(value) > MAX_SAFE_INTEGER:
            raise MalformedManifest("manifest integers stay within ±(2^53 - 1)")

    try:
        walk(document)
        canonical = canonical_json(document)
    except (RecursionError, UnicodeEncodeError, ValueError):
        raise MalformedManifest("the manifest cannot be encoded canonically") from None
    if canonical != data:
        raise MalformedManifest("the manifest is not canonical JSON (sorted keys, no whitespace)")
