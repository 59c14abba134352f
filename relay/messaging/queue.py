"""The per-device delivery queue, inside the caller's transaction.

A message's ciphertext is stored once (messages.envelope); each recipient device has a copy
row numbered in one increasing sequence (``seq``). A copy is *settled* once its device has
acknowledged it; when every copy of a message is settled, or the unsettled ones were purged,
the ciphertext is purged and the purge audited.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, exists, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from relay.audit.actions import AuditAction
from relay.audit.log import AuditLog
from relay.clock import Clock
from relay.messaging.records import Conversation, MessagePurgeReason
from relay.storage.tables import message_copies, messages

MESSAGE_NEW = "message.new"
QUEUED_COLUMNS = (
    message_copies.c.seq, message_copies.c.device_id, messages.c.id, messages.c.conversation_id,
    messages.c.sender_user_id, messages.c.sender_device_id, messages.c.sent_at, messages.c.expires_at,
    messages.c.envelope, messages.c.blob_id,
)


def message_new(row: Any) -> dict[str, Any]:
    """The `message.new` payload of one queued copy (docs/realtime.md)."""
    return {
        "seq": row.seq, "message_id": row.id, "conversation_id": row.conversation_id,
        "sender_user_id": row.sender_user_id, "sender_device_id": row.sender_device_id,
        "sent_at": row.sent_at.isoformat(), "expires_at": row.expires_at.isoformat(),
        "envelope": row.envelope, "blob_id": row.blob_id,
    }


async def enqueue(connection: AsyncConnection, tenant_id: str, message_id: str,
                  recipients: Mapping[str, str]) -> dict[str, int]:
    """One copy per recipient device (device id -> user id); returns each device's ``seq``."""
    rows = await connection.execute(
        insert(message_copies).returning(message_copies.c.device_id, message_copies.c.seq),
        [{"message_id": message_id, "device_id": device_id, "user_id": user_id, "tenant_id": tenant_id}
         for device_id, user_id in sorted(recipients.items())],
    )
    return {row.device_id: row.seq for row in rows}


async def queued(connection: AsyncConnection, device_id: str, *, limit: int, after_seq: int = 0) -> list[Any]:
    """What waits for ``device_id`` (not yet acknowledged, ciphertext still held), oldest first."""
    return list((await connection.execute(
        select(*QUEUED_COLUMNS).join(messages, messages.c.id == message_copies.c.message_id)
        .where(message_copies.c.device_id == device_id, message_copies.c.acknowledged_at.is_(None),
               message_copies.c.seq > after_seq, messages.c.envelope.is_not(None))
        .order_by(message_copies.c.seq).limit(limit)
    )).all())


async def purge_settled(connection: AsyncConnection, audit: AuditLog, now: datetime, message_ids: Collection[str],
                        reason: MessagePurgeReason) -> list[str]:
    """Purge the ciphertext of those ``message_ids`` no device still waits for; returns them."""
    if not message_ids:
        return []
    unsettled = exists().where(message_copies.c.message_id == messages.c.id,
                               message_copies.c.acknowledged_at.is_(None))
    purged = (await connection.execute(
        update(messages).where(messages.c.id.in_(list(message_ids)), messages.c.envelope.is_not(None), ~unsettled)
        .values(envelope=None, purged_at=now, purge_reason=reason.value)
        .returning(messages.c.id, messages.c.tenant_id, messages.c.conversation_id)
    )).all()
    for row in purged:
        await audit.record(
            connection, AuditAction.MESSAGE_PURGED, tenant_id=row.tenant_id, object_type="message", object_id=row.id,
            details={"conversation_id": row.conversation_id, "reason": reason.value},
        )
    return [row.id for row in purged]


async def _drop_unsettled(connection: AsyncConnection, audit: AuditLog, clock: Clock, tenant_id: str,
                          condition: Any, reason: MessagePurgeReason, object_type: str, object_id: str) -> int:
    dropped = (await connection.execute(
        delete(message_copies).where(message_copies.c.acknowledged_at.is_(None), condition)
        .returning(message_copies.c.message_id)
    )).all()
    if not dropped:
        return 0
    await audit.record(
        connection, AuditAction.MESSAGE_COPIES_PURGED, tenant_id=tenant_id, object_type=object_type,
        object_id=object_id, details={"copies": len(dropped), "reason": reason.value},
    )
    await purge_settled(connection, audit, clock.now(), {row.message_id for row in dropped}, reason)
    return len(dropped)


async def purge_queued_for_users(connection: AsyncConnection, audit: AuditLog, clock: Clock,
                                 conversation: Conversation, user_ids: Collection[str],
                                 reason: MessagePurgeReason) -> int:
    """Purge what still waits for ``user_ids``' devices in ``conversation``; returns the count."""
    in_conversation = select(messages.c.id).where(messages.c.conversation_id == conversation.id)
    return await _drop_unsettled(
        connection, audit, clock, conversation.tenant_id,
        and_(message_copies.c.user_id.in_(list(user_ids)), message_copies.c.message_id.in_(in_conversation)),
        reason, "conversation", conversation.id,
    )


async def purge_queued_for_device(connection: AsyncConnection, audit: AuditLog, clock: Clock, tenant_id: str,
                                  device_id: str) -> int:
    """Purge everything still waiting for a revoked device; returns the count."""
    return await _drop_unsettled(
        connection, audit, clock, tenant_id, message_copies.c.device_id == device_id,
        MessagePurgeReason.REVOKED, "device", device_id,
    )
