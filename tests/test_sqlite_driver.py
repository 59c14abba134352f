"""The embedded database's driver runs each statement in one trip to SQLite's thread; what the
code above it reads back (rows, counts, generated keys, errors) is what stock aiosqlite gives."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from relay.storage.database import Database, create_engine

metadata = MetaData()
notes = Table("notes", metadata, Column("id", Integer, primary_key=True), Column("body", String, unique=True))


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    opened = Database(create_engine(f"sqlite+aiosqlite:///{tmp_path / 'driver.db'}"))
    async with opened.transaction() as connection:
        await connection.run_sync(metadata.create_all)
    yield opened
    await opened.close()


async def test_rows_counts_and_generated_keys_come_back(database: Database) -> None:
    async with database.transaction() as connection:
        first = await connection.execute(insert(notes).values(body="a"))
        await connection.execute(insert(notes), [{"body": "b"}, {"body": "c"}, {"body": "d"}])
        changed = await connection.execute(update(notes).where(notes.c.body.in_(["b", "c"])).values(body=notes.c.body + "!"))
        returned = (await connection.execute(insert(notes).values(body="e").returning(notes.c.id, notes.c.body))).one()
    async with database.read() as connection:
        rows = (await connection.execute(select(notes.c.id, notes.c.body).order_by(notes.c.id))).all()
        nothing = (await connection.execute(select(notes).where(notes.c.id == 999))).first()
    assert first.inserted_primary_key == (1,)
    assert changed.rowcount == 2
    assert tuple(returned) == (5, "e")
    assert [tuple(row) for row in rows] == [(1, "a"), (2, "b!"), (3, "c!"), (4, "d"), (5, "e")]
    assert nothing is None


async def test_a_refused_statement_raises_and_rolls_its_transaction_back(database: Database) -> None:
    with pytest.raises(IntegrityError):
        async with database.transaction() as connection:
            await connection.execute(insert(notes).values(body="kept?"))
            await connection.execute(insert(notes).values(body="kept?"))
    with pytest.raises(OperationalError):
        async with database.read() as connection:
            await connection.exec_driver_sql("SELECT * FROM no_such_table")
    async with database.transaction() as connection:
        await connection.execute(insert(notes).values(body="after"))
    async with database.read() as connection:
        assert (await connection.execute(select(notes.c.body))).scalars().all() == ["after"]


async def test_large_results_stream_through_a_server_side_cursor(database: Database) -> None:
    async with database.transaction() as connection:
        await connection.execute(insert(notes), [{"body": f"note {number}"} for number in range(5000)])
    async with database.read() as connection:
        streamed = [row.id async for row in await connection.stream(select(notes.c.id).order_by(notes.c.id))]
        counted = (await connection.execute(select(func.count()).select_from(notes))).scalar_one()
    assert streamed == list(range(1, 5001))
    assert counted == 5000
