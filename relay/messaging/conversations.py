"""Direct and group conversations: creating them, who is in them, and membership changes.

A membership change takes effect for everything sealed afterwards: send checks recipients
against the members of the moment (messages.py). Copies still queued for a departing member's
devices are purged in the same transaction as the change.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from relay.audit.actions import AuditAction
from relay.audit.log import AuditLog
from relay.auth.principal import Principal
from relay.clock import Clock
from relay.ids import new_id
from relay.keys.devices import Device, DeviceService
from relay.messaging.errors import MembershipRefused, UnknownMembers
from relay.messaging.membership import colleagues, load_conversation, member_conversation, member_devices
from relay.messaging.notifier import Notifier
from relay.messaging.queue import MessageQueue
from relay.messaging.records import Conversation, ConversationKind, MembershipChange, MessagePurgeReason
from relay.storage.database import Database
from relay.storage.tables import conversation_members, conversations

CONVERSATION_UPDATED = "conversation.updated"
MAX_MEMBERS = 256


class ConversationService:
    def __init__(self, database: Database, audit: AuditLog, queue: MessageQueue, notifier: Notifier, clock: Clock,
                 *, default_lifespan: int) -> None:
        self._database = database
        self._queue = queue
        self._audit = audit
        self._notifier = notifier
        self._clock = clock
        self.default_lifespan = default_lifespan

    async def create(self, principal: Principal, kind: ConversationKind, member_user_ids: Sequence[str],
                     lifespan_seconds: int | None) -> Conversation:
        """A new conversation of the caller and ``member_user_ids``; for a direct one that
        exists already, that one."""
        others = set(member_user_ids) - {principal.id}
        if kind is ConversationKind.DIRECT and len(others) != 1:
            raise MembershipRefused("a direct conversation has exactly one other member")
        if kind is ConversationKind.CONSULT:
            raise MembershipRefused("consult conversations are created by consults")
        direct_key = _direct_key(principal.tenant_id, others | {principal.id}) \
            if kind is ConversationKind.DIRECT else None
        try:
            async with self._database.transaction() as connection:
                await self._require_colleagues(connection, principal.tenant_id, others)
                if direct_key is not None and (existing := await self._direct(connection, principal, direct_key)):
                    return existing
                conversation = await self.insert(
                    connection, principal, kind, [principal.id, *sorted(others)],
                    lifespan_seconds or self.default_lifespan, direct_key=direct_key,
                )
        except IntegrityError:
            if direct_key is None:
                raise
            async with self._database.read() as connection:
                found = await self._direct(connection, principal, direct_key)
            assert found is not None, "a direct conversation refused as a duplicate exists"
            return found
        await self._announce(conversation, MembershipChange.CREATED, conversation.member_ids)
        return conversation

    @staticmethod
    async def _direct(connection: AsyncConnection, principal: Principal, direct_key: str) -> Conversation | None:
        """The direct conversation of this pair (started by either of them, or concurrently)."""
        existing = await connection.scalar(select(conversations.c.id).where(conversations.c.direct_key == direct_key))
        return None if existing is None else await load_conversation(connection, principal.tenant_id, existing)

    async def insert(self, connection: AsyncConnection, principal: Principal, kind: ConversationKind,
                     member_ids: Sequence[str], lifespan_seconds: int, *, direct_key: str | None = None) -> Conversation:
        """In the caller's transaction: a conversation with ``member_ids`` (already checked)."""
        now, conversation_id = self._clock.now(), new_id()
        await connection.execute(insert(conversations).values(
            id=conversation_id, tenant_id=principal.tenant_id, kind=kind.value, created_by=principal.id,
            created_at=now, lifespan_seconds=lifespan_seconds, direct_key=direct_key,
        ))
        await connection.execute(insert(conversation_members), [
            {"conversation_id": conversation_id, "user_id": user_id, "tenant_id": principal.tenant_id,
             "joined_at": now} for user_id in dict.fromkeys(member_ids)
        ])
        await self._audit.record(
            connection, AuditAction.CONVERSATION_CREATED, tenant_id=principal.tenant_id, actor=principal.actor,
            object_type="conversation", object_id=conversation_id,
            details={"kind": kind.value, "members": len(set(member_ids)), "lifespan_seconds": lifespan_seconds},
        )
        return await load_conversation(connection, principal.tenant_id, conversation_id)

    async def list_for(self, principal: Principal) -> list[Conversation]:
        async with self._database.transaction() as connection:
            ids = (await connection.scalars(
                select(conversation_members.c.conversation_id)
                .join(conversations, conversations.c.id == conversation_members.c.conversation_id)
                .where(conversation_members.c.tenant_id == principal.tenant_id,
                       conversation_members.c.user_id == principal.id, conversation_members.c.left_at.is_(None))
                .order_by(conversations.c.created_at, conversations.c.id)
            )).all()
            return [await load_conversation(connection, principal.tenant_id, conversation_id) for conversation_id in ids]

    async def get(self, principal: Principal, conversation_id: str) -> tuple[Conversation, list[Device]]:
        """The conversation and the devices a message to it must be sealed to, with their keys."""
        async with self._database.transaction() as connection:
            conversation = await member_conversation(connection, principal.tenant_id, conversation_id, principal.id)
            recipients = await DeviceService.active(
                connection, principal.tenant_id, list(await member_devices(connection, conversation))
            )
            await self._audit.record(
                connection, AuditAction.DIRECTORY_READ, tenant_id=principal.tenant_id, actor=principal.actor,
                object_type="conversation", object_id=conversation_id, details={"devices": len(recipients)},
            )
        return conversation, recipients

    async def add_members(self, principal: Principal, conversation_id: str, user_ids: Sequence[str]) -> Conversation:
        async with self._database.transaction() as connection:
            conversation = await member_conversation(connection, principal.tenant_id, conversation_id, principal.id)
            if conversation.kind is not ConversationKind.GROUP:
                raise MembershipRefused(f"members of a {conversation.kind.value} conversation cannot be changed")
            added = set(user_ids) - conversation.member_ids
            if len(conversation.members) + len(added) > MAX_MEMBERS:
                raise MembershipRefused(f"a conversation has at most {MAX_MEMBERS} members")
            await self._require_colleagues(connection, principal.tenant_id, added)
            await self.join(connection, principal, conversation, added)
            conversation = await load_conversation(connection, principal.tenant_id, conversation_id)
        await self._announce(conversation, MembershipChange.MEMBER_ADDED, added)
        return conversation

    async def join(self, connection: AsyncConnection, principal: Principal, conversation: Conversation,
                   user_ids: set[str]) -> None:
        """In the caller's transaction: make ``user_ids`` (checked) current members."""
        now = self._clock.now()
        for user_id in sorted(user_ids):
            rejoined = await connection.execute(update(conversation_members).where(
                conversation_members.c.conversation_id == conversation.id, conversation_members.c.user_id == user_id,
            ).values(joined_at=now, left_at=None))
            if rejoined.rowcount == 0:
                await connection.execute(insert(conversation_members).values(
                    conversation_id=conversation.id, user_id=user_id, tenant_id=conversation.tenant_id, joined_at=now,
                ))
            await self._audit.record(
                connection, AuditAction.CONVERSATION_MEMBER_ADDED, tenant_id=conversation.tenant_id,
                actor=principal.actor, object_type="conversation", object_id=conversation.id,
                details={"user_id": user_id},
            )

    async def remove_member(self, principal: Principal, conversation_id: str, user_id: str) -> Conversation:
        """The creator removes a member of a group, or a member leaves it."""
        async with self._database.transaction() as connection:
            conversation = await member_conversation(connection, principal.tenant_id, conversation_id, principal.id)
            leaving = user_id == principal.id
            if conversation.kind is not ConversationKind.GROUP:
                raise MembershipRefused(f"members of a {conversation.kind.value} conversation cannot be changed")
            if not leaving and principal.id != conversation.created_by:
                raise MembershipRefused("only the conversation's creator removes members")
            if user_id not in conversation.member_ids:
                raise UnknownMembers("that user is not a member", details={"user_ids": [user_id]})
            await self.leave(connection, principal, conversation, {user_id}, MessagePurgeReason.REMOVED,
                             AuditAction.CONVERSATION_MEMBER_LEFT if leaving else AuditAction.CONVERSATION_MEMBER_REMOVED)
            remaining = await load_conversation(connection, principal.tenant_id, conversation_id)
        change = MembershipChange.MEMBER_LEFT if leaving else MembershipChange.MEMBER_REMOVED
        await self._notifier.users(remaining.member_ids | {user_id}, CONVERSATION_UPDATED,
                                   {"conversation_id": conversation_id, "change": change.value, "user_ids": [user_id]})
        return remaining

    async def leave(self, connection: AsyncConnection, principal: Principal, conversation: Conversation,
                    user_ids: set[str], reason: MessagePurgeReason, action: AuditAction) -> int:
        """In the caller's transaction: ``user_ids`` stop being members; copies still queued for
        their devices in this conversation are purged. Returns how many were."""
        now = self._clock.now()
        await connection.execute(update(conversation_members).where(
            conversation_members.c.conversation_id == conversation.id,
            conversation_members.c.user_id.in_(user_ids), conversation_members.c.left_at.is_(None),
        ).values(left_at=now))
        for user_id in sorted(user_ids):
            await self._audit.record(
                connection, action, tenant_id=conversation.tenant_id, actor=principal.actor,
                object_type="conversation", object_id=conversation.id, details={"user_id": user_id},
            )
        return await self._queue.purge_for_users(connection, conversation, user_ids, reason)

    async def _require_colleagues(self, connection: AsyncConnection, tenant_id: str, user_ids: set[str]) -> None:
        found = await colleagues(connection, tenant_id, user_ids)
        if missing := sorted(user_ids - found):
            raise UnknownMembers("not enabled clinicians of this tenant", details={"user_ids": missing})

    async def _announce(self, conversation: Conversation, change: MembershipChange, user_ids: frozenset[str] | set[str]
                        ) -> None:
        await self._notifier.users(conversation.member_ids, CONVERSATION_UPDATED, {
            "conversation_id": conversation.id, "change": change.value, "user_ids": sorted(user_ids),
        })


def _direct_key(tenant_id: str, user_ids: set[str]) -> str:
    """The same for a pair of users whoever starts their direct conversation."""
    return hashlib.sha256(":".join([tenant_id, *sorted(user_ids)]).encode()).hexdigest()
