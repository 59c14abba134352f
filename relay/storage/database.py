"""The database seam: one async engine, write transactions, and readable connection errors."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

from sqlalchemy import event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from relay.errors import SettingsError
from relay.storage.sqlite_driver import inline_aiosqlite

IMMEDIATE = "relay_sqlite_immediate"
AFTER_COMMIT = "relay_after_commit"
WAL_CHECKPOINT_SECONDS = 1.0
log = logging.getLogger(__name__)
SUPPORTED_DRIVERS = {"sqlite+aiosqlite": "aiosqlite", "postgresql+asyncpg": "asyncpg"}


class Database:
    """Owns the engine. ``transaction()`` is the only way to write.

    SQLite allows one writer at a time: write transactions start with BEGIN IMMEDIATE, so a
    read-then-write (the audit chain head) never works on a stale snapshot even when a CLI
    command writes beside a running server, and an in-process lock queues this process's
    writers without spinning on SQLITE_BUSY. PostgreSQL relies on row locks instead.

    SQLite's commits never checkpoint the write-ahead log themselves (``wal_autocheckpoint=0``):
    left to them, the commit that crossed 1,000 pages copied them into the database file and
    fsynced it while every other writer waited. ``checkpoint()`` does it beside the writers
    instead; the server runs it every WAL_CHECKPOINT_SECONDS, and SQLite checkpoints when the
    last connection closes. With ``synchronous=NORMAL`` a commit reaches the disk only then,
    when the checkpoint syncs the log first (``durable_commits`` is False); a PostgreSQL commit
    is on disk when it returns.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        self.durable_commits = not self.is_sqlite
        self._write_lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction; what ``after_commit`` registered in it runs once it committed
        (and the SQLite write lock is released), never after a rollback."""
        callbacks: list[Callable[[], Awaitable[object]]] = []
        async with contextlib.AsyncExitStack() as stack:
            if self.is_sqlite:
                await stack.enter_async_context(self._write_lock)
            connection = await stack.enter_async_context(self.engine.connect())
            if self.is_sqlite:
                await connection.execution_options(**{IMMEDIATE: True})
            try:
                async with connection.begin():
                    yield connection
                callbacks = connection.info.get(AFTER_COMMIT, [])
            finally:
                connection.info.pop(AFTER_COMMIT, None)
        for callback in callbacks:
            try:
                await callback()
            except Exception:
                log.exception("a step after a committed transaction failed")

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as connection:
            yield connection

    @staticmethod
    def after_commit(connection: AsyncConnection, callback: Callable[[], Awaitable[object]]) -> None:
        """Run ``callback`` once the transaction ``connection`` belongs to has committed."""
        connection.info.setdefault(AFTER_COMMIT, []).append(callback)

    async def checkpoint(self) -> None:
        """Copy what SQLite's write-ahead log holds into the database file (PASSIVE: writers
        and readers go on meanwhile); nothing to do on PostgreSQL. The statement is closed at
        once: left open, it would pin its connection to the snapshot it read."""
        if not self.is_sqlite:
            return
        async with self.engine.connect() as connection:
            driver = (await connection.get_raw_connection()).driver_connection
            assert driver is not None
            checkpointing = await driver.execute("PRAGMA wal_checkpoint(PASSIVE)")
            await checkpointing.close()

    async def ping(self) -> None:
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def close(self) -> None:
        await self.engine.dispose()


def create_engine(url: str) -> AsyncEngine:
    """An async engine for a supported URL, or SettingsError saying what to change."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise SettingsError("RELAY_DATABASE_URL: not a database URL") from None
    if parsed.drivername not in SUPPORTED_DRIVERS:
        supported = ", ".join(f"{name}://" for name in SUPPORTED_DRIVERS)
        raise SettingsError(f"RELAY_DATABASE_URL: unsupported driver {parsed.drivername!r}; use {supported}")
    try:
        if parsed.drivername.startswith("sqlite"):
            engine = create_async_engine(parsed, connect_args={"timeout": 30}, module=inline_aiosqlite())
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
            event.listen(engine.sync_engine, "begin", _sqlite_begin)
            return engine
        return create_async_engine(parsed, pool_pre_ping=True, pool_size=10, max_overflow=10)
    except NoSuchModuleError:
        module = SUPPORTED_DRIVERS[parsed.drivername]
        raise SettingsError(f"RELAY_DATABASE_URL: driver not installed; pip install {module}") from None


def _sqlite_begin(connection: Connection) -> None:
    """SQLAlchemy's documented recipe for taking over pysqlite's transaction handling."""
    immediate = connection.get_execution_options().get(IMMEDIATE, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    dbapi_connection.isolation_level = None  # type: ignore[attr-defined]
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.close()


async def open_database(url: str) -> Database:
    """Connect and check the database answers; errors name the setting and the cause."""
    engine = create_engine(url)
    database = Database(engine)
    try:
        await asyncio.wait_for(database.ping(), timeout=10)
    except (TimeoutError, OSError, DBAPIError) as error:
        await engine.dispose()
        raise SettingsError(f"RELAY_DATABASE_URL: {describe_connection_error(url, error)}") from None
    return database


def describe_connection_error(url: str, error: BaseException) -> str:
    parsed = make_url(url)
    host = parsed.host
    if host is None:
        where = str(parsed.database)
    else:
        where = f"[{host}]:{parsed.port or 5432}" if ":" in host else f"{host}:{parsed.port or 5432}"
    cause = error.orig if isinstance(error, DBAPIError) and error.orig is not None else error
    if isinstance(cause, ConnectionRefusedError) or "Connect call failed" in str(cause):
        reason = "connection refused"
    elif isinstance(cause, socket.gaierror):
        reason = "host not found"
    elif isinstance(cause, asyncio.TimeoutError):
        reason = "timed out"
    else:
        reason = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
    return f"cannot connect to {where}: {reason}"
