"""The camera relay's rows: a blob (one sealed upload) and its recipient devices.

A blob holds ids, sizes, a digest and timestamps only; its bytes live in the spool under
opaque ids (the blob's own id for the uploaded ciphertext, another for a replacement head).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from relay.errors import NotFound
from relay.storage.tables import blob_recipients, blobs


class BlobState(StrEnum):
    UPLOADING = "uploading"
    COMPLETE = "complete"
    PURGED = "purged"
    EXPIRED = "expired"


class PurgeReason(StrEnum):
    DELIVERED = "delivered"
    RETENTION = "retention"
    UPLOAD_WINDOW = "upload_window"
    DEVICE_REVOKED = "device_revoked"
    TERMINATED = "terminated"
    REFUSED = "refused"
    LOST = "lost"


class RejectReason(StrEnum):
    PATIENT_NOT_FOUND = "patient_not_found"
    CONSENT_MISSING = "consent_missing"
    VALIDATION_FAILED = "validation_failed"
    UNSUPPORTED_CONTENT = "unsupported_content"
    ENVELOPE_INVALID = "envelope_invalid"
    SENDER_UNVERIFIED = "sender_unverified"
    OTHER = "other"


@dataclass(frozen=True)
class Blob:
    id: str
    tenant_id: str
    sender_type: str
    sender_id: str
    sender_device_id: str
    envelope_id: str | None
    length: int
    sha256: str
    state: BlobState
    head_length: int | None
    replacement_head_id: str | None
    replacement_head_length: int | None
    created_at: datetime
    completed_at: datetime | None
    expires_at: datetime
    retention_until: datetime | None
    purged_at: datetime | None
    purge_reason: str | None
    conversation_id: str | None

    @property
    def size(self) -> int:
        """What a recipient downloads: the current head, then the body."""
        if self.replacement_head_length is None or self.head_length is None:
            return self.length
        return self.replacement_head_length + self.length - self.head_length

    @property
    def spool_objects(self) -> list[str]:
        return [self.id] + ([self.replacement_head_id] if self.replacement_head_id else [])


@dataclass(frozen=True)
class BlobRecipient:
    device_id: str
    added_at: datetime
    notified_at: datetime | None
    downloaded_at: datetime | None
    acknowledged_at: datetime | None
    rejected_at: datetime | None
    reject_reason: str | None
    purged_at: datetime | None
    purge_reason: str | None

    @property
    def done(self) -> bool:
        """Acknowledged, rejected or purged: nothing more waits for this device."""
        return any((self.acknowledged_at, self.rejected_at, self.purged_at))


def blob_of(row: Any) -> Blob:
    return Blob(
        row.id, row.tenant_id, row.sender_type, row.sender_id, row.sender_device_id, row.envelope_id, row.length,
        row.sha256, BlobState(row.state), row.head_length, row.replacement_head_id, row.replacement_head_length,
        row.created_at, row.completed_at, row.expires_at, row.retention_until, row.purged_at, row.purge_reason,
        row.conversation_id,
    )


def recipient_of(row: Any) -> BlobRecipient:
    return BlobRecipient(
        row.device_id, row.added_at, row.notified_at, row.downloaded_at, row.acknowledged_at, row.rejected_at,
        row.reject_reason, row.purged_at, row.purge_reason,
    )


async def load_blob(connection: AsyncConnection, tenant_id: str, blob_id: str, *, lock: bool = False) -> Blob:
    """The tenant's blob, or NotFound (another tenant's blob is indistinguishable from none)."""
    query = select(blobs).where(blobs.c.tenant_id == tenant_id, blobs.c.id == blob_id)
    row = (await connection.execute(query.with_for_update() if lock else query)).first()
    if row is None:
        raise NotFound("no such blob", code="blob_not_found")
    return blob_of(row)


async def load_recipients(connection: AsyncConnection, blob: Blob) -> list[BlobRecipient]:
    rows = await connection.execute(
        select(blob_recipients)
        .where(blob_recipients.c.tenant_id == blob.tenant_id, blob_recipients.c.blob_id == blob.id)
        .order_by(blob_recipients.c.added_at, blob_recipients.c.device_id)
    )
    return [recipient_of(row) for row in rows]


async def load_recipient(connection: AsyncConnection, blob: Blob, device_id: str) -> BlobRecipient | None:
    row = (await connection.execute(select(blob_recipients).where(
        blob_recipients.c.tenant_id == blob.tenant_id, blob_recipients.c.blob_id == blob.id,
        blob_recipients.c.device_id == device_id,
    ))).first()
    return None if row is None else recipient_of(row)
