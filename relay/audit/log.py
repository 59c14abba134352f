"""Appending to the audit log: one row per event, chained to the one before it.

Rows hold ids, action names and outcome codes only, never PHI and never request bodies.
Rows are written in the caller's transaction, so an action and its audit row commit together.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from relay.audit.actions import AuditAction
from relay.audit.chain import GENESIS, row_hash
from relay.clock import Clock
from relay.metrics import Metrics
from relay.storage.database import Database
from relay.storage.tables import audit_events, audit_head

Detail = str | int | bool | None
SYSTEM = ("system", None)
HEAD = select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1).with_for_update()
INSERT_EVENT = insert(audit_events)
MOVE_HEAD = update(audit_head).where(audit_head.c.id == 1).values(seq=bindparam("seq"), hash=bindparam("hash"))
INSERT_HEAD = insert(audit_head).values(id=1)
"""Built once: nearly every write transaction appends an event."""


class AuditLog:
    def __init__(self, database: Database, audit_key: bytes, clock: Clock, metrics: Metrics) -> None:
        self._database = database
        self._key = audit_key
        self._clock = clock
        self._metrics = metrics

    async def record(
        self,
        connection: AsyncConnection,
        action: AuditAction,
        *,
        tenant_id: str | None,
        actor: tuple[str, str | None] = SYSTEM,
        object_type: str | None = None,
        object_id: str | None = None,
        outcome: str = "success",
        details: Mapping[str, Detail] | None = None,
    ) -> int:
        """Append one event inside ``connection``'s transaction and return its sequence number."""
        head = (await connection.execute(HEAD)).first()
        seq, prev_hash = (head.seq + 1, head.hash) if head else (1, GENESIS)
        row: dict[str, Any] = {
            "seq": seq,
            "occurred_at": self._clock.now(),
            "tenant_id": tenant_id,
            "actor_type": actor[0],
            "actor_id": actor[1],
            "action": action.value,
            "object_type": object_type,
            "object_id": object_id,
            "outcome": outcome,
            "details": json.dumps(dict(details or {}), sort_keys=True, separators=(",", ":")),
            "prev_hash": prev_hash,
        }
        row["hash"] = row_hash(self._key, row)
        await connection.execute(INSERT_EVENT, row)
        await connection.execute(MOVE_HEAD if head else INSERT_HEAD, {"seq": seq, "hash": row["hash"]})
        self._metrics.audit_events.labels(outcome).inc()
        return seq

    async def record_alone(self, action: AuditAction, **fields: Any) -> int:
        """Append one event in a transaction of its own (for failures whose work rolled back)."""
        async with self._database.transaction() as connection:
            return await self.record(connection, action, **fields)
