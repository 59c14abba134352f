"""What survives a restart. The filesystem spool: a relay process killed mid-upload loses
nothing it acknowledged, keeps its deadlines, and the upload resumes. The Redis spool: with
AOF, a Redis crash or restart loses nothing acknowledged; without persistence, objects are
gone and report missing (docs/spool.md). The shared Redis is never restarted: these tests run
their own redis-server on a free port."""

from __future__ import annotations

import asyncio
import hashlib
import signal
import sys
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis.asyncio

from relay.camera.spool.contract import SpoolObjectMissing
from relay.camera.spool.filesystem import FilesystemSpool
from relay.camera.spool.redis import DEFAULT_GRACE, RedisSpool
from relay.ids import new_id
from tests.support.backends import BACKENDS
from tests.support.clock import ManualClock
from tests.support.redis_server import (
    NO_PERSISTENCE,
    ThrowawayRedis,
    throwaway_redis_servers,
)

MiB = 1024 * 1024
STREAM = hashlib.shake_256(b"sealed upload").digest(8 * MiB)
ACKNOWLEDGED = 3 * MiB + 5
START_TIMEOUT = 20.0
scaleout_only = pytest.mark.skipif("scaleout" not in BACKENDS, reason="RELAY_TEST_BACKENDS leaves out scale-out")

UPLOADER = r"""
import asyncio, hashlib, sys
from datetime import datetime
from pathlib import Path
from relay.camera.spool.filesystem import FilesystemSpool

directory, object_id, now, expires_at, acknowledged = sys.argv[1:6]
stream = hashlib.shake_256(b"sealed upload").digest(8 * 1024 * 1024)

class Frozen:
    def now(self):
        return datetime.fromisoformat(now)

async def pieces(start, end, pause):
    for offset in range(start, end, 64 * 1024):
        await asyncio.sleep(pause)
        yield stream[offset : min(offset + 64 * 1024, end)]

async def main():
    spool = FilesystemSpool(Path(directory), Frozen())
    await spool.create(object_id, expires_at=datetime.fromisoformat(expires_at))
    size = await spool.append(object_id, 0, pieces(0, int(acknowledged), 0))
    print("acknowledged", size, flush=True)
    await spool.append(object_id, size, pieces(size, len(stream), 0.02))

asyncio.run(main())
"""


