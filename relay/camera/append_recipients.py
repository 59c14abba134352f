"""Adding recipients to a delivered blob without uploading its body again
(docs/envelope.md, "Appending recipients").

A device that holds the content key (the sender's device, or a recipient device the blob still
waits for or has delivered to) uploads the envelope's new head. The relay cannot check the
header MAC, so it checks everything it can read: the new head parses, keeps the fixed header
byte for byte and every existing stanza byte for byte, in order, and only adds stanzas after
them, for devices the appender may address. The new head is stored apart; downloads serve it
followed by the original body.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from sqlalchemy import insert, update

from relay.audit.actions import AuditAction
from relay.audit.log import AuditLog
from relay.auth.principal import Principal
from relay.camera.addressing import addressable_devices
from relay.camera.announce import Announcer
from relay.camera.errors import EnvelopeRefused, Gone
from relay.camera.records import Blob, BlobState, load_blob, load_recipient
from relay.camera.spool.contract import Spool, SpoolObjectMissing
from relay.camera.uploads import device_of
from relay.clock import Clock
from relay.errors import Conflict, NotFound
from relay.ids import new_id
from relay.keys.routing_view import (
    COUNT,
    FIXED_HEADER,
    MAC_LENGTH,
    MalformedEnvelope,
    read_routing_view,
)
from relay.storage.database import Database
from relay.storage.tables import blob_recipients, blobs

STANZAS_START = FIXED_HEADER.size + COUNT.size


class HeadService:
    def __init__(self, database: Database, audit: AuditLog, spool: Spool, clock: Clock, announcer: Announcer) -> None:
        self._database = database
        self._audit = audit
        self._spool = spool
        self._clock = clock
        self._announcer = announcer

    async def append_recipients(self, principal: Principal, blob_id: str, new_head: bytes) -> list[str]:
        """Replace the blob's head with ``new_head``; returns the device ids it added."""
        blob = await self._held(principal, blob_id)
        try:
            current = b"".join([chunk async for chunk in self._current_head(blob)])
        except SpoolObjectMissing:
            raise Gone("the relay lost this blob's bytes; the sender has to send it again", code="blob_lost") from None
        added = self._added_recipients(current, new_head)
        async with self._database.read() as connection:
            allowed = await addressable_devices(connection, principal, added, blob.conversation_id)
        refused = sorted(set(added) - allowed)
        if refused:
            raise EnvelopeRefused("the new head addresses devices you may not send to",
                                  code="recipient_not_addressable", details={"device_ids": refused})
        assert blob.retention_until is not None
        object_id = new_id()
        await self._spool.put(object_id, new_head, expires_at=blob.retention_until)
        try:
            updated = await self._store(principal, blob, object_id, len(new_head), added)
        except Exception:
            await self._spool.delete(object_id)
            raise
        if blob.replacement_head_id is not None:
            await self._spool.delete(blob.replacement_head_id)
        await self._announcer.announce(updated, added)
        return added

    async def _held(self, principal: Principal, blob_id: str) -> Blob:
        """The blob, if the caller's device holds its content key (sender device or recipient)."""
        async with self._database.read() as connection:
            blob = await load_blob(connection, principal.tenant_id, blob_id)
            device_id = device_of(principal)
            if device_id != blob.sender_device_id or blob.sender_id != principal.id:
                recipient = await load_recipient(connection, blob, device_id)
                if recipient is None:
                    raise NotFound("no such blob", code="blob_not_found")
                if recipient.purged_at is not None:
                    raise Gone("this blob has been purged for your device", code="blob_purged")
        if blob.state is not BlobState.COMPLETE:
            raise Gone("this blob has been purged", code="blob_purged")
        return blob

    def _current_head(self, blob: Blob) -> AsyncIterator[bytes]:
        if blob.replacement_head_id is not None:
            return self._spool.read(blob.replacement_head_id)
        return self._spool.read(blob.id, 0, blob.head_length)

    @staticmethod
    def _added_recipients(current: bytes, new_head: bytes) -> list[str]:
        view = read_routing_view(new_head)
        if view.head_length != len(new_head):
            raise MalformedEnvelope("not a well-formed envelope head: bytes follow its header MAC")
        old = read_routing_view(current)
        stanzas = current[STANZAS_START: len(current) - MAC_LENGTH]
        if new_head[: FIXED_HEADER.size] != current[: FIXED_HEADER.size]:
            raise EnvelopeRefused("the new head changes the envelope's fixed header", code="head_mismatch")
        if new_head[STANZAS_START: STANZAS_START + len(stanzas)] != stanzas:
            raise EnvelopeRefused("the new head changes or drops existing recipients' stanzas", code="head_mismatch")
        added = [recipient.device_id for recipient in view.recipients[len(old.recipients):]]
        if not added:
            raise EnvelopeRefused("the new head adds no recipient", code="no_new_recipients")
        return added

    async def _store(self, principal: Principal, blob: Blob, object_id: str, length: int, added: list[str]) -> Blob:
        now = self._clock.now()
        async with self._database.transaction() as connection:
            changed = await connection.execute(
                update(blobs).where(
                    blobs.c.tenant_id == blob.tenant_id, blobs.c.id == blob.id,
                    blobs.c.state == BlobState.COMPLETE.value,
                    blobs.c.replacement_head_id.is_(None) if blob.replacement_head_id is None
                    else blobs.c.replacement_head_id == blob.replacement_head_id,
                ).values(replacement_head_id=object_id, replacement_head_length=length)
            )
            if not changed.rowcount:
                raise Conflict("the blob changed meanwhile (purged, or another head was stored); read it again",
                               code="head_changed")
            await connection.execute(insert(blob_recipients), [
                {"blob_id": blob.id, "device_id": device_id, "tenant_id": blob.tenant_id, "added_at": now}
                for device_id in added
            ])
            for device_id in added:
                await self._audit.record(
                    connection, AuditAction.BLOB_RECIPIENT_ADDED, tenant_id=blob.tenant_id, actor=principal.actor,
                    object_type="blob", object_id=blob.id,
                    details={"device_id": device_id, "by_device_id": principal.device_id},
                )
            return await load_blob(connection, blob.tenant_id, blob.id)

