"""Opening the shared Redis connection, with errors that name the setting and the cause."""

from __future__ import annotations

import asyncio
import socket

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from relay.errors import SettingsError


async def open_redis(url: str) -> Redis:
    """Connect and ping; commands retry briefly on a dropped connection (a Redis restart)."""
    try:
        client = Redis.from_url(
            url, socket_connect_timeout=5, health_check_interval=30,
            retry=Retry(ExponentialBackoff(cap=2, base=0.05), 3),
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
        )
    except ValueError as error:
        raise SettingsError(f"RELAY_REDIS_URL: {error}") from None
    try:
        await asyncio.wait_for(client.ping(), timeout=10)
    except (RedisError, OSError, asyncio.TimeoutError) as error:
        await client.aclose()
        kwargs = client.connection_pool.connection_kwargs
        host = str(kwargs.get("host", "localhost"))
        where = f"[{host}]:{kwargs.get('port', 6379)}" if ":" in host else f"{host}:{kwargs.get('port', 6379)}"
        raise SettingsError(f"RELAY_REDIS_URL: cannot connect to {where}: {_reason(error)}") from None
    return client


def _reason(error: BaseException) -> str:
    """The root cause in a few words: redis-py wraps the socket error in its own."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, socket.gaierror):
            return "host not found"
        if isinstance(cause, (asyncio.TimeoutError, TimeoutError)):
            return "timed out"
        cause = cause.__cause__ or cause.__context__
    return str(error).splitlines()[0] if str(error) else type(error).__name__