async def pieces(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for offset in range(0, len(data), size):
        yield data[offset : offset + size]


async def read_all(spool: FilesystemSpool | RedisSpool, object_id: str) -> bytes:
    return b"".join([chunk async for chunk in spool.read(object_id)])


async def test_a_new_filesystem_spool_over_the_same_directory_has_the_bytes_and_deadline(tmp_path: Path) -> None:
    clock = ManualClock()
    first = FilesystemSpool(tmp_path / "spool", clock)
    object_id = new_id()
    await first.create(object_id, expires_at=clock.now() + timedelta(hours=1))
    await first.append(object_id, 0, pieces(STREAM[:ACKNOWLEDGED]))
    del first

    restarted = FilesystemSpool(tmp_path / "spool", clock)
    assert await restarted.size(object_id) == ACKNOWLEDGED
    assert await restarted.append(object_id, ACKNOWLEDGED, pieces(STREAM[ACKNOWLEDGED:])) == len(STREAM)
    assert await read_all(restarted, object_id) == STREAM
    clock.advance(3599)
    assert await restarted.sweep(clock.now()) == []
    clock.advance(1)
    assert await restarted.sweep(clock.now()) == [object_id]


async def test_a_relay_killed_mid_upload_loses_nothing_acknowledged_and_the_upload_resumes(tmp_path: Path) -> None:
    clock = ManualClock()
    directory, object_id = tmp_path / "spool", new_id()
    expires_at = clock.now() + timedelta(hours=1)
    uploader = await asyncio.create_subprocess_exec(
        sys.executable, "-c", UPLOADER, str(directory), object_id, clock.now().isoformat(), expires_at.isoformat(),
        str(ACKNOWLEDGED), stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert uploader.stdout is not None
        line = await asyncio.wait_for(uploader.stdout.readline(), START_TIMEOUT)
        assert line.split() == [b"acknowledged", str(ACKNOWLEDGED).encode()]
        data_file = directory / object_id[:2] / object_id
        deadline = time.monotonic() + START_TIMEOUT
        while data_file.stat().st_size < ACKNOWLEDGED + 3 * 64 * 1024 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
    finally:
        uploader.kill()
        await uploader.wait()
    assert uploader.returncode == -signal.SIGKILL

    restarted = FilesystemSpool(directory, clock)
    resume_at = await restarted.size(object_id)
    assert ACKNOWLEDGED + 3 * 64 * 1024 <= resume_at < len(STREAM)
    assert await read_all(restarted, object_id) == STREAM[:resume_at]
    assert await restarted.append(object_id, resume_at, pieces(STREAM[resume_at:])) == len(STREAM)
    assert await read_all(restarted, object_id) == STREAM
    clock.advance(3599)
    assert await restarted.sweep(clock.now()) == []
    clock.advance(1)
    assert await restarted.sweep(clock.now()) == [object_id]


@pytest.fixture
async def throwaway_redis() -> AsyncIterator[list[ThrowawayRedis]]:
    async with throwaway_redis_servers() as servers:
        yield servers


async def upload_then_restart(
    server: ThrowawayRedis, how: signal.Signals
) -> tuple[RedisSpool, redis.asyncio.Redis, ManualClock, str]:
    """Start ``server``, acknowledge part of an upload, stop it with ``how`` and start it again."""
    await server.start()
    client = redis.asyncio.Redis.from_url(server.url)
    clock = ManualClock()
    spool = RedisSpool(client, "relay", clock)
    object_id = new_id()
    await spool.create(object_id, expires_at=clock.now() + timedelta(hours=1))
    assert await spool.append(object_id, 0, pieces(STREAM[:ACKNOWLEDGED])) == ACKNOWLEDGED
    await server.stop(how)
    await server.start()
    await client.connection_pool.disconnect()
    return spool, client, clock, object_id


@scaleout_only
@pytest.mark.parametrize(
    ("fsync", "how"),
    [("always", signal.SIGKILL), ("everysec", signal.SIGTERM)],
    ids=["crash-with-appendfsync-always", "clean-restart-with-appendfsync-everysec"],
)
async def test_with_aof_a_redis_restart_loses_nothing_acknowledged(
    tmp_path: Path, throwaway_redis: list[ThrowawayRedis], fsync: str, how: signal.Signals
) -> None:
    server = ThrowawayRedis(tmp_path / "redis", "--appendonly", "yes", "--appendfsync", fsync)
    throwaway_redis.append(server)
    spool, client, clock, object_id = await upload_then_restart(server, how)
    try:
        assert await spool.size(object_id) == ACKNOWLEDGED
        assert await spool.append(object_id, ACKNOWLEDGED, pieces(STREAM[ACKNOWLEDGED:])) == len(STREAM)
        assert await read_all(spool, object_id) == STREAM
        expected_ttl = (timedelta(hours=1) + DEFAULT_GRACE) // timedelta(milliseconds=1)
        async for key in client.scan_iter(match=f"relay:spool:{object_id}*"):
            assert expected_ttl - 10_000 < await client.pttl(key) <= expected_ttl
        clock.advance(3600)
        assert await spool.sweep(clock.now()) == [object_id]
        assert [key async for key in client.scan_iter(match="relay:*")] == []
    finally:
        await client.aclose()


@scaleout_only
async def test_without_persistence_a_redis_restart_loses_the_objects_and_says_so(
    tmp_path: Path, throwaway_redis: list[ThrowawayRedis]
) -> None:
    server = ThrowawayRedis(tmp_path / "redis", *NO_PERSISTENCE)
    throwaway_redis.append(server)
    spool, client, clock, object_id = await upload_then_restart(server, signal.SIGKILL)
    try:
        with pytest.raises(SpoolObjectMissing):
            await spool.size(object_id)
        with pytest.raises(SpoolObjectMissing):
            await spool.append(object_id, ACKNOWLEDGED, pieces(STREAM[ACKNOWLEDGED:]))
        with pytest.raises(SpoolObjectMissing):
            await read_all(spool, object_id)
        assert await spool.delete(object_id) is False
        assert await spool.sweep(clock.now() + timedelta(days=1)) == []
        again = new_id()
        await spool.create(again, expires_at=clock.now() + timedelta(hours=1))
        assert await spool.append(again, 0, pieces(STREAM)) == len(STREAM)
        assert await read_all(spool, again) == STREAM
    finally:
        await client.aclose()
