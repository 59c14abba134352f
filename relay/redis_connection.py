"""Opening the shared Redis connection, with errors that name the setting and the cause."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis
from redis.exceptions import RedisError

from relay.errors import SettingsError


async def open_redis(url: str) -> Redis:
    try:
        client = Redis.from_url(url, socket_connect_timeout=5, health_check_interval=30)
    except ValueError as error:
        raise SettingsError(f"RELAY_REDIS_URL: {error}") from None
    try:
        await asyncio.wait_for(client.ping(), timeout=10)
    except (RedisError, OSError, asyncio.TimeoutError) as error:
        await client.aclose()
        kwargs = client.connection_pool.connection_kwargs
        where = f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"
        reason = "connection refused" if "refused" in str(error).lower() else (str(error) or "timed out")
        raise SettingsError(f"RELAY_REDIS_URL: cannot connect to {where}: {reason}") from None
    return client
