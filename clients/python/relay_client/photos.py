"""Sealing a photo (or any blob) for a set of devices and uploading it: small photos are sealed
in memory, files are sealed to a private temporary file first, because tus needs the
ciphertext's SHA-256 before the first byte is sent, and a resumed upload re-reads it."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from pathlib import Path

from relay_client.envelope import (
    Manifest,
    Recipient,
    SenderIdentity,
    seal_bytes,
    seal_file,
)
from relay_client.uploads import BytesSource, FileSource, Uploader

PHOTO = Manifest("image/jpeg")


async def seal_and_upload(uploads: Uploader, sender: SenderIdentity, photo: bytes | Path,
                          recipients: Sequence[Recipient], *, manifest: Manifest = PHOTO,
                          conversation_id: str | None = None, workdir: Path) -> str:
    """Upload ``photo`` sealed to ``recipients``; returns the blob id. Remove EXIF/GPS first."""
    if isinstance(photo, bytes):
        envelope = await seal_bytes(manifest, photo, sender=sender, recipients=recipients)
        return await uploads.upload(BytesSource(envelope), conversation_id=conversation_id)
    sealed_path = workdir / f".relay-{secrets.token_hex(8)}.sealed"
    try:
        await seal_file(manifest, photo, sealed_path, sender=sender, recipients=recipients)
        return await uploads.upload(FileSource(sealed_path), conversation_id=conversation_id)
    finally:
        sealed_path.unlink(missing_ok=True)
