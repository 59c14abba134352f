"""The embedded database's driver runs statements on the event loop's thread and waits for
SQLite's write lock, while another process holds it, on aiosqlite's; what the code above it
reads back (rows, counts, generated keys, errors) is what stock aiosqlite gives."""

from __future__ import annotations

import asyncio
import sqlite3
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




async def test_a_checkpoint_leaves_its_connection_ready_for_the_next_writer(database: Database, tmp_path: Path) -> None:
    """Used one at a time, the pool hands the checkpoint's connection on; after another process
    (a CLI command) committed, a transaction on it must not find it pinned to an old snapshot."""
    async with database.transaction() as connection:
        await connection.execute(insert(notes).values(body="before"))
    await database.checkpoint()
    async with database.read() as connection:
        await connection.execute(select(notes.c.body))
    _write_from_another_process(tmp_path / "driver.db", "from the CLI")
    async with database.transaction() as connection:
        await connection.execute(insert(notes).values(body="from the server"))
    async with database.read() as connection:
        assert set((await connection.execute(select(notes.c.body))).scalars()) == {
            "before", "from the CLI", "from the server"}


async def test_a_write_with_the_lock_free_does_not_queue_behind_the_event_loops_other_work(
        database: Database) -> None:
    happened: list[str] = []
    asyncio.get_running_loop().call_soon(happened.append, "other work")
    async with database.transaction() as connection:
        await connection.execute(insert(notes).values(body="written"))
        happened.append("written")
    assert happened[0] == "written"


async def test_waiting_for_another_process_to_commit_leaves_the_event_loop_free(
        database: Database, tmp_path: Path) -> None:
    other_process = sqlite3.connect(tmp_path / "driver.db", isolation_level=None)
    other_process.execute("BEGIN IMMEDIATE")
    other_process.execute("INSERT INTO notes (body) VALUES ('from the CLI')")

    async def write() -> None:
        async with database.transaction() as connection:
            await connection.execute(insert(notes).values(body="from the server"))

    writing = asyncio.create_task(write())
    for _ in range(20):
        await asyncio.sleep(0.01)
    assert not writing.done(), "the server's write should still wait for the other process"
    other_process.commit()
    other_process.close()
    await asyncio.wait_for(writing, timeout=10)
    async with database.read() as connection:
        assert set((await connection.execute(select(notes.c.body))).scalars()) == {"from the CLI", "from the server"}


def _write_from_another_process(path: Path, body: str) -> None:
    other_process = sqlite3.connect(path, isolation_level=None)
    other_process.execute("INSERT INTO notes (body) VALUES (?)", (body,))
    other_process.close()
