"""SQLAlchemy's aiosqlite adaptation, with statements run on the event loop's own thread.

The stock adaptation hands every statement to aiosqlite's thread and back through the event
loop, in four trips (open a cursor, execute, fetch, close). A trip costs about 100 µs on an idle
loop and several times that on a busy one, where every hand-back waits its turn, while the
statements Relay runs take 10 to 50 µs in SQLite itself.

In WAL mode with ``synchronous=NORMAL`` and no automatic checkpoints (see ``database.py``), a
statement has nothing to wait for. A commit appends to the log and does not fsync. A reader
never waits for a writer. Pages come from the operating system's cache, or from disk when cold.
The one exception is BEGIN IMMEDIATE, which waits for the write lock while another process (a
CLI command) holds it. So this cursor runs statements, commits and rollbacks where the caller
runs. A lock-taking BEGIN is tried there too, without waiting (a zero busy timeout for that
one statement); only when another process holds the lock does it go to aiosqlite's thread,
where the busy wait blocks nothing else. Checkpoints and server-side cursors (streamed
results) stay on that thread too.

The engine gets it as its DBAPI module (``create_async_engine(..., module=inline_aiosqlite())``),
SQLAlchemy's documented way to substitute a dialect's driver module. Both threads use each
sqlite3 connection (``check_same_thread=False``, which SQLAlchemy sets for file databases
anyway); SQLAlchemy never uses a connection for two things at once, so they take turns.
"""

from __future__ import annotations

import collections
import sqlite3
from typing import Any, cast

import aiosqlite
from sqlalchemy.connectors.asyncio import AsyncAdapt_dbapi_connection
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT
from sqlalchemy.util.concurrency import await_

LOCK_TAKING = ("BEGIN IMMEDIATE", "BEGIN EXCLUSIVE")
"""Statements that may wait for another process's write transaction to end."""
Outcome = tuple[Any, list[Any], int, int | None]


def _run(connection: sqlite3.Connection, operation: str, parameters: Any, many: bool) -> Outcome:
    """The whole statement, from cursor to close, leaving nothing open on the connection."""
    cursor = connection.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        else:
            cursor.execute(operation, () if parameters is None else parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else []
        return description, rows, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


def _begin_at_once(connection: sqlite3.Connection, operation: str, parameters: Any) -> Outcome | None:
    """Run a lock-taking BEGIN if the write lock is free; None, without waiting, when another
    process holds it. The connection's busy timeout is restored either way."""
    patience = _run(connection, "PRAGMA busy_timeout", None, False)[1][0][0]
    _run(connection, "PRAGMA busy_timeout = 0", None, False)
    try:
        return _run(connection, operation, parameters, False)
    except sqlite3.OperationalError as error:
        if error.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY:
            return None
        raise
    finally:
        _run(connection, f"PRAGMA busy_timeout = {int(patience)}", None, False)


class InlineCursor(AsyncAdapt_aiosqlite_cursor):
    __slots__ = ("_description", "_lastrowid", "_rowcount")

    def __init__(self, adapt_connection: AsyncAdapt_dbapi_connection) -> None:
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> Any:
        return self._lastrowid

    async def _async_soft_close(self) -> None:
        """Nothing stays open after a statement."""

    def close(self) -> None:
        self._rows.clear()

    async def _execute_async(self, operation: Any, parameters: Any) -> None:
        await self._statement(operation, parameters, many=False)

    async def _executemany_async(self, operation: Any, seq_of_parameters: Any) -> None:
        await self._statement(operation, seq_of_parameters, many=True)

    async def _statement(self, operation: str, parameters: Any, *, many: bool) -> None:
        """Awaited through SQLAlchemy's greenlet like any async driver call, but it only suspends
        for a lock-taking BEGIN while another process writes."""
        driver = cast(aiosqlite.Connection, self._connection)
        outcome: Outcome | None
        if not operation.startswith(LOCK_TAKING):
            outcome = _run(driver._conn, operation, parameters, many)
        elif (outcome := _begin_at_once(driver._conn, operation, parameters)) is None:
            outcome = await driver._execute(_run, driver._conn, operation, parameters, many)
        self._description, rows, self._rowcount, self._lastrowid = outcome
        self._rows = collections.deque(rows)


class InlineConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = InlineCursor

    def commit(self) -> None:
        if self._connection._connection:
            self._connection._conn.commit()

    def rollback(self) -> None:
        if self._connection._connection:
            self._connection._conn.rollback()


class InlineDBAPI(AsyncAdapt_aiosqlite_dbapi):
    def connect(self, *arg: Any, **kw: Any) -> InlineConnection:
        connection = self.aiosqlite.connect(*arg, **{**kw, "check_same_thread": False})
        connection._thread.daemon = True
        return InlineConnection(self, await_(connection))


def inline_aiosqlite() -> InlineDBAPI:
    """The DBAPI module to hand to an ``sqlite+aiosqlite`` engine."""
    return InlineDBAPI(aiosqlite, sqlite3)
