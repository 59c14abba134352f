"""Receiving sealed blobs (docs/uploads.md, "Receiving"): list what waits for this device,
download with Range resume, open into a file that appears only once verified, acknowledge or
reject."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from relay_client.errors import DownloadFailed, RelayApiError
from relay_client.http import RelayHttp, api_error
from relay_client.transfer import (
    DEFAULT_RETRY,
    TRANSIENT_ERRORS,
    RetryPolicy,
    is_transient,
)

READ_PIECE = 1024 * 1024
REJECT_REASONS = frozenset({"patient_not_found", "consent_missing", "validation_failed", "unsupported_content",
                            "envelope_invalid", "sender_unverified", "other"})


@dataclass(frozen=True)
class WaitingBlob:
    blob_id: str
    size: int
    sender_device_id: str
    created_at: datetime
    retention_until: datetime
    downloaded: bool

    @classmethod
    def from_json(cls, view: dict[str, Any]) -> WaitingBlob:
        return cls(view["blob_id"], int(view["size"]), view["sender_device_id"],
                   datetime.fromisoformat(view["created_at"]), datetime.fromisoformat(view["retention_until"]),
                   bool(view["downloaded"]))


def private_file(path: Path) -> None:
    """Create (or empty) ``path`` with mode 0600."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))


class Blobs:
    def __init__(self, http: RelayHttp, *, retry: RetryPolicy = DEFAULT_RETRY) -> None:
        self._http = http
        self._retry = retry

    async def waiting(self) -> list[WaitingBlob]:
        """What waits for this device (also after being offline when ``blob.available`` was sent)."""
        answer = await self._http.call("GET", "/api/v1/blobs")
        return [WaitingBlob.from_json(view) for view in answer["blobs"]]

    async def download(self, blob_id: str, target: str | os.PathLike[str]) -> int:
        """The blob's ciphertext into ``target`` (mode 0600), resuming with Range after a
        dropped connection; a partial ``target`` left by an earlier run is continued. Returns its size."""
        path = Path(target)
        if not path.exists():
            private_file(path)
        failures = 0
        etag: str | None = None
        while True:
            offset = path.stat().st_size
            try:
                done, etag = await self._fetch(blob_id, path, offset, etag)
                if done:
                    return path.stat().st_size
                failures = 0
            except (RelayApiError, *TRANSIENT_ERRORS) as error:
                if not is_transient(error):
                    raise
                failures += 1
                if failures > self._retry.attempts:
                    raise DownloadFailed(f"the download failed {failures} times in a row: {error!r}") from error
                await asyncio.sleep(self._retry.wait(failures, getattr(error, "retry_after", None)))

    async def ack(self, blob_id: str) -> None:
        """This device has it (only after it was opened and committed); idempotent."""
        await self._http.call("POST", f"/api/v1/blobs/{blob_id}/ack", expect=(204,))

    async def reject(self, blob_id: str, reason: str) -> None:
        """This device cannot use it (adapters): one of REJECT_REASONS; idempotent."""
        if reason not in REJECT_REASONS:
            raise ValueError(f"reason must be one of {sorted(REJECT_REASONS)}")
        await self._http.call("POST", f"/api/v1/blobs/{blob_id}/reject", json={"reason": reason}, expect=(200, 204))

    async def status(self, blob_id: str) -> dict[str, Any]:
        """The sender's view of a blob it uploaded: state and per-recipient progress."""
        return dict(await self._http.call("GET", f"/api/v1/blobs/{blob_id}/status"))

    async def _fetch(self, blob_id: str, path: Path, offset: int, etag: str | None) -> tuple[bool, str | None]:
        """One GET from ``offset``; (complete?, the blob's ETag). Raises on a broken connection."""
        headers = {}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if etag:
                headers["If-Range"] = etag
        async with self._http.open("GET", f"/api/v1/blobs/{blob_id}", headers=headers) as response:
            if response.status == 416 and offset:
                total = await self._size(blob_id)
                if total == offset:
                    return True, etag
                private_file(path)
                return False, None
            if response.status not in (200, 206):
                raise await api_error(response)
            etag = response.headers.get("ETag", etag)
            if response.status == 200:
                offset = 0
            elif not response.headers.get("Content-Range", "").startswith(f"bytes {offset}-"):
                raise RelayApiError(response.status, "unexpected_range", "the relay answered another range")
            total = _total_length(response.headers, offset)
            with path.open("r+b") as handle:
                handle.truncate(offset)
                handle.seek(offset)
                async for piece in response.content.iter_chunked(READ_PIECE):
                    handle.write(piece)
                handle.flush()
                os.fsync(handle.fileno())
            return path.stat().st_size == total, etag

    async def _size(self, blob_id: str) -> int:
        async with self._http.open("HEAD", f"/api/v1/blobs/{blob_id}") as response:
            if response.status != 200:
                raise await api_error(response)
            return int(response.headers["Content-Length"])


def _total_length(headers: Any, offset: int) -> int:
    content_range = headers.get("Content-Range")
    if content_range:
        return int(content_range.rsplit("/", 1)[1])
    return offset + int(headers["Content-Length"])


@contextlib.contextmanager
def temporary_path(directory: Path, suffix: str = ".sealed") -> Iterator[Path]:
    """A fresh private file name in ``directory`` (deleted afterwards); opaque, never a blob's content name."""
    path = directory / f".relay-{secrets.token_hex(8)}{suffix}"
    try:
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
