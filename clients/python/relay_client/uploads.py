"""Uploading a sealed envelope with tus 1.0 (docs/uploads.md): create with the ciphertext's
SHA-256 (and the conversation a photo belongs to), PATCH checksummed pieces, and after a
dropped connection ask HEAD for the offset and continue from there."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from relay_client.errors import RelayApiError, UploadFailed
from relay_client.http import RelayHttp, api_error
from relay_client.transfer import (
    DEFAULT_RETRY,
    TRANSIENT_ERRORS,
    RetryPolicy,
    is_transient,
)

TUS = {"Tus-Resumable": "1.0.0"}
OFFSET_BYTES = "application/offset+octet-stream"
DEFAULT_PIECE = 1024 * 1024


class UploadSource(Protocol):
    """Ciphertext that can be read again from any offset (to resume)."""

    length: int
    sha256: str

    def read(self, offset: int, size: int) -> bytes: ...


class BytesSource:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self.length = len(data)
        self.sha256 = hashlib.sha256(data).hexdigest()

    def read(self, offset: int, size: int) -> bytes:
        return self._data[offset: offset + size]


class FileSource:
    """A sealed envelope in a file (read once to hash it, then piece by piece)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        digest = hashlib.sha256()
        with self.path.open("rb") as handle:
            while piece := handle.read(DEFAULT_PIECE):
                digest.update(piece)
        self.length = self.path.stat().st_size
        self.sha256 = digest.hexdigest()

    def read(self, offset: int, size: int) -> bytes:
        with self.path.open("rb") as handle:
            handle.seek(offset)
            return handle.read(size)


def upload_metadata(sha256: str, conversation_id: str | None) -> str:
    values = {"sha256": sha256}
    if conversation_id is not None:
        values["conversation"] = conversation_id
    return ",".join(f"{key} {base64.b64encode(value.encode()).decode()}" for key, value in values.items())


class Uploader:
    def __init__(self, http: RelayHttp, *, piece_size: int = DEFAULT_PIECE, retry: RetryPolicy = DEFAULT_RETRY) -> None:
        self._http = http
        self._piece_size = piece_size
        self._retry = retry

    async def upload(self, source: UploadSource, *, conversation_id: str | None = None) -> str:
        """Create an upload and send every byte; returns the blob id."""
        location = await self.create(source, conversation_id=conversation_id)
        await self.resume(location, source)
        return blob_id_of(location)

    async def create(self, source: UploadSource, *, conversation_id: str | None = None) -> str:
        """POST /api/v1/uploads; returns the upload's location (keep it to resume in another run)."""
        headers = TUS | {"Upload-Length": str(source.length),
                         "Upload-Metadata": upload_metadata(source.sha256, conversation_id)}
        failures = 0
        while True:
            try:
                async with self._http.open("POST", "/api/v1/uploads", headers=headers) as response:
                    if response.status != 201:
                        raise await api_error(response)
                    return response.headers["Location"]
            except (RelayApiError, *TRANSIENT_ERRORS) as error:
                failures = await self._failed(error, failures)

    async def offset(self, location: str) -> int:
        """How many bytes the relay holds (HEAD)."""
        async with self._http.open("HEAD", location, headers=TUS) as response:
            if response.status != 200:
                raise await api_error(response)
            return int(response.headers["Upload-Offset"])

    async def resume(self, location: str, source: UploadSource) -> None:
        """Send what the relay does not hold yet, from the offset HEAD answers."""
        failures = 0
        offset: int | None = None
        while True:
            try:
                if offset is None:
                    offset = await self.offset(location)
                if offset >= source.length:
                    return
                offset = await self._patch(location, source, offset)
                failures = 0
            except RelayApiError as error:
                if error.code == "offset_mismatch" and isinstance(error.details, Mapping):
                    offset = int(error.details["offset"])
                elif error.code == "checksum_mismatch":
                    failures = await self._failed(error, failures, transient=True)
                else:
                    failures = await self._failed(error, failures)
                    offset = None
            except TRANSIENT_ERRORS as error:
                failures = await self._failed(error, failures)
                offset = None

    async def withdraw(self, blob_id: str) -> None:
        """DELETE the upload, finished or not (a sender retracting a photo)."""
        async with self._http.open("DELETE", f"/api/v1/uploads/{blob_id}", headers=TUS) as response:
            if response.status != 204:
                raise await api_error(response)

    async def _patch(self, location: str, source: UploadSource, offset: int) -> int:
        piece = source.read(offset, self._piece_size)
        checksum = base64.b64encode(hashlib.sha256(piece).digest()).decode()
        headers = TUS | {"Upload-Offset": str(offset), "Content-Type": OFFSET_BYTES,
                         "Upload-Checksum": f"sha256 {checksum}"}
        async with self._http.open("PATCH", location, headers=headers, data=piece) as response:
            if response.status != 204:
                raise await api_error(response)
            return int(response.headers["Upload-Offset"])

    async def _failed(self, error: BaseException, failures: int, *, transient: bool = False) -> int:
        """Wait before the next attempt, or raise when the error is final or retries ran out."""
        if not (transient or is_transient(error)):
            raise error
        failures += 1
        if failures > self._retry.attempts:
            raise UploadFailed(f"the upload failed {failures} times in a row: {error!r}") from error
        await asyncio.sleep(self._retry.wait(failures, getattr(error, "retry_after", None)))
        return failures


def blob_id_of(location: str) -> str:
    return location.rstrip("/").rsplit("/", 1)[1]
