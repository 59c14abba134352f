"""A redis-server of the test's own on a free port, so a test can crash or restart Redis
without touching the shared one on 127.0.0.1:6379."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import redis.asyncio
from redis.exceptions import BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError

from tests.support.harness import free_port

START_TIMEOUT = 20.0
AOF_ALWAYS = ("--appendonly", "yes", "--appendfsync", "always")
NO_PERSISTENCE = ("--appendonly", "no")


class ThrowawayRedis:
    """A redis-server over ``directory``, stopped and started again by its process id on the
    same port. ``persistence`` adds options (AOF_ALWAYS, NO_PERSISTENCE); RDB snapshots are off."""

    def __init__(self, directory: Path, *persistence: str) -> None:
        executable = shutil.which("redis-server")
        assert executable, "these tests start their own Redis: install redis-server (Debian package redis-server)"
        directory.mkdir()
        self.port = free_port()
        self.command = [
            executable, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(directory),
            "--save", "", "--logfile", "", *persistence,
        ]
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        """Start the server and wait until it answers (after loading its AOF, if any)."""
        self.process = await asyncio.create_subprocess_exec(*self.command, stdout=asyncio.subprocess.DEVNULL)
        probe = redis.asyncio.Redis.from_url(self.url)
        deadline = time.monotonic() + START_TIMEOUT
        try:
            while True:
                try:
                    await probe.ping()
                    return
                except (RedisConnectionError, BusyLoadingError):
                    if time.monotonic() > deadline or self.process.returncode is not None:
                        raise
                    await asyncio.sleep(0.05)
        finally:
            await probe.aclose()

    async def stop(self, how: signal.Signals) -> None:
        """Send ``how`` (SIGKILL: a crash; SIGTERM: a clean shutdown) to the process and wait for it."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(how)
            await asyncio.wait_for(self.process.wait(), START_TIMEOUT)
        self.process = None

    async def restart(self, how: signal.Signals) -> None:
        await self.stop(how)
        await self.start()


@contextlib.asynccontextmanager
async def throwaway_redis_servers() -> AsyncIterator[list[ThrowawayRedis]]:
    """Collects the servers a test starts and kills each (by its process id) at the end."""
    servers: list[ThrowawayRedis] = []
    try:
        yield servers
    finally:
        for server in servers:
            await server.stop(signal.SIGKILL)
