"""Sending, acknowledging, reading and recalling sealed messages, and ending them with their
conversation's lifespan.

The relay reads only each envelope's routing view. Every state change is one transaction;
events go out after it commits, so a device is never told of something that rolled back.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from relay.audit.actions import AuditAction
from relay.audit.log import AuditLog
from relay.auth.principal import Principal
from relay.batching import Batcher
from relay.camera.records import load_blob, load_recipients
from relay.clock import Clock
from relay.errors import ApiError
from relay.ids import new_id
from relay.keys.routing_view import read_routing_view
from relay.messaging.errors import (
    BlobMismatch,
    ConsultClosed,
    DuplicateMessageId,
    InvalidEnvelope,
    MessageNotFound,
    MessageTooLarge,
    NotSender,
    RecipientNotMember,
    RecipientsIncomplete,
    SenderMismatch,
)
from relay.messaging.membership import member_conversation, member_devices
from relay.messaging.notifier import Notifier
from relay.messaging.queue import MESSAGE_NEW, MessageQueue
from relay.messaging.records import Conversation, ConversationKind, MessagePurgeReason, ReceiptStatus
from relay.storage.database import Database
from relay.storage.tables import consults, message_copies, messages

MESSAGE_RECEIPT = "message.receipt"
MESSAGE_DELETED = "message.deleted"
CLOSED_CONSULT_STATES = ("resolved", "cancelled")
EXPIRY_BATCH = 200
COPIES_PER_STATEMENT = 2000
"""(tenant, device, message) triples per acknowledging UPDATE: with their message and device ids,
at most 10,000 bound values, within the 32,766 SQLite and PostgreSQL allow."""
ACKNOWLEDGE_COPIES = (
    update(message_copies)
    .where(tuple_(message_copies.c.tenant_id, message_copies.c.device_id, message_copies.c.message_id)
           .in_(bindparam("copies", expanding=True)),
           message_copies.c.message_id.in_(bindparam("message_ids", expanding=True)),
           message_copies.c.device_id.in_(bindparam("device_ids", expanding=True)),
           message_copies.c.acknowledged_at.is_(None))
    .values(acknowledged_at=bindparam("now"))
    .returning(message_copies.c.device_id, message_copies.c.message_id)
)
"""Built once: the copies are one expanding parameter, so a batch of acknowledgements costs no
expression building per copy. The message and device lists say nothing the copies do not; they
let SQLite find the copies through the (message, device) index, where the row-value list alone
made it scan every copy of every message."""
MESSAGE_BY_ID = select(messages).where(messages.c.id == bindparam("message_id"))
INSERT_MESSAGE = insert(messages)
"""Built once, like the membership statements: every send runs them."""


@dataclass(frozen=True)
class SentMessage:
    message_id: str
    sent_at: datetime
    expires_at: datetime
    recipients: tuple[str, ...]


@dataclass(frozen=True)
class Outgoing:
    """A message on its way in: what the sender sent and where its ciphertext waits."""

    message_id: str
    conversation_id: str
    envelope: bytes
    digest: str
    recipients: frozenset[str]
    blob_id: str | None
    object_id: str
    sent_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class Acknowledgement:
    principal: Principal
    message_ids: tuple[str, ...]


@dataclass(frozen=True)
class Receipt:
    message_id: str
    conversation_id: str
    sender_user_id: str


class MessageService:
    def __init__(self, database: Database, audit: AuditLog, queue: MessageQueue, notifier: Notifier, clock: Clock,
                 *, max_message_bytes: int) -> None:
        self._database = database
        self._queue = queue
        self._acks: Batcher[Acknowledgement, list[str]] = Batcher(self._acknowledge_batch)
        self._audit = audit
        self._notifier = notifier
        self._clock = clock
        self.max_message_bytes = max_message_bytes

    async def send(self, principal: Principal, conversation_id: str, message_id: str, envelope: bytes,
                   blob_id: str | None) -> SentMessage:
        """Queue ``envelope`` for every recipient device it names, after checking they are
        exactly the conversation's member devices; a retry with the same id returns the first answer.

        One transaction checks and records everything. Once it has read the conversation (whose
        lifespan is the ciphertext's deadline), the ciphertext goes to the spool (``_spooling``),
        and the transaction commits only once the spool holds it; a send that does not commit
        takes its ciphertext back out of the spool.
        """
        if len(envelope) > self.max_message_bytes:
            raise MessageTooLarge(f"a sealed message may be at most {self.max_message_bytes} bytes")
        view = _routing_view(envelope)
        if view.sender_device_id != principal.device_id:
            raise SenderMismatch("the envelope names another device as its sender")
        digest = hashlib.sha256(envelope).hexdigest()
        spooling: asyncio.Future[None] | None = None
        object_id = new_id()
        try:
            async with self._database.transaction() as connection:
                existing = await self._existing(connection, principal, message_id, digest)
                if existing is not None:
                    return existing
                conversation = await member_conversation(connection, principal.tenant_id, conversation_id,
                                                         principal.id)
                now = self._clock.now()
                outgoing = Outgoing(
                    message_id, conversation.id, envelope, digest, frozenset(r.device_id for r in view.recipients),
                    blob_id, object_id, now, now + timedelta(seconds=conversation.lifespan_seconds),
                )
                spooling = await self._spooling(outgoing)
                recipients = await self._record(connection, principal, conversation, outgoing)
                await asyncio.shield(spooling)
        except BaseException:
            if spooling is not None:
                await asyncio.wait([spooling])
                await self._queue.spool.delete(object_id)
            raise
        base = {"message_id": outgoing.message_id, "conversation_id": conversation.id,
                "sender_user_id": principal.id, "sender_device_id": principal.device_id,
                "sent_at": outgoing.sent_at.isoformat(), "expires_at": outgoing.expires_at.isoformat(),
                "envelope": outgoing.envelope, "blob_id": outgoing.blob_id}
        await self._notifier.devices(sorted(recipients), MESSAGE_NEW, base)
        return SentMessage(outgoing.message_id, outgoing.sent_at, outgoing.expires_at, tuple(sorted(recipients)))

    async def _spooling(self, outgoing: Outgoing) -> asyncio.Future[None]:
        """The ciphertext on its way into its spool object, whose deadline is the message's end.
        Where a commit is durable when it returns (PostgreSQL), the object is synced while the
        transaction goes on. On SQLite it is written here, unsynced, and the checkpoint that
        makes the row durable syncs it (docs/spool.md): a task for those few system calls
        would wait its turn on a busy event loop for longer than they take."""
        put = self._queue.spool.put(outgoing.object_id, outgoing.envelope, expires_at=outgoing.expires_at,
                                    synced=self._database.durable_commits)
        if self._database.durable_commits:
            return asyncio.ensure_future(put)
        await put
        written: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        written.set_result(None)
        return written

    async def _record(self, connection: AsyncConnection, principal: Principal, conversation: Conversation,
                      outgoing: Outgoing) -> dict[str, str]:
        """Check the recipients against the members of this moment and queue a copy for each;
        returns them (device id -> user id)."""
        await _require_open(connection, conversation)
        expected = await member_devices(connection, conversation)
        named = outgoing.recipients
        if stranger := sorted(named - expected.keys()):
            raise RecipientNotMember("the envelope names devices that are not in this conversation",
                                     details={"device_ids": stranger})
        if missing := sorted(expected.keys() - named - {principal.device_id}):
            raise RecipientsIncomplete("the envelope misses member devices; fetch the conversation and seal again",
                                       details={"missing": missing})
        recipients = {device_id: expected[device_id] for device_id in named}
        if outgoing.blob_id is not None:
            await _require_blob_for(connection, principal, conversation, outgoing.blob_id, named)
        await connection.execute(INSERT_MESSAGE, {
            "id": outgoing.message_id, "tenant_id": principal.tenant_id, "conversation_id": conversation.id,
            "sender_user_id": principal.id, "sender_device_id": principal.device_id,
            "envelope_sha256": outgoing.digest, "envelope_length": len(outgoing.envelope),
            "object_id": outgoing.object_id, "blob_id": outgoing.blob_id, "sent_at": outgoing.sent_at,
            "expires_at": outgoing.expires_at,
        })
        await self._queue.enqueue(connection, principal.tenant_id, outgoing.message_id, recipients)
        await self._audit.record(
            connection, AuditAction.MESSAGE_SENT, tenant_id=principal.tenant_id, actor=principal.actor,
            object_type="message", object_id=outgoing.message_id,
            details={"conversation_id": conversation.id, "device_id": principal.device_id,
                     "recipients": len(recipients), "bytes": len(outgoing.envelope),
                     "blob_id": outgoing.blob_id},
        )
        return recipients

    async def _existing(self, connection: AsyncConnection, principal: Principal, message_id: str,
                        digest: str) -> SentMessage | None:
        row = (await connection.execute(MESSAGE_BY_ID, {"message_id": message_id})).first()
        if row is None:
            return None
        same = (row.tenant_id == principal.tenant_id and row.sender_device_id == principal.device_id
                and hmac.compare_digest(row.envelope_sha256, digest))
        if not same:
            raise DuplicateMessageId("this message id was used for another message")
        devices = (await connection.scalars(
            select(message_copies.c.device_id).where(message_copies.c.message_id == message_id)
        )).all()
        return SentMessage(row.id, row.sent_at, row.expires_at, tuple(sorted(devices)))

    async def acknowledge(self, principal: Principal, message_ids: Sequence[str]) -> list[str]:
        """The caller's device stored these messages (the *delivered* receipt); returns the ids
        it newly acknowledged. Ciphertext no device still waits for is purged at once.
        Acknowledgements arriving together share one transaction."""
        return await self._acks.submit(Acknowledgement(principal, tuple(message_ids)))

    async def _acknowledge_batch(self, batch: Sequence[Acknowledgement]) -> list[list[str]]:
        now = self._clock.now()
        newly: set[tuple[str, str]] = set()
        copies = list(dict.fromkeys((ack.principal.tenant_id, ack.principal.device_id, message_id)
                                    for ack in batch for message_id in ack.message_ids))
        async with self._database.transaction() as connection:
            for start in range(0, len(copies), COPIES_PER_STATEMENT):
                chunk = copies[start:start + COPIES_PER_STATEMENT]
                rows = await connection.execute(ACKNOWLEDGE_COPIES, {
                    "copies": chunk, "now": now, "message_ids": list({message_id for _, _, message_id in chunk}),
                    "device_ids": list({device_id for _, device_id, _ in chunk}),
                })
                newly.update((row.device_id, row.message_id) for row in rows)
            acknowledged = {message_id for _, message_id in newly}
            await self._queue.purge_settled(connection, acknowledged, MessagePurgeReason.DELIVERED)
            receipts = {receipt.message_id: receipt for receipt in await _receipts(connection, list(acknowledged))}
        results: list[list[str]] = []
        read_by: list[tuple[Principal, Receipt]] = []
        for ack in batch:
            mine = [message_id for message_id in dict.fromkeys(ack.message_ids)
                    if (ack.principal.device_id, message_id) in newly]
            newly.difference_update((ack.principal.device_id, message_id) for message_id in mine)
            read_by.extend((ack.principal, receipts[message_id]) for message_id in mine)
            results.append(mine)
        await self._send_receipts(read_by, ReceiptStatus.DELIVERED, now)
        return results

    async def mark_read(self, principal: Principal, message_ids: Sequence[str]) -> list[str]:
        now = self._clock.now()
        async with self._database.transaction() as connection:
            rows = (await connection.execute(
                update(message_copies).where(
                    message_copies.c.tenant_id == principal.tenant_id,
                    message_copies.c.device_id == principal.device_id,
                    message_copies.c.message_id.in_(list(message_ids)),
                    message_copies.c.read_at.is_(None),
                ).values(read_at=now).returning(message_copies.c.message_id)
            )).all()
            receipts = await _receipts(connection, [row.message_id for row in rows])
        await self._send_receipts([(principal, receipt) for receipt in receipts], ReceiptStatus.READ, now)
        return [receipt.message_id for receipt in receipts]

    async def _send_receipts(self, read_by: list[tuple[Principal, Receipt]], status: ReceiptStatus,
                             at: datetime) -> None:
        """One ``message.receipt`` per sender with every receipt for them in this batch."""
        by_sender: dict[str, list[dict[str, str | None]]] = {}
        for reader, receipt in read_by:
            by_sender.setdefault(receipt.sender_user_id, []).append({
                "message_id": receipt.message_id, "conversation_id": receipt.conversation_id,
                "user_id": reader.id, "device_id": reader.device_id, "status": status.value, "at": at.isoformat(),
            })
        for sender_user_id, receipts in by_sender.items():
            await self._notifier.users((sender_user_id,), MESSAGE_RECEIPT, {"receipts": receipts})

    async def recall(self, principal: Principal, message_id: str) -> int:
        """The sender withdraws a message: queued copies purged, every recipient told to delete
        it. Returns how many copies were still queued."""
        now = self._clock.now()
        async with self._database.transaction() as connection:
            row = (await connection.execute(select(messages).where(
                messages.c.id == message_id, messages.c.tenant_id == principal.tenant_id,
            ))).first()
            if row is None or row.deleted_at is not None:
                raise MessageNotFound("no such message")
            if row.sender_user_id != principal.id:
                raise NotSender("only its sender recalls a message")
            devices, purged = await self._delete(connection, row, now, MessagePurgeReason.RECALLED, recalled_at=now)
            await self._audit.record(
                connection, AuditAction.MESSAGE_RECALLED, tenant_id=principal.tenant_id, actor=principal.actor,
                object_type="message", object_id=message_id,
                details={"conversation_id": row.conversation_id, "purged_copies": purged},
            )
        await self._tell_deleted(devices, row.conversation_id, [message_id], MessagePurgeReason.RECALLED)
        return purged

    async def expire_due(self) -> int:
        """End the messages whose lifespan is over; returns how many."""
        now = self._clock.now()
        async with self._database.transaction() as connection:
            rows = (await connection.execute(
                select(messages).where(messages.c.deleted_at.is_(None), messages.c.expires_at <= now)
                .order_by(messages.c.expires_at).limit(EXPIRY_BATCH)
            )).all()
            told: list[tuple[list[str], str, str]] = []
            for row in rows:
                devices, purged = await self._delete(connection, row, now, MessagePurgeReason.EXPIRED)
                await self._audit.record(
                    connection, AuditAction.MESSAGE_EXPIRED, tenant_id=row.tenant_id, object_type="message",
                    object_id=row.id, details={"conversation_id": row.conversation_id, "purged_copies": purged},
                )
                told.append((devices, row.conversation_id, row.id))
        for devices, conversation_id, message_id in told:
            await self._tell_deleted(devices, conversation_id, [message_id], MessagePurgeReason.EXPIRED)
        return len(rows)

    async def _delete(self, connection: AsyncConnection, row: Any, now: datetime, reason: MessagePurgeReason,
                      **values: Any) -> tuple[list[str], int]:
        """Drop every copy of a message and its ciphertext; returns the devices that had a copy
        and how many copies were still queued."""
        copies = (await connection.execute(
            delete(message_copies).where(message_copies.c.message_id == row.id)
            .returning(message_copies.c.device_id, message_copies.c.acknowledged_at)
        )).all()
        purged = sum(1 for copy in copies if copy.acknowledged_at is None)
        if row.object_id is not None:
            await self._queue.forget(connection, row, reason, now, deleted_at=now, **values)
        else:
            await connection.execute(update(messages).where(messages.c.id == row.id).values(deleted_at=now, **values))
        return sorted({copy.device_id for copy in copies} | {row.sender_device_id}), purged

    async def _tell_deleted(self, devices: list[str], conversation_id: str, message_ids: list[str],
                            reason: MessagePurgeReason) -> None:
        await self._notifier.devices(devices, MESSAGE_DELETED, {
            "conversation_id": conversation_id, "message_ids": message_ids, "reason": reason.value,
        })

    async def queued(self, principal: Principal, *, limit: int, after_seq: int = 0) -> list[dict[str, Any]]:
        """What waits for the caller's device, oldest first, as `message.new` payloads."""
        assert principal.device_id is not None
        async with self._database.read() as connection:
            return await self._queue.queued(connection, principal.device_id, limit=limit, after_seq=after_seq)

    async def device_revoked(self, event: dict[str, Any]) -> None:
        """Broker handler: nothing keeps waiting for a revoked device."""
        async with self._database.transaction() as connection:
            await self._queue.purge_for_device(connection, event["tenant_id"], event["device_id"])


def _routing_view(envelope: bytes) -> Any:
    try:
        view = read_routing_view(envelope)
    except ApiError as error:
        raise InvalidEnvelope(error.message) from None
    if view.total_length != len(envelope):
        raise InvalidEnvelope("the envelope's length does not match its header")
    return view


async def _require_open(connection: AsyncConnection, conversation: Conversation) -> None:
    if conversation.kind is not ConversationKind.CONSULT:
        return
    state = await connection.scalar(select(consults.c.state).where(consults.c.conversation_id == conversation.id))
    if state in CLOSED_CONSULT_STATES:
        raise ConsultClosed(f"this consult is {state}; nothing new can be sent to it")


async def _require_blob_for(connection: AsyncConnection, principal: Principal, conversation: Conversation,
                            blob_id: str, named: frozenset[str]) -> None:
    try:
        blob = await load_blob(connection, principal.tenant_id, blob_id)
    except ApiError:
        raise BlobMismatch("no such blob") from None
    addressed = {recipient.device_id for recipient in await load_recipients(connection, blob)}
    if blob.sender_id not in conversation.member_ids or not (named - {blob.sender_device_id}) <= addressed:
        raise BlobMismatch("the photo is not addressed to this message's recipients")


async def _receipts(connection: AsyncConnection, message_ids: list[str]) -> list[Receipt]:
    if not message_ids:
        return []
    rows = await connection.execute(select(messages.c.id, messages.c.conversation_id, messages.c.sender_user_id)
                                    .where(messages.c.id.in_(message_ids)))
    return [Receipt(row.id, row.conversation_id, row.sender_user_id) for row in rows]

