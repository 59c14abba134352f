"""Consults (second opinions): a clinician asks a colleague or a specialty pool; one clinician
accepts, then the requester or the accepter resolves it, or the requester cancels it.

Each consult has a conversation of kind ``consult`` holding the requester and everyone who
may take it. Every state change is one transaction guarded by a conditional update, so of two
clinicians accepting at once exactly one wins. ``consult.updated`` (docs/realtime.md) goes out
after the transaction commits, to the requester and everyone the consult concerns.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from relay.audit.actions import AuditAction
from relay.audit.log import AuditLog
from relay.auth.principal import Principal
from relay.clock import Clock
from relay.errors import ApiError
from relay.ids import new_id
from relay.messaging.consult_errors import (
    ConsultForbidden,
    ConsultNotAccepted,
    ConsultNotFound,
    ConsultTaken,
    InvalidConsultTarget,
    NotConsultMember,
    PoolEmpty,
)
from relay.messaging.conversations import CONVERSATION_UPDATED, ConversationService
from relay.messaging.errors import ConsultClosed, UnknownMembers
from relay.messaging.escalation import EscalationPolicy
from relay.messaging.membership import colleagues, load_conversation
from relay.messaging.notifier import Notifier
from relay.messaging.pools import load_pool
from relay.messaging.records import Conversation, ConversationKind, MembershipChange, MessagePurgeReason
from relay.storage.database import Database
from relay.storage.tables import consults, conversation_members, pool_members

CONSULT_UPDATED = "consult.updated"
ESCALATION_BATCH = 100


class ConsultState(StrEnum):
    OPEN = "open"
    ACCEPTED = "accepted"
    RESOLVED = "resolved"
    CANCELLED = "cancelled"


CLOSED = (ConsultState.RESOLVED, ConsultState.CANCELLED)


@dataclass(frozen=True)
class Consult:
    id: str
    tenant_id: str
    conversation_id: str
    requester_id: str
    colleague_id: str | None
    pool_id: str | None
    state: ConsultState
    offered_to: str | None
    accepted_by: str | None
    escalation_level: int
    escalate_at: datetime | None
    created_at: datetime
    updated_at: datetime

    def event(self) -> dict[str, Any]:
        """The ``consult.updated`` payload."""
        return {"consult_id": self.id, "conversation_id": self.conversation_id, "state": self.state.value,
                "offered_to": self.offered_to, "accepted_by": self.accepted_by,
                "escalation_level": self.escalation_level}


@dataclass(frozen=True)
class Event:
    user_ids: frozenset[str]
    name: str
    payload: dict[str, Any]


async def load_consult(connection: AsyncConnection, tenant_id: str, consult_id: str) -> Consult:
    """The consult; another tenant's is simply not found."""
    row = (await connection.execute(select(consults).where(
        consults.c.id == consult_id, consults.c.tenant_id == tenant_id,
    ))).first()
    if row is None:
        raise ConsultNotFound("no such consult")
    return Consult(
        row.id, row.tenant_id, row.conversation_id, row.requester_id, row.colleague_id, row.pool_id,
        ConsultState(row.state), row.offered_to, row.accepted_by, row.escalation_level, row.escalate_at,
        row.created_at, row.updated_at,
    )


