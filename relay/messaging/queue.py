"""The per-device delivery queue, inside the caller's transaction.

A message's ciphertext is one spool object (never a database row, so no page, WAL frame or
dead tuple of the database ever holds it); each recipient device has a copy row numbered in
one increasing sequence (``seq``). A copy is *settled* once its device has acknowledged it;
when every copy of a message is settled, or the unsettled ones were purged, the ciphertext
is purged: the row forgets its spool object and the audit row says why in the same
transaction, and the spool object is deleted once that transaction has committed (its
deadline, the message's lifespan, removes it should that delete fail).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, exists, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from relay.audit.actions import AuditAction
from relay.audit.log import AuditLog
from relay.camera.spool.contract import Spool, SpoolObjectMissing
from relay.clock import Clock
from relay.messaging.records import Conversation, MessagePurgeReason
from relay.storage.database import Database
from relay.storage.tables import message_copies, messages

MESSAGE_NEW = "message.new"
log = logging.getLogger(__name__)
QUEUED_COLUMNS = (
    message_copies.c.seq, message_copies.c.device_id, messages.c.id, messages.c.conversation_id,
    messages.c.sender_user_id, messages.c.sender_device_id, messages.c.sent_at, messages.c.expires_at,
    messages.c.object_id, messages.c.blob_id,
)


def message_new(row: Any, envelope: bytes) -> dict[str, Any]:
    """The `message.new` payload of one queued copy (docs/realtime.md)."""
    return {
        "seq": row.seq, "message_id": row.id, "conversation_id": row.conversation_id,
        "sender_user_id": row.sender_user_id, "sender_device_id": row.sender_device_id,
        "sent_at": row.sent_at.isoformat(), "expires_at": row.expires_at.isoformat(),
        "envelope": envelope, "blob_id": row.blob_id,
    }


@dataclass(frozen=True)
class MessageQueue:
    audit: AuditLog
    spool: Spool
    clock: Clock

    async def enqueue(self, connection: AsyncConnection, tenant_id: str, message_id: str,
                      recipients: Mapping[str, str]) -> None:
        """One copy per recipient device (device id -> user id), each numbered in its queue (``seq``)."""
        await connection.execute(
            insert(message_copies),
            [{"message_id": message_id, "device_id": device_id, "user_id": user_id, "tenant_id": tenant_id}
             for device_id, user_id in sorted(recipients.items())],
        )

    async def queued(self, connection: AsyncConnection, device_id: str, *, limit: int,
                     after_seq: int = 0) -> list[dict[str, Any]]:
        """What waits for ``device_id`` (not yet acknowledged, ciphertext still held), oldest
        first, as `message.new` payloads."""
        rows = (await connection.execute(
            select(*QUEUED_COLUMNS).join(messages, messages.c.id == message_copies.c.message_id)
            .where(message_copies.c.device_id == device_id, message_copies.c.acknowledged_at.is_(None),
                   message_copies.c.seq > after_seq, messages.c.object_id.is_not(None))
            .order_by(message_copies.c.seq).limit(limit)
        )).all()
        found = []
        for row in rows:
            try:
                found.append(message_new(row, await self.envelope(row.object_id)))
            except SpoolObjectMissing:
                log.warning("a queued message's ciphertext is missing from the spool")
        return found

    async def envelope(self, object_id: str) -> bytes:
        return b"".join([piece async for piece in self.spool.read(object_id)])

    async def forget(self, connection: AsyncConnection, row: Any, reason: MessagePurgeReason, now: datetime,
                     **values: Any) -> None:
        """Purge one message's ciphertext (``row`` has id, tenant_id, conversation_id, object_id)."""
        await connection.execute(update(messages).where(messages.c.id == row.id).values(
            object_id=None, purged_at=now, purge_reason=reason.value, **values))
        await self._purged(connection, row, reason)

    async def _purged(self, connection: AsyncConnection, row: Any, reason: MessagePurgeReason) -> None:
        await self.audit.record(
            connection, AuditAction.MESSAGE_PURGED, tenant_id=row.tenant_id, object_type="message", object_id=row.id,
            details={"conversation_id": row.conversation_id, "reason": reason.value},
        )
        object_id = row.object_id
        Database.after_commit(connection, lambda: self.spool.delete(object_id))

    async def purge_settled(self, connection: AsyncConnection, message_ids: Collection[str],
                            reason: MessagePurgeReason) -> list[str]:
        """Purge the ciphertext of those ``message_ids`` no device still waits for; returns them."""
        if not message_ids:
            return []
        unsettled = exists().where(message_copies.c.message_id == messages.c.id,
                                   message_copies.c.acknowledged_at.is_(None))
        candidates = (await connection.execute(
            select(messages.c.id, messages.c.tenant_id, messages.c.conversation_id, messages.c.object_id)
            .where(messages.c.id.in_(list(message_ids)), messages.c.object_id.is_not(None), ~unsettled)
        )).all()
        now = self.clock.now()
        for row in candidates:
            await self.forget(connection, row, reason, now)
        return [row.id for row in candidates]

    async def _drop_unsettled(self, connection: AsyncConnection, tenant_id: str, condition: Any,
                              reason: MessagePurgeReason, object_type: str, object_id: str) -> int:
        dropped = (await connection.execute(
            delete(message_copies).where(message_copies.c.acknowledged_at.is_(None), condition)
            .returning(message_copies.c.message_id)
        )).all()
        if not dropped:
            return 0
        await self.audit.record(
            connection, AuditAction.MESSAGE_COPIES_PURGED, tenant_id=tenant_id, object_type=object_type,
            object_id=object_id, details={"copies": len(dropped), "reason": reason.value},
        )
        await self.purge_settled(connection, {row.message_id for row in dropped}, reason)
        return len(dropped)

    async def purge_for_users(self, connection: AsyncConnection, conversation: Conversation,
                              user_ids: Collection[str], reason: MessagePurgeReason) -> int:
        """Purge what still waits for ``user_ids``' devices in ``conversation``; returns the count."""
        in_conversation = select(messages.c.id).where(messages.c.conversation_id == conversation.id)
        return await self._drop_unsettled(
            connection, conversation.tenant_id,
            and_(message_copies.c.user_id.in_(list(user_ids)), message_copies.c.message_id.in_(in_conversation)),
            reason, "conversation", conversation.id,
        )

    async def purge_for_device(self, connection: AsyncConnection, tenant_id: str, device_id: str) -> int:
        """Purge everything still waiting for a revoked device; returns the count."""
        return await self._drop_unsettled(
            connection, tenant_id, message_copies.c.device_id == device_id, MessagePurgeReason.REVOKED,
            "device", device_id,
        )
