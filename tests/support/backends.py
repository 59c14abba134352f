"""The two configurations every test runs against: the embedded defaults (SQLite, in-process
broker) and scale-out (PostgreSQL + Redis on 127.0.0.1). An unreachable backend is an error,
never a skip."""

from __future__ import annotations

import os

import asyncpg
import redis.asyncio

from relay.storage.tables import metadata

POSTGRES_URL = os.environ.get("RELAY_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("RELAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
BACKENDS = [name for name in os.environ.get("RELAY_TEST_BACKENDS", "embedded,scaleout").split(",") if name]


def asyncpg_dsn(url: str = POSTGRES_URL) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def reset_postgres() -> None:
    """Empty every Relay table (the schema stays migrated for the whole run)."""
    connection = await asyncpg.connect(asyncpg_dsn())
    try:
        names = ", ".join(f'"{table.name}"' for table in metadata.sorted_tables)
        await connection.execute(f"TRUNCATE {names} CASCADE")
    finally:
        await connection.close()


async def drop_postgres_schema() -> None:
    connection = await asyncpg.connect(asyncpg_dsn())
    try:
        await connection.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        await connection.close()


async def clear_redis_namespace(namespace: str) -> None:
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"{namespace}:*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()
