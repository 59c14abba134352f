"""Delivery: what waits for a device, downloads, acknowledgements, EMR rejections, and the
sender's view of it all.

A recipient is *done* once it acknowledged, rejected (EMR adapters, with a reason code the
sender sees) or was purged (its device revoked). When every recipient of a blob is done the
blob is purged at once, reason ``delivered``, and its bytes leave the spool.

A download first checks that the spool still holds every byte of the blob. One it does not
(a Redis restarted without persistence lost it, or its window ended before a sweep) is purged
then and there, reason ``lost`` (or ``retention``), and answered with a 410, never with a
body that breaks off.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from relay.audit.actions import AuditAction
from relay.audit.log import AuditLog
from relay.auth.principal import Principal
from relay.camera.errors import Gone
from relay.camera.purge import Purger
from relay.camera.records import (
    Blob,
    BlobRecipient,
    BlobState,
    PurgeReason,
    RejectReason,
    blob_of,
    load_blob,
    load_recipient,
    load_recipients,
)
from relay.camera.spool.contract import Spool, SpoolObjectMissing
from relay.camera.uploads import device_of
from relay.clock import Clock
from relay.errors import Conflict, NotFound
from relay.storage.database import Database
from relay.storage.tables import blob_recipients, blobs


@dataclass(frozen=True)
class WaitingBlob:
    blob_id: str
    size: int
    sender_device_id: str
    created_at: datetime
    retention_until: datetime
    downloaded: bool


@dataclass(frozen=True)
class Download:
    """A blob as its recipient sees it: the current head (a replacement after recipients were
    appended) followed by the uploaded bytes after the original head."""

    blob: Blob
    spool: Spool

    @property
    def size(self) -> int:
        return self.blob.size

    @property
    def version(self) -> str:
        """Changes whenever the bytes served change (a new head), for ETag and If-Range."""
        return self.blob.replacement_head_id or self.blob.id

    def segments(self) -> list[tuple[str, int, int]]:
        blob = self.blob
        if blob.replacement_head_id is None or blob.replacement_head_length is None or blob.head_length is None:
            return [(blob.id, 0, blob.length)]
        return [(blob.replacement_head_id, 0, blob.replacement_head_length), (blob.id, blob.head_length, blob.length)]

    async def read(self, start: int, end: int) -> AsyncIterator[bytes]:
        """The bytes in [start, end) of what the recipient sees, streamed from the spool."""
        position = 0
        for object_id, first, last in self.segments():
            low, high = max(start, position), min(end, position + last - first)
            if low < high:
                async for chunk in self.spool.read(object_id, first + low - position, first + high - position):
                    yield chunk
            position += last - first

    async def intact(self) -> bool:
        """Whether the spool holds every byte of every segment."""
        for object_id, _, last in self.segments():
            try:
                if await self.spool.size(object_id) < last:
                    return False
            except SpoolObjectMissing:
                return False
        return True


@dataclass(frozen=True)
class BlobStatus:
    blob: Blob
    recipients: list[BlobRecipient]


class DeliveryService:
    def __init__(self, database: Database, audit: AuditLog, spool: Spool, clock: Clock, purger: Purger) -> None:
        self._database = database
        self._audit = audit
        self._spool = spool
        self._clock = clock
        self._purger = purger

    async def waiting(self, principal: Principal) -> list[WaitingBlob]:
        """Complete blobs addressed to the caller's device that it has not acknowledged or rejected."""
        device_id = device_of(principal)
        async with self._database.read() as connection:
            rows = await connection.execute(
                select(blobs, blob_recipients.c.downloaded_at)
                .join(blob_recipients, and_(blob_recipients.c.blob_id == blobs.c.id,
                                            blob_recipients.c.tenant_id == blobs.c.tenant_id))
                .where(
                    blobs.c.tenant_id == principal.tenant_id, blobs.c.state == BlobState.COMPLETE.value,
                    blob_recipients.c.device_id == device_id, blob_recipients.c.acknowledged_at.is_(None),
                    blob_recipients.c.rejected_at.is_(None), blob_recipients.c.purged_at.is_(None),
                )
                .order_by(blobs.c.completed_at, blobs.c.id)
            )
            found = [(blob_of(row), row.downloaded_at) for row in rows]
        return [
            WaitingBlob(blob.id, blob.size, blob.sender_device_id, blob.completed_at or blob.created_at,
                        blob.retention_until or blob.expires_at, downloaded_at is not None)
            for blob, downloaded_at in found
        ]

    async def open(self, principal: Principal, blob_id: str) -> Download:
        """The caller's device's view of a blob addressed to it; a blob whose bytes the spool no
        longer holds in full is purged here (``lost``, or ``retention`` past its window)."""
        async with self._database.read() as connection:
            blob, recipient = await self._addressed(connection, principal, blob_id)
        if recipient.purged_at is not None or blob.state is not BlobState.COMPLETE:
            raise ended(blob)
        download = Download(blob, self._spool)
        if await download.intact():
            return download
        window_ended = blob.retention_until is not None and blob.retention_until <= self._clock.now()
        await self._purger.purge(blob.tenant_id, blob.id, PurgeReason.RETENTION if window_ended else PurgeReason.LOST)
        async with self._database.read() as connection:
            raise ended(await load_blob(connection, blob.tenant_id, blob.id))

    async def record_download(self, principal: Principal, download: Download) -> None:
        """Audit the first download by each device (later ranges and retries are not recorded)."""
        device_id = device_of(principal)
        async with self._database.transaction() as connection:
            changed = await connection.execute(
                update(blob_recipients).where(
                    blob_recipients.c.tenant_id == principal.tenant_id, blob_recipients.c.blob_id == download.blob.id,
                    blob_recipients.c.device_id == device_id, blob_recipients.c.downloaded_at.is_(None),
                ).values(downloaded_at=self._clock.now())
            )
            if changed.rowcount:
                await self._audit.record(
                    connection, AuditAction.BLOB_DOWNLOADED, tenant_id=principal.tenant_id, actor=principal.actor,
                    object_type="blob", object_id=download.blob.id, details={"device_id": device_id},
                )

    async def acknowledge(self, principal: Principal, blob_id: str) -> None:
        """The caller's device has the blob; idempotent. The last acknowledgement purges it."""
        await self._settle(principal, blob_id, None)

    async def reject(self, principal: Principal, blob_id: str, reason: RejectReason) -> None:
        """An EMR adapter could not file the blob; the sender sees ``reason``. Idempotent."""
        await self._settle(principal, blob_id, reason)

    async def status(self, principal: Principal, blob_id: str) -> BlobStatus:
        """The sender's view: each recipient's notification, download, acknowledgement or rejection."""
        async with self._database.read() as connection:
            blob = await load_blob(connection, principal.tenant_id, blob_id)
            if (blob.sender_type, blob.sender_id) != (principal.type.value, principal.id):
                raise NotFound("no such blob", code="blob_not_found")
            return BlobStatus(blob, await load_recipients(connection, blob))

    async def _settle(self, principal: Principal, blob_id: str, reason: RejectReason | None) -> None:
        now = self._clock.now()
        async with self._database.transaction() as connection:
            blob, recipient = await self._addressed(connection, principal, blob_id, lock=True)
            if reason is None and recipient.acknowledged_at is not None:
                return
            if reason is not None and recipient.rejected_at is not None:
                return
            if recipient.rejected_at is not None:
                raise Conflict("this device rejected the blob", code="already_rejected")
            if recipient.acknowledged_at is not None:
                raise Conflict("this device acknowledged the blob", code="already_acknowledged")
            if recipient.purged_at is not None or blob.state is not BlobState.COMPLETE:
                raise ended(blob)
            device_id = device_of(principal)
            values = ({"acknowledged_at": now} if reason is None
                      else {"rejected_at": now, "reject_reason": reason.value})
            await connection.execute(update(blob_recipients).where(
                blob_recipients.c.tenant_id == blob.tenant_id, blob_recipients.c.blob_id == blob.id,
                blob_recipients.c.device_id == device_id,
            ).values(**values))
            await self._audit.record(
                connection, AuditAction.BLOB_ACKNOWLEDGED if reason is None else AuditAction.BLOB_REJECTED,
                tenant_id=blob.tenant_id, actor=principal.actor, object_type="blob", object_id=blob.id,
                details={"device_id": device_id} | ({} if reason is None else {"reason": reason.value}),
            )
            done = all(other.done for other in await load_recipients(connection, blob))
            if done:
                await self._purger.mark(connection, blob, PurgeReason.DELIVERED)
        if done:
            await self._purger.discard(blob)

    @staticmethod
    async def _addressed(
        connection: AsyncConnection, principal: Principal, blob_id: str, *, lock: bool = False,
    ) -> tuple[Blob, BlobRecipient]:
        blob = await load_blob(connection, principal.tenant_id, blob_id, lock=lock)
        recipient = await load_recipient(connection, blob, device_of(principal))
        if recipient is None:
            raise NotFound("no such blob", code="blob_not_found")
        return blob, recipient


def ended(blob: Blob) -> Gone:
    """The answer to a recipient once a blob has ended for it."""
    if blob.purge_reason == PurgeReason.LOST.value:
        return Gone("the relay lost this blob's bytes; the sender has to send it again", code="blob_lost")
    return Gone("this blob has been purged", code="blob_purged")
