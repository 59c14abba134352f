"""Reading the audit log back: a tenant's events page by page, verification of the whole chain,
and exports. Each request is itself recorded in the log, once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, select

from relay.audit.actions import AuditAction
from relay.audit.export import export_lines
from relay.audit.log import AuditLog
from relay.audit.verify import Anchor, Verification, verify_chain
from relay.auth.principal import Principal
from relay.storage.database import Database
from relay.storage.tables import audit_events

Actor = tuple[str, str | None]


@dataclass(frozen=True)
class EventFilter:
    """Which rows to read: ``since`` is inclusive, ``until`` exclusive; unset fields match all."""

    since: datetime | None = None
    until: datetime | None = None
    action: str | None = None
    actor_id: str | None = None
    object_id: str | None = None
    outcome: str | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        c = audit_events.c
        conditions: list[ColumnElement[bool]] = []
        if self.since is not None:
            conditions.append(c.occurred_at >= self.since)
        if self.until is not None:
            conditions.append(c.occurred_at < self.until)
        for name in ("action", "actor_id", "object_id", "outcome"):
            value = getattr(self, name)
            if value is not None:
                conditions.append(c[name] == value)
        return conditions

    @property
    def names(self) -> str:
        """The filters in use, by name only (for the audit row of the read itself)."""
        return ",".join(name for name in self.__dataclass_fields__ if getattr(self, name) is not None)


@dataclass(frozen=True)
class AuditEvent:
    seq: int
    occurred_at: datetime
    tenant_id: str | None
    actor_type: str
    actor_id: str | None
    action: str
    object_type: str | None
    object_id: str | None
    outcome: str
    details: str
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class EventPage:
    events: list[AuditEvent]
    next_after: int | None
    through: int


@dataclass(frozen=True)
class Export:
    seq: int
    lines: AsyncIterator[str]


class AuditReader:
    def __init__(self, database: Database, audit: AuditLog, audit_key: bytes) -> None:
        self._database = database
        self._audit = audit
        self._key = audit_key

    async def events(
        self, principal: Principal, event_filter: EventFilter, *, after: int, limit: int, through: int | None
    ) -> EventPage:
        """One page of the caller's tenant's events after seq ``after`` and up to ``through``.

        ``through`` defaults to the newest row now, and pages read with the ``through`` of the
        first page see a fixed snapshot, so reading to the end terminates even though every
        request adds its own row to the log.
        """
        async with self._database.read() as connection:
            if through is None:
                through = int(await connection.scalar(select(func.max(audit_events.c.seq))) or 0)
            rows = (
                await connection.execute(
                    select(audit_events)
                    .where(audit_events.c.tenant_id == principal.tenant_id, audit_events.c.seq > after,
                           audit_events.c.seq <= through, *event_filter.conditions())
                    .order_by(audit_events.c.seq)
                    .limit(limit + 1)
                )
            ).all()
        events = [AuditEvent(**row._mapping) for row in rows[:limit]]
        await self._audit.record_alone(
            AuditAction.AUDIT_READ, tenant_id=principal.tenant_id, actor=principal.actor,
            details={"after": after, "through": through, "returned": len(events), "filters": event_filter.names},
        )
        next_after = events[-1].seq if len(rows) > limit else None
        return EventPage(events, next_after, through)

    async def verify(self, *, actor: Actor, tenant_id: str | None, anchors: tuple[Anchor, ...] = ()) -> Verification:
        """Verify the whole chain (it is one chain for the server) and record that it was checked."""
        verification = await verify_chain(self._database, self._key, anchors=anchors)
        await self._audit.record_alone(
            AuditAction.AUDIT_VERIFIED, tenant_id=tenant_id, actor=actor,
            outcome="success" if verification.intact else "failure",
            details={"rows": verification.rows, "findings": verification.finding_count,
                     "head_seq": verification.head_seq},
        )
        return verification

    async def export(self, *, actor: Actor, tenant_id: str | None, event_filter: EventFilter) -> Export:
        """Record the export, then stream the matching rows up to and including that record.

        ``tenant_id`` None exports every row of the server (the operator's CLI only).
        """
        seq = await self._audit.record_alone(
            AuditAction.AUDIT_EXPORTED, tenant_id=tenant_id, actor=actor,
            details={"scope": "tenant" if tenant_id else "server",
                     "since": event_filter.since.isoformat() if event_filter.since else None,
                     "until": event_filter.until.isoformat() if event_filter.until else None},
        )
        conditions = event_filter.conditions()
        if tenant_id is not None:
            conditions.append(audit_events.c.tenant_id == tenant_id)
        return Export(seq, export_lines(self._database, conditions, through_seq=seq))
