"""The scale-out ephemeral store: Redis counters and SET NX claims with TTLs, shared by all nodes."""

from __future__ import annotations

from redis.asyncio import Redis

from relay.ephemeral.contract import EphemeralStore


class RedisEphemeralStore(EphemeralStore):
    def __init__(self, redis: Redis, namespace: str) -> None:
        self._redis = redis
        self._prefix = f"{namespace}:eph:"

    async def increment(self, key: str, ttl: int) -> int:
        name = self._prefix + key
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(name)
            pipe.expire(name, ttl, nx=True)
            count, _ = await pipe.execute()
        return int(count)

    async def claim(self, key: str, ttl: int) -> bool:
        return bool(await self._redis.set(self._prefix + key, b"1", ex=ttl, nx=True))
