"""Telling recipient devices a blob waits for them (socket.io ``blob.available``), and auditing
each notification. A device that is offline finds the blob by listing what waits for it."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import update

from relay.audit.actions import AuditAction
from relay.audit.log import AuditLog
from relay.camera.notifier import DeviceNotifier
from relay.camera.records import Blob
from relay.clock import Clock
from relay.storage.database import Database
from relay.storage.tables import blob_recipients


class Announcer:
    def __init__(self, database: Database, audit: AuditLog, notifier: DeviceNotifier, clock: Clock) -> None:
        self._database = database
        self._audit = audit
        self._notifier = notifier
        self._clock = clock

    async def announce(self, blob: Blob, device_ids: Sequence[str]) -> None:
        """Notify each of ``device_ids`` (no transaction may be open in this task)."""
        notified = [
            device_id for device_id in device_ids
            if await self._notifier.blob_available(device_id, blob_id=blob.id, size=blob.size,
                                                   sender_device_id=blob.sender_device_id)
        ]
        if not notified:
            return
        async with self._database.transaction() as connection:
            for device_id in notified:
                await connection.execute(
                    update(blob_recipients).where(
                        blob_recipients.c.tenant_id == blob.tenant_id, blob_recipients.c.blob_id == blob.id,
                        blob_recipients.c.device_id == device_id,
                    ).values(notified_at=self._clock.now())
                )
                await self._audit.record(
                    connection, AuditAction.BLOB_NOTIFIED, tenant_id=blob.tenant_id, object_type="blob",
                    object_id=blob.id, details={"device_id": device_id},
                )