class ConsultService:
    def __init__(self, database: Database, audit: AuditLog, notifier: Notifier, clock: Clock,
                 conversations: ConversationService, escalation: EscalationPolicy) -> None:
        self._database = database
        self._audit = audit
        self._notifier = notifier
        self._clock = clock
        self._conversations = conversations
        self.escalation = escalation

    async def create(self, principal: Principal, *, colleague_user_id: str | None, pool_id: str | None,
                     lifespan_seconds: int | None) -> Consult:
        """Open a consult to a colleague, or to a pool's members (offered first to its on-call one)."""
        if (colleague_user_id is None) == (pool_id is None):
            raise InvalidConsultTarget("name either a colleague or a pool")
        now, consult_id = self._clock.now(), new_id()
        async with self._database.transaction() as connection:
            if colleague_user_id is not None:
                if colleague_user_id == principal.id:
                    raise InvalidConsultTarget("ask a colleague, not yourself")
                if not await colleagues(connection, principal.tenant_id, {colleague_user_id}):
                    raise UnknownMembers("not an enabled clinician of this tenant",
                                         details={"user_ids": [colleague_user_id]})
                asked, escalate_at = [colleague_user_id], None
            else:
                assert pool_id is not None
                pool = await load_pool(connection, principal.tenant_id, pool_id)
                enabled = await colleagues(connection, principal.tenant_id, set(pool.member_ids))
                asked = [user_id for user_id in pool.member_ids if user_id in enabled and user_id != principal.id]
                if not asked:
                    raise PoolEmpty("the pool has nobody else who could take this consult")
                escalate_at = now + await self.escalation.window(connection, principal.tenant_id)
            conversation = await self._conversations.insert(
                connection, principal, ConversationKind.CONSULT, [principal.id, *asked],
                lifespan_seconds or self._conversations.default_lifespan,
            )
            await connection.execute(insert(consults).values(
                id=consult_id, tenant_id=principal.tenant_id, conversation_id=conversation.id,
                requester_id=principal.id, colleague_id=colleague_user_id, pool_id=pool_id,
                state=ConsultState.OPEN.value, offered_to=asked[0], escalation_level=0, escalate_at=escalate_at,
                created_at=now, updated_at=now,
            ))
            await self._audit.record(
                connection, AuditAction.CONSULT_CREATED, tenant_id=principal.tenant_id, actor=principal.actor,
                object_type="consult", object_id=consult_id,
                details={"conversation_id": conversation.id, "colleague_id": colleague_user_id, "pool_id": pool_id,
                         "offered_to": asked[0], "members": len(asked)},
            )
            consult = await load_consult(connection, principal.tenant_id, consult_id)
        await self._emit([
            Event(conversation.member_ids, CONVERSATION_UPDATED, {
                "conversation_id": conversation.id, "change": MembershipChange.CREATED.value,
                "user_ids": sorted(conversation.member_ids)}),
            Event(conversation.member_ids, CONSULT_UPDATED, consult.event()),
        ])
        return consult

    async def list_for(self, principal: Principal) -> list[Consult]:
        """The consults the caller requested, was asked or may accept (including those since
        taken by someone else), oldest first."""
        async with self._database.read() as connection:
            ids = (await connection.scalars(
                select(consults.c.id)
                .join(conversation_members, conversation_members.c.conversation_id == consults.c.conversation_id)
                .where(consults.c.tenant_id == principal.tenant_id, conversation_members.c.user_id == principal.id)
                .order_by(consults.c.created_at, consults.c.id)
            )).all()
            return [await load_consult(connection, principal.tenant_id, consult_id) for consult_id in ids]

    async def get(self, principal: Principal, consult_id: str) -> Consult:
        async with self._database.read() as connection:
            return await _party_consult(connection, principal, consult_id)

    async def accept(self, principal: Principal, consult_id: str) -> Consult:
        """The colleague or a pool member takes the open consult; the other pool members leave
        its conversation. Of two racing accepters exactly one wins, the other gets ``consult_taken``."""
        now = self._clock.now()
        async with self._database.transaction() as connection:
            consult = await _party_consult(connection, principal, consult_id)
            if principal.id == consult.requester_id:
                raise ConsultForbidden("the requester cannot accept their own consult")
            if consult.state is not ConsultState.OPEN:
                raise _not_open(consult.state)
            conversation = await load_conversation(connection, principal.tenant_id, consult.conversation_id)
            if principal.id not in conversation.member_ids:
                raise ConsultTaken("this consult was taken by someone else")
            won = (await connection.execute(
                update(consults).where(consults.c.id == consult.id, consults.c.state == ConsultState.OPEN.value)
                .values(state=ConsultState.ACCEPTED.value, accepted_by=principal.id, escalate_at=None, updated_at=now)
                .returning(consults.c.id)
            )).first()
            if won is None:
                raise _not_open(await _current_state(connection, consult.id))
            others = set(conversation.member_ids - {consult.requester_id, principal.id})
            if others:
                await self._conversations.leave(connection, principal, conversation, others,
                                                MessagePurgeReason.REMOVED, AuditAction.CONVERSATION_MEMBER_REMOVED)
            await self._audit.record(
                connection, AuditAction.CONSULT_ACCEPTED, tenant_id=principal.tenant_id, actor=principal.actor,
                object_type="consult", object_id=consult.id,
                details={"conversation_id": consult.conversation_id, "escalation_level": consult.escalation_level,
                         "removed": len(others)},
            )
            consult = await load_consult(connection, principal.tenant_id, consult.id)
        events = [Event(conversation.member_ids, CONSULT_UPDATED, consult.event())]
        if others:
            events.insert(0, Event(conversation.member_ids, CONVERSATION_UPDATED, {
                "conversation_id": conversation.id, "change": MembershipChange.MEMBER_REMOVED.value,
                "user_ids": sorted(others)}))
        await self._emit(events)
        return consult

    async def resolve(self, principal: Principal, consult_id: str) -> Consult:
        """The requester or the accepting clinician closes an accepted consult."""
        async with self._database.transaction() as connection:
            consult = await _party_consult(connection, principal, consult_id)
            if principal.id not in (consult.requester_id, consult.accepted_by):
                raise ConsultForbidden("only the requester or the clinician who accepted resolves a consult")
            if consult.state is ConsultState.OPEN:
                raise ConsultNotAccepted("nobody has accepted this consult yet; cancel it instead")
            closed, conversation = await self._close(connection, principal, consult, ConsultState.RESOLVED,
                                                     (ConsultState.ACCEPTED,), AuditAction.CONSULT_RESOLVED)
        await self._emit([Event(conversation.member_ids | {closed.requester_id}, CONSULT_UPDATED, closed.event())])
        return closed

    async def cancel(self, principal: Principal, consult_id: str) -> Consult:
        """The requester withdraws an open or accepted consult."""
        async with self._database.transaction() as connection:
            consult = await _party_consult(connection, principal, consult_id)
            if principal.id != consult.requester_id:
                raise ConsultForbidden("only the requester cancels a consult")
            closed, conversation = await self._close(
                connection, principal, consult, ConsultState.CANCELLED, (ConsultState.OPEN, ConsultState.ACCEPTED),
                AuditAction.CONSULT_CANCELLED,
            )
        await self._emit([Event(conversation.member_ids | {closed.requester_id}, CONSULT_UPDATED, closed.event())])
        return closed

    async def _close(self, connection: AsyncConnection, principal: Principal, consult: Consult, state: ConsultState,
                     allowed: tuple[ConsultState, ...], action: AuditAction) -> tuple[Consult, Conversation]:
        if consult.state in CLOSED:
            raise ConsultClosed(f"this consult is {consult.state.value}")
        changed = (await connection.execute(
            update(consults).where(consults.c.id == consult.id,
                                   consults.c.state.in_([allowed_state.value for allowed_state in allowed]))
            .values(state=state.value, escalate_at=None, updated_at=self._clock.now())
            .returning(consults.c.id)
        )).first()
        if changed is None:
            current = await _current_state(connection, consult.id)
            if current in CLOSED:
                raise ConsultClosed(f"this consult is {current.value}")
            raise ConsultNotAccepted("nobody has accepted this consult yet")
        await self._audit.record(
            connection, action, tenant_id=principal.tenant_id, actor=principal.actor, object_type="consult",
            object_id=consult.id,
            details={"conversation_id": consult.conversation_id, "from_state": consult.state.value},
        )
        return (await load_consult(connection, principal.tenant_id, consult.id),
                await load_conversation(connection, principal.tenant_id, consult.conversation_id))

    async def escalate_due(self) -> int:
        """Offer each open pool consult whose escalation time passed to the pool's next member
        (round the pool); returns how many consults were due."""
        now = self._clock.now()
        events: list[Event] = []
        async with self._database.transaction() as connection:
            rows = (await connection.execute(
                select(consults.c.id, consults.c.tenant_id).where(
                    consults.c.state == ConsultState.OPEN.value, consults.c.escalate_at.is_not(None),
                    consults.c.escalate_at <= now,
                ).order_by(consults.c.escalate_at, consults.c.id).limit(ESCALATION_BATCH)
            )).all()
            for row in rows:
                consult = await load_consult(connection, row.tenant_id, row.id)
                conversation = await load_conversation(connection, row.tenant_id, consult.conversation_id)
                turn = await self._next_turn(connection, consult, conversation)
                level = consult.escalation_level if turn is None else consult.escalation_level + 1
                changed = (await connection.execute(
                    update(consults).where(consults.c.id == consult.id, consults.c.state == ConsultState.OPEN.value,
                                           consults.c.escalation_level == consult.escalation_level)
                    .values(offered_to=turn or consult.offered_to, escalation_level=level,
                            escalate_at=now + await self.escalation.window(connection, row.tenant_id), updated_at=now)
                    .returning(consults.c.id)
                )).first()
                if changed is None or turn is None:
                    continue
                await self._audit.record(
                    connection, AuditAction.CONSULT_ESCALATED, tenant_id=row.tenant_id, object_type="consult",
                    object_id=consult.id,
                    details={"conversation_id": consult.conversation_id, "offered_to": turn,
                             "escalation_level": level},
                )
                escalated = await load_consult(connection, row.tenant_id, consult.id)
                events.append(Event(conversation.member_ids, CONSULT_UPDATED, escalated.event()))
        await self._emit(events)
        return len(rows)

    async def _next_turn(self, connection: AsyncConnection, consult: Consult, conversation: Conversation
                         ) -> str | None:
        """Who is offered the consult next: the one after ``offered_to`` in the pool's on-call
        order, among the members it was offered to and who can still take it; None if nobody can."""
        order = (await connection.scalars(
            select(pool_members.c.user_id).where(pool_members.c.pool_id == consult.pool_id)
            .order_by(pool_members.c.position)
        )).all()
        joined = [member.user_id for member in conversation.members]
        asked = [user_id for user_id in dict.fromkeys([*order, *joined])
                 if user_id in conversation.member_ids and user_id != consult.requester_id]
        enabled = await colleagues(connection, consult.tenant_id, set(asked))
        candidates = [user_id for user_id in asked if user_id in enabled]
        if not candidates:
            return None
        if consult.offered_to not in candidates:
            return candidates[0]
        return candidates[(candidates.index(consult.offered_to) + 1) % len(candidates)]

    async def _emit(self, events: Iterable[Event]) -> None:
        for event in events:
            await self._notifier.users(sorted(event.user_ids), event.name, event.payload)


async def _party_consult(connection: AsyncConnection, principal: Principal, consult_id: str) -> Consult:
    """The consult, if the caller requested it or was ever asked to take it."""
    consult = await load_consult(connection, principal.tenant_id, consult_id)
    asked = await connection.scalar(select(conversation_members.c.user_id).where(
        conversation_members.c.conversation_id == consult.conversation_id,
        conversation_members.c.user_id == principal.id,
    ))
    if asked is None:
        raise NotConsultMember("you neither requested this consult nor were asked to take it")
    return consult


async def _current_state(connection: AsyncConnection, consult_id: str) -> ConsultState:
    """The state another transaction just committed (each statement sees the latest commit)."""
    state = await connection.scalar(select(consults.c.state).where(consults.c.id == consult_id))
    return ConsultState(str(state))


def _not_open(state: ConsultState) -> ApiError:
    if state in CLOSED:
        return ConsultClosed(f"this consult is {state.value}")
    return ConsultTaken("this consult was taken by someone else")
