"""The scale-out broker: events go through Redis pub/sub so every node's subscribers see them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from relay.broker.contract import Broker

log = logging.getLogger(__name__)


class RedisBroker(Broker):
    def __init__(self, redis: Redis, namespace: str) -> None:
        super().__init__()
        self._redis = redis
        self._prefix = f"{namespace}:events:"
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def publish(self, channel: str, event: dict[str, Any]) -> None:
        await self._redis.publish(self._prefix + channel, json.dumps(event))

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen())
        await asyncio.wait_for(self._ready.wait(), timeout=10)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _listen(self) -> None:
        backoff = 0.5
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.psubscribe(self._prefix + "*")
                self._ready.set()
                backoff = 0.5
                async for message in pubsub.listen():
                    if message["type"] != "pmessage":
                        continue
                    channel = message["channel"].decode()[len(self._prefix) :]
                    try:
                        await self._dispatch(channel, json.loads(message["data"]))
                    except Exception:
                        log.exception("broker handler failed on channel %s", channel)
            except RedisConnectionError:
                log.warning("broker lost its Redis connection; retrying in %.1fs", backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
