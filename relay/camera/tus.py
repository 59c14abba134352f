"""The tus 1.0 resumable upload protocol's headers and errors (https://tus.io/protocols/resumable-upload):
core, creation, termination, expiration and checksum. Parsing only; the upload service does
the work. docs/uploads.md describes what Relay accepts."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime

from aiohttp import web

from relay.errors import ApiError, BadRequest, InvalidRequest

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = "creation,termination,expiration,checksum"
CHECKSUM_ALGORITHMS = ("sha256",)
OFFSET_CONTENT_TYPE = "application/offset+octet-stream"
UPLOADS_PATH = "/api/v1/uploads"
METADATA_KEYS = frozenset({"sha256", "conversation"})
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_ID = re.compile(r"[0-9a-f]{32}")
_DIGITS = re.compile(r"[0-9]{1,19}")


class TusVersionUnsupported(ApiError):
    status, code = 412, "tus_version_unsupported"


def require_tus_version(request: web.Request) -> None:
    if request.headers.get("Tus-Resumable") != TUS_VERSION:
        raise TusVersionUnsupported(f"send Tus-Resumable: {TUS_VERSION}")


def non_negative(request: web.Request, header: str) -> int:
    """An integer header of the protocol (Upload-Length, Upload-Offset), or 400 naming it."""
    value = request.headers.get(header)
    if value is None or not _DIGITS.fullmatch(value):
        code = header.lower().replace("-", "_")
        raise BadRequest(f"send {header} as a non-negative integer", code=f"invalid_{code}")
    return int(value)


@dataclass(frozen=True)
class UploadMetadata:
    sha256: str
    conversation_id: str | None


def upload_metadata(header: str | None) -> UploadMetadata:
    """Upload-Metadata (values base64-encoded, as tus encodes them): ``sha256``, the 64
    lowercase hex digits of the ciphertext's digest, and optionally ``conversation``, the id of
    the conversation or consult the photo belongs to. Every other key is refused."""
    metadata = parse_metadata(header or "")
    refused = sorted(set(metadata) - METADATA_KEYS)
    if refused:
        raise InvalidRequest("Upload-Metadata may hold only sha256 and conversation; file names and other metadata "
                             "are refused", code="metadata_refused", details={"keys": refused})
    conversation = metadata.get("conversation")
    conversation_id = None if conversation is None else conversation.decode("ascii", "replace")
    if conversation_id is not None and not _ID.fullmatch(conversation_id):
        raise InvalidRequest("conversation must be a conversation id", code="invalid_conversation")
    return UploadMetadata(_sha256(metadata), conversation_id)


def _sha256(metadata: Mapping[str, bytes]) -> str:
    digest = metadata.get("sha256")
    if digest is None:
        raise InvalidRequest("declare the ciphertext's SHA-256 in Upload-Metadata", code="sha256_required")
    text = digest.decode("ascii", "replace")
    if not _SHA256_HEX.fullmatch(text):
        raise InvalidRequest("sha256 must be 64 lowercase hex digits", code="invalid_sha256")
    return text


def parse_metadata(header: str) -> Mapping[str, bytes]:
    """``key base64value`` pairs separated by commas; a key may stand alone (empty value)."""
    pairs: dict[str, bytes] = {}
    for item in filter(None, (part.strip() for part in header.split(","))):
        key, _, value = item.partition(" ")
        if not key or key in pairs or " " in value.strip():
            raise BadRequest("Upload-Metadata is not a list of distinct `key base64` pairs", code="invalid_metadata")
        pairs[key] = _base64(value.strip(), "Upload-Metadata")
    return pairs


def parse_checksum(header: str | None) -> tuple[str, bytes] | None:
    """Upload-Checksum as (algorithm, digest), or None when the PATCH carries none."""
    if header is None:
        return None
    algorithm, _, value = header.strip().partition(" ")
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise BadRequest(f"Upload-Checksum algorithms: {', '.join(CHECKSUM_ALGORITHMS)}",
                         code="checksum_algorithm_unsupported")
    return algorithm, _base64(value.strip(), "Upload-Checksum")


def _base64(value: str, header: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"{header} holds a value that is not base64", code="invalid_base64") from None


def http_date(moment: datetime) -> str:
    return format_datetime(moment, usegmt=True)


def discovery_headers(max_size: int) -> dict[str, str]:
    """What OPTIONS answers: the protocol version, extensions, size limit and checksums."""
    return {"Tus-Version": TUS_VERSION, "Tus-Extension": TUS_EXTENSIONS, "Tus-Max-Size": str(max_size),
            "Tus-Checksum-Algorithm": ",".join(CHECKSUM_ALGORITHMS)}


def install_tus_headers(app: web.Application) -> None:
    """Every answer under the uploads path carries Tus-Resumable (the protocol's own errors,
    the dispatcher's 401/403 and the error middleware's answers included), and a 412 names the
    versions supported, as tus requires."""

    async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
        if request.path == UPLOADS_PATH or request.path.startswith(UPLOADS_PATH + "/"):
            response.headers["Tus-Resumable"] = TUS_VERSION
            if response.status == 412:
                response.headers["Tus-Version"] = TUS_VERSION

    app.on_response_prepare.append(add_headers)
