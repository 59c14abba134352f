"""Windows ending and devices revoked: the sweeper purges incomplete uploads past their upload
window (``blob.expired``, reason ``upload_window``), blobs past their retention window
(``blob.purged``, reason ``retention``), and, when a device is revoked, what waited for it
(``blob.recipient_purged``, reason ``device_revoked``; the blob itself once no recipient is
left waiting) and its own unfinished uploads.

Every step is a conditional update, so several nodes sweeping or hearing the same revocation
purge and audit each thing once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from relay.audit.actions import AuditAction
from relay.audit.log import AuditLog
from relay.camera.purge import Purger
from relay.camera.records import (
    Blob,
    BlobState,
    PurgeReason,
    blob_of,
    load_blob,
    load_recipients,
)
from relay.camera.spool.contract import Spool
from relay.clock import Clock
from relay.storage.database import Database
from relay.storage.tables import blob_recipients, blobs


@dataclass(frozen=True)
class SweepReport:
    expired: int
    purged: int
    spool_objects_removed: int


class BlobSweeper:
    def __init__(self, database: Database, audit: AuditLog, spool: Spool, clock: Clock, purger: Purger) -> None:
        self._database = database
        self._audit = audit
        self._spool = spool
        self._clock = clock
        self._purger = purger

    async def sweep(self) -> SweepReport:
        """Purge everything whose window has ended at the clock's current time."""
        now = self._clock.now()
        async with self._database.read() as connection:
            stale_uploads = (await connection.execute(select(blobs.c.tenant_id, blobs.c.id).where(
                blobs.c.state == BlobState.UPLOADING.value, blobs.c.expires_at <= now))).all()
            past_retention = (await connection.execute(select(blobs.c.tenant_id, blobs.c.id).where(
                blobs.c.state == BlobState.COMPLETE.value, blobs.c.retention_until <= now))).all()
        expired = purged = 0
        for row in stale_uploads:
            expired += await self._purger.purge(row.tenant_id, row.id, PurgeReason.UPLOAD_WINDOW,
                                                action=AuditAction.BLOB_EXPIRED)
        for row in past_retention:
            purged += await self._purger.purge(row.tenant_id, row.id, PurgeReason.RETENTION)
        removed = await self._spool.sweep(now)
        return SweepReport(expired, purged, len(removed))

    async def device_revoked(self, event: dict[str, Any]) -> None:
        """Broker handler for DEVICE_REVOKED: purge what waits for the device and its unfinished uploads."""
        tenant_id, device_id = str(event["tenant_id"]), str(event["device_id"])
        ended: list[Blob] = []
        async with self._database.transaction() as connection:
            waiting = (await connection.execute(
                select(blobs).join(blob_recipients, and_(blob_recipients.c.blob_id == blobs.c.id,
                                                         blob_recipients.c.tenant_id == blobs.c.tenant_id))
                .where(blobs.c.tenant_id == tenant_id, blobs.c.state == BlobState.COMPLETE.value,
                       blob_recipients.c.device_id == device_id, blob_recipients.c.purged_at.is_(None),
                       blob_recipients.c.acknowledged_at.is_(None), blob_recipients.c.rejected_at.is_(None))
            )).all()
            for row in waiting:
                blob = blob_of(row)
                if not await self._purge_recipient(connection, blob, device_id):
                    continue
                left = [recipient for recipient in await load_recipients(connection, blob) if not recipient.done]
                if not left and await self._purger.mark(connection, blob, PurgeReason.DEVICE_REVOKED):
                    ended.append(blob)
            uploads = (await connection.execute(select(blobs.c.id).where(
                blobs.c.tenant_id == tenant_id, blobs.c.sender_device_id == device_id,
                blobs.c.state == BlobState.UPLOADING.value))).scalars().all()
            for upload_id in uploads:
                blob = await load_blob(connection, tenant_id, upload_id)
                if await self._purger.mark(connection, blob, PurgeReason.DEVICE_REVOKED):
                    ended.append(blob)
        for blob in ended:
            await self._purger.discard(blob)

    async def _purge_recipient(self, connection: AsyncConnection, blob: Blob, device_id: str) -> bool:
        changed = await connection.execute(
            update(blob_recipients).where(
                blob_recipients.c.tenant_id == blob.tenant_id, blob_recipients.c.blob_id == blob.id,
                blob_recipients.c.device_id == device_id, blob_recipients.c.purged_at.is_(None),
            ).values(purged_at=self._clock.now(), purge_reason=PurgeReason.DEVICE_REVOKED.value)
        )
        if not changed.rowcount:
            return False
        await self._audit.record(
            connection, AuditAction.BLOB_RECIPIENT_PURGED, tenant_id=blob.tenant_id, object_type="blob",
            object_id=blob.id, details={"device_id": device_id, "reason": PurgeReason.DEVICE_REVOKED.value},
        )
        return True
