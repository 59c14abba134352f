"""Specialty pools: named, ordered lists of a tenant's clinicians (the first is on call) that
consults can be offered to. Admins manage them; pool records hold ids and a name only."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from relay.audit.actions import AuditAction
from relay.audit.log import AuditLog
from relay.auth.principal import Principal
from relay.clock import Clock
from relay.ids import new_id
from relay.messaging.consult_errors import DuplicateMembers, PoolNameTaken, PoolNotFound
from relay.messaging.errors import UnknownMembers
from relay.messaging.membership import colleagues
from relay.storage.database import Database
from relay.storage.tables import pool_members, pools

MAX_POOL_MEMBERS = 64


@dataclass(frozen=True)
class Pool:
    id: str
    tenant_id: str
    name: str
    created_at: datetime
    member_ids: tuple[str, ...]
    """In on-call order: the first is offered a new consult, escalation moves down the list."""


async def load_pool(connection: AsyncConnection, tenant_id: str, pool_id: str) -> Pool:
    """The pool with its members in on-call order; another tenant's is simply not found."""
    row = (await connection.execute(
        select(pools).where(pools.c.id == pool_id, pools.c.tenant_id == tenant_id)
    )).first()
    if row is None:
        raise PoolNotFound("no such pool")
    members = (await connection.scalars(
        select(pool_members.c.user_id).where(pool_members.c.pool_id == pool_id).order_by(pool_members.c.position)
    )).all()
    return Pool(row.id, row.tenant_id, row.name, row.created_at, tuple(members))


class PoolService:
    def __init__(self, database: Database, audit: AuditLog, clock: Clock) -> None:
        self._database = database
        self._audit = audit
        self._clock = clock

    async def create(self, principal: Principal, name: str, member_user_ids: Sequence[str]) -> Pool:
        pool_id = new_id()
        try:
            async with self._database.transaction() as connection:
                taken = await connection.scalar(select(pools.c.id).where(
                    pools.c.tenant_id == principal.tenant_id, pools.c.name == name,
                ))
                if taken is not None:
                    raise PoolNameTaken("the tenant has a pool of that name")
                await _require_members(connection, principal.tenant_id, member_user_ids)
                await connection.execute(insert(pools).values(
                    id=pool_id, tenant_id=principal.tenant_id, name=name, created_at=self._clock.now(),
                ))
                await _write_members(connection, pool_id, member_user_ids)
                await self._audit.record(
                    connection, AuditAction.POOL_CREATED, tenant_id=principal.tenant_id, actor=principal.actor,
                    object_type="pool", object_id=pool_id, details={"members": len(member_user_ids)},
                )
                return await load_pool(connection, principal.tenant_id, pool_id)
        except IntegrityError:
            raise PoolNameTaken("the tenant has a pool of that name") from None

    async def list_for(self, principal: Principal) -> list[Pool]:
        async with self._database.read() as connection:
            ids = (await connection.scalars(
                select(pools.c.id).where(pools.c.tenant_id == principal.tenant_id).order_by(pools.c.name)
            )).all()
            return [await load_pool(connection, principal.tenant_id, pool_id) for pool_id in ids]

    async def set_members(self, principal: Principal, pool_id: str, member_user_ids: Sequence[str]) -> Pool:
        """Replace the pool's on-call order; consults already open keep the members they were offered to."""
        async with self._database.transaction() as connection:
            await load_pool(connection, principal.tenant_id, pool_id)
            await _require_members(connection, principal.tenant_id, member_user_ids)
            await connection.execute(delete(pool_members).where(pool_members.c.pool_id == pool_id))
            await _write_members(connection, pool_id, member_user_ids)
            await self._audit.record(
                connection, AuditAction.POOL_UPDATED, tenant_id=principal.tenant_id, actor=principal.actor,
                object_type="pool", object_id=pool_id, details={"members": len(member_user_ids)},
            )
            return await load_pool(connection, principal.tenant_id, pool_id)


async def _require_members(connection: AsyncConnection, tenant_id: str, user_ids: Sequence[str]) -> None:
    if len(set(user_ids)) != len(user_ids):
        raise DuplicateMembers("each member appears once in a pool's on-call order")
    found = await colleagues(connection, tenant_id, set(user_ids))
    if missing := sorted(set(user_ids) - found):
        raise UnknownMembers("not enabled clinicians of this tenant", details={"user_ids": missing})


async def _write_members(connection: AsyncConnection, pool_id: str, user_ids: Sequence[str]) -> None:
    await connection.execute(insert(pool_members), [
        {"pool_id": pool_id, "user_id": user_id, "position": position} for position, user_id in enumerate(user_ids)
    ])
