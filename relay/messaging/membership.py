"""Membership queries run inside the caller's transaction: who is in a conversation now, and
which devices a message to it must be sealed to."""

from __future__ import annotations

from sqlalchemy import and_, bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection

from relay.auth.principal import PrincipalType, Role
from relay.messaging.errors import ConversationNotFound, NotMember
from relay.messaging.records import Conversation, ConversationKind, Member
from relay.storage.tables import conversation_members, conversations, devices, users

CONVERSATION_WITH_MEMBERS = (
    select(conversations, conversation_members.c.user_id, conversation_members.c.joined_at)
    .outerjoin(conversation_members, and_(conversation_members.c.conversation_id == conversations.c.id,
                                          conversation_members.c.left_at.is_(None)))
    .where(conversations.c.id == bindparam("conversation_id"), conversations.c.tenant_id == bindparam("tenant_id"))
    .order_by(conversation_members.c.joined_at, conversation_members.c.user_id)
)
MEMBER_DEVICES = (
    select(devices.c.id, devices.c.owner_id)
    .join(users, and_(users.c.id == devices.c.owner_id, users.c.tenant_id == devices.c.tenant_id))
    .where(
        devices.c.tenant_id == bindparam("tenant_id"),
        devices.c.owner_type == PrincipalType.USER.value,
        devices.c.owner_id.in_(bindparam("member_ids", expanding=True)),
        devices.c.revoked_at.is_(None),
        users.c.disabled.is_(False),
    )
)
"""Both built once: every message sent runs them, and building them cost more than running them."""


async def load_conversation(connection: AsyncConnection, tenant_id: str, conversation_id: str) -> Conversation:
    """The conversation with its current members, in one statement; another tenant's is simply
    not found."""
    rows = (await connection.execute(
        CONVERSATION_WITH_MEMBERS, {"conversation_id": conversation_id, "tenant_id": tenant_id}
    )).all()
    if not rows:
        raise ConversationNotFound("no such conversation")
    row = rows[0]
    return Conversation(
        row.id, row.tenant_id, ConversationKind(row.kind), row.created_by, row.created_at, row.lifespan_seconds,
        tuple(Member(member.user_id, member.joined_at) for member in rows if member.user_id is not None),
    )


async def member_conversation(
    connection: AsyncConnection, tenant_id: str, conversation_id: str, user_id: str
) -> Conversation:
    """The conversation, if ``user_id`` is a current member of it."""
    conversation = await load_conversation(connection, tenant_id, conversation_id)
    if user_id not in conversation.member_ids:
        raise NotMember("you are not a member of this conversation")
    return conversation


async def member_devices(connection: AsyncConnection, conversation: Conversation) -> dict[str, str]:
    """Every active device of every current, enabled member: device id -> user id."""
    if not conversation.members:
        return {}
    rows = await connection.execute(
        MEMBER_DEVICES, {"tenant_id": conversation.tenant_id, "member_ids": list(conversation.member_ids)}
    )
    return dict(rows.all())


async def colleagues(connection: AsyncConnection, tenant_id: str, user_ids: set[str]) -> set[str]:
    """The subset of ``user_ids`` that are enabled clinicians of the tenant."""
    if not user_ids:
        return set()
    rows = await connection.execute(select(users.c.id).where(
        users.c.tenant_id == tenant_id, users.c.id.in_(user_ids), users.c.disabled.is_(False),
        users.c.role == Role.CLINICIAN.value,
    ))
    return {row.id for row in rows}
