"""How long an open pool consult waits for its on-call clinician: the tenant's own time, else
the server's ``consult_escalation`` setting. Changing it affects escalations scheduled afterwards."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from relay.audit.actions import AuditAction
from relay.audit.log import AuditLog
from relay.auth.principal import Principal
from relay.storage.database import Database
from relay.storage.tables import tenants

MIN_ESCALATION = 60
MAX_ESCALATION = 24 * 3600


class EscalationPolicy:
    def __init__(self, database: Database, audit: AuditLog, *, default_seconds: int) -> None:
        self._database = database
        self._audit = audit
        self.default_seconds = default_seconds

    async def window(self, connection: AsyncConnection, tenant_id: str) -> timedelta:
        own = await connection.scalar(select(tenants.c.consult_escalation_seconds).where(tenants.c.id == tenant_id))
        return timedelta(seconds=own if own is not None else self.default_seconds)

    async def tenant_seconds(self, tenant_id: str) -> int | None:
        """The tenant's own time in seconds, None when it uses the server's default."""
        async with self._database.read() as connection:
            return await connection.scalar(
                select(tenants.c.consult_escalation_seconds).where(tenants.c.id == tenant_id)
            )

    async def set(self, principal: Principal, seconds: int | None) -> None:
        """Give the caller's tenant its own escalation time (None: back to the server's default)."""
        async with self._database.transaction() as connection:
            await connection.execute(
                update(tenants).where(tenants.c.id == principal.tenant_id).values(consult_escalation_seconds=seconds)
            )
            await self._audit.record(
                connection, AuditAction.CONSULT_ESCALATION_SET, tenant_id=principal.tenant_id, actor=principal.actor,
                object_type="tenant", object_id=principal.tenant_id, details={"seconds": seconds},
            )
