"""Exporting audit rows as JSON lines: one object per row with every column, as stored.

``details`` stays the exact text the row was chained over and ``occurred_at`` is written as the
chain writes it, so whoever holds the audit key can re-check any line offline.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, select

from relay.storage.database import Database
from relay.storage.tables import audit_events

BATCH_SIZE = 1000
MEDIA_TYPE = "application/x-ndjson"


def export_record(row: Mapping[str, Any]) -> dict[str, Any]:
    record = {column.name: row[column.name] for column in audit_events.columns}
    record["occurred_at"] = row["occurred_at"].isoformat(timespec="microseconds")
    return record


def export_line(row: Mapping[str, Any]) -> str:
    return json.dumps(export_record(row), separators=(",", ":")) + "\n"


async def export_lines(
    database: Database, conditions: Sequence[ColumnElement[bool]], *, through_seq: int, batch_size: int = BATCH_SIZE
) -> AsyncIterator[str]:
    """The matching rows up to ``through_seq`` in seq order, one short read per batch."""
    after: int | None = None
    while True:
        query = (
            select(audit_events)
            .where(*conditions, audit_events.c.seq <= through_seq)
            .order_by(audit_events.c.seq)
            .limit(batch_size)
        )
        if after is not None:
            query = query.where(audit_events.c.seq > after)
        async with database.read() as connection:
            batch = [row._mapping for row in await connection.execute(query)]
        for row in batch:
            yield export_line(row)
        if len(batch) < batch_size:
            return
        after = int(batch[-1]["seq"])
