"""Purging a blob: its rows say why and when, its audit row says so too, and every byte of it
leaves the spool.

The database changes first (in the caller's transaction, with the audit row), the spool
objects are deleted after it commits: should that delete fail, the spool's own deadline still
removes them, whereas a blob marked purged with its bytes still listed as available is never
possible.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from relay.audit.actions import AuditAction
from relay.audit.log import SYSTEM, AuditLog, Detail
from relay.camera.records import Blob, BlobState, PurgeReason, load_blob
from relay.camera.spool.contract import Spool
from relay.clock import Clock
from relay.storage.database import Database
from relay.storage.tables import blob_recipients, blobs

LIVE_STATES = (BlobState.UPLOADING.value, BlobState.COMPLETE.value)


class Purger:
    def __init__(self, database: Database, audit: AuditLog, spool: Spool, clock: Clock) -> None:
        self._database = database
        self._audit = audit
        self._spool = spool
        self._clock = clock

    async def mark(
        self, connection: AsyncConnection, blob: Blob, reason: PurgeReason, *,
        action: AuditAction = AuditAction.BLOB_PURGED, actor: tuple[str, str | None] = SYSTEM,
        details: Mapping[str, Detail] | None = None,
    ) -> bool:
        """In the caller's transaction: end the blob (``expired`` for BLOB_EXPIRED, else
        ``purged``), purge what still waited for its recipients, and audit it. False when
        the blob had already ended (someone else purged it first)."""
        now = self._clock.now()
        state = BlobState.EXPIRED if action is AuditAction.BLOB_EXPIRED else BlobState.PURGED
        changed = await connection.execute(
            update(blobs).where(blobs.c.tenant_id == blob.tenant_id, blobs.c.id == blob.id,
                                blobs.c.state.in_(LIVE_STATES))
            .values(state=state.value, purged_at=now, purge_reason=reason.value)
        )
        if not changed.rowcount:
            return False
        await connection.execute(
            update(blob_recipients).where(
                blob_recipients.c.tenant_id == blob.tenant_id, blob_recipients.c.blob_id == blob.id,
                blob_recipients.c.purged_at.is_(None), blob_recipients.c.acknowledged_at.is_(None),
                blob_recipients.c.rejected_at.is_(None),
            ).values(purged_at=now, purge_reason=reason.value)
        )
        await self._audit.record(
            connection, action, tenant_id=blob.tenant_id, actor=actor, object_type="blob", object_id=blob.id,
            details={"reason": reason.value, **(details or {})},
        )
        return True

    async def discard(self, blob: Blob) -> None:
        """Delete the blob's spool objects (idempotent)."""
        for object_id in blob.spool_objects:
            await self._spool.delete(object_id)

    async def purge(
        self, tenant_id: str, blob_id: str, reason: PurgeReason, *,
        action: AuditAction = AuditAction.BLOB_PURGED, actor: tuple[str, str | None] = SYSTEM,
        details: Mapping[str, Detail] | None = None,
    ) -> bool:
        """End one blob in a transaction of its own, then delete its bytes."""
        async with self._database.transaction() as connection:
            blob = await load_blob(connection, tenant_id, blob_id, lock=True)
            purged = await self.mark(connection, blob, reason, action=action, actor=actor, details=details)
        await self.discard(blob)
        return purged
