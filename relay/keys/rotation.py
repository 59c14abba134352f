"""Rotating the server's key-encryption keys without downtime (``relay keys rotate``).

1. A new KEK is added to the key file and made active; running nodes notice the file
   changed and seal new secrets under it, while still opening blobs under older keys.
2. Every declared sealed column (relay/keys/sealed_columns.py) is re-sealed under the new
   key, a batch per transaction; a row changed meanwhile is left as its writer sealed it.
3. Keys no stored blob uses any more are dropped from the key file.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from relay.audit.actions import AuditAction
from relay.audit.log import AuditLog
from relay.clock import Clock
from relay.keys.keyring import Keyring, SecretUnreadable
from relay.keys.sealed_columns import SEALED_COLUMNS, SealedColumn
from relay.storage.database import Database

BATCH = 500
OPERATOR = ("operator", None)


@dataclass(frozen=True)
class RotationReport:
    active_key: str
    resealed: dict[str, int] = field(default_factory=dict)
    unreadable: dict[str, int] = field(default_factory=dict)
    retired: list[str] = field(default_factory=list)
    still_used: list[str] = field(default_factory=list)


async def rotate_keys(
    database: Database, keyring: Keyring, audit: AuditLog, clock: Clock,
    *, columns: tuple[SealedColumn, ...] = SEALED_COLUMNS,
) -> RotationReport:
    """Add a KEK, re-seal every sealed column under it, retire unused KEKs, and audit it."""
    active = keyring.add_key(clock.now())
    resealed: dict[str, int] = {}
    unreadable: dict[str, int] = {}
    for column in columns:
        resealed[column.label], unreadable[column.label] = await _reseal(database, keyring, column, active)
    in_use = await _key_ids_in_use(database, columns)
    retired = keyring.retire_keys(in_use)
    report = RotationReport(active, resealed, unreadable, retired, sorted(in_use - {active}))
    async with database.transaction() as connection:
        await audit.record(
            connection, AuditAction.KEYS_ROTATED, tenant_id=None, actor=OPERATOR, object_type="keyring",
            object_id=active,
            details={"active_key": active, "retired_keys": ",".join(retired),
                     "still_used_keys": ",".join(report.still_used), "resealed": sum(resealed.values()),
                     "unreadable": sum(unreadable.values())},
        )
    return report


async def _reseal(database: Database, keyring: Keyring, column: SealedColumn, active: str) -> tuple[int, int]:
    """Re-seal the column's values not yet under ``active``; returns (re-sealed, unreadable) counts."""
    resealed = unreadable = 0
    after = ""
    while True:
        async with database.transaction() as connection:
            rows = await _batch(connection, column, after)
            for row_id, blob in rows:
                try:
                    if Keyring.key_id_of(blob) == active:
                        continue
                    plaintext = keyring.open_sealed(blob, column.context(row_id))
                except SecretUnreadable:
                    unreadable += 1
                    continue
                changed = await connection.execute(
                    update(column.table).where(column.row_id == row_id, column.column == blob)
                    .values({column.name: keyring.seal(plaintext, column.context(row_id))})
                )
                resealed += changed.rowcount
        if len(rows) < BATCH:
            return resealed, unreadable
        after = rows[-1][0]


async def _key_ids_in_use(database: Database, columns: tuple[SealedColumn, ...]) -> set[str]:
    used: set[str] = set()
    for column in columns:
        async for blob in _blobs(database, column):
            try:
                used.add(Keyring.key_id_of(blob))
            except SecretUnreadable:
                continue
    return used


async def _blobs(database: Database, column: SealedColumn) -> AsyncIterator[bytes]:
    after = ""
    while True:
        async with database.read() as connection:
            rows = await _batch(connection, column, after)
        for _, blob in rows:
            yield blob
        if len(rows) < BATCH:
            return
        after = rows[-1][0]


async def _batch(connection: AsyncConnection, column: SealedColumn, after: str) -> list[Any]:
    return list((await connection.execute(
        select(column.row_id, column.column).where(column.column.is_not(None), column.row_id > after)
        .order_by(column.row_id).limit(BATCH)
    )).all())
