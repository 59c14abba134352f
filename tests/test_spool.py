"""The spool contract, proven once for every implementation: the filesystem (embedded) and
Redis (scale-out). Time is the injected ManualClock; Redis cannot be moved, so its own expiry
is checked by the TTLs the keys carry."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import secrets
import stat
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
import redis.asyncio

from relay.camera.spool.contract import (
    Spool,
    SpoolInvalidId,
    SpoolObjectExists,
    SpoolObjectMissing,
    SpoolOffsetMismatch,
)
from relay.camera.spool.filesystem import FilesystemSpool
from relay.camera.spool.redis import DEFAULT_GRACE, RedisSpool
from relay.ids import new_id
from tests.support.backends import BACKENDS, REDIS_URL, clear_redis_namespace
from tests.support.clock import ManualClock

CHUNK = 1024
MiB = 1024 * 1024
IMPLEMENTATIONS = ["filesystem", *(["redis"] if "scaleout" in BACKENDS else [])]


@dataclass
class Storage:
    """One implementation's storage (a directory, or a Redis namespace) and spools over it."""

    kind: str
    clock: ManualClock
    directory: Path
    namespace: str
    admin: redis.asyncio.Redis | None = None
    clients: list[redis.asyncio.Redis] = field(default_factory=list)

    def open(self, chunk_size: int = CHUNK) -> Spool:
        """A spool over this storage: a restarted process on the filesystem, another node on Redis."""
        if self.kind == "filesystem":
            return FilesystemSpool(self.directory, self.clock, chunk_size=chunk_size)
        client = redis.asyncio.Redis.from_url(REDIS_URL)
        self.clients.append(client)
        return RedisSpool(client, self.namespace, self.clock, chunk_size)

    async def residue(self) -> list[str]:
        """Every file or key the storage still holds."""
        if self.kind == "filesystem":
            return sorted(str(path.relative_to(self.directory)) for path in self.directory.rglob("*") if path.is_file())
        assert self.admin is not None
        return sorted([key.decode() async for key in self.admin.scan_iter(match=f"{self.namespace}:*")])


@pytest.fixture(params=IMPLEMENTATIONS)
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    opened = Storage(request.param, ManualClock(), tmp_path / "spool", f"t{secrets.token_hex(6)}")
    if opened.kind == "redis":
        opened.admin = redis.asyncio.Redis.from_url(REDIS_URL)
    yield opened
    for client in opened.clients:
        await client.aclose()
    if opened.admin is not None:
        await clear_redis_namespace(opened.namespace)
        await opened.admin.aclose()


@pytest.fixture
def spool(storage: Storage) -> Spool:
    return storage.open()


async def pieces(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def read_all(spool: Spool, object_id: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in spool.read(object_id, start, end)])


async def new_object(spool: Spool, storage: Storage, data: bytes = b"", *, seconds: float = 3600) -> str:
    object_id = new_id()
    await spool.create(object_id, expires_at=storage.clock.now() + timedelta(seconds=seconds))
    if data:
        await spool.append(object_id, 0, pieces(data))
    return object_id


@pytest.mark.parametrize("length", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * MiB + 7])
async def test_bytes_come_back_exactly_in_bounded_chunks(spool: Spool, storage: Storage, length: int) -> None:
    data = os.urandom(length)
    object_id = await new_object(spool, storage)
    assert await spool.size(object_id) == 0
    assert await spool.append(object_id, 0, pieces(data)) == length
    assert await spool.size(object_id) == length
    chunks = [chunk async for chunk in spool.read(object_id)]
    assert b"".join(chunks) == data
    assert all(0 < len(chunk) <= CHUNK for chunk in chunks)


async def test_many_small_pieces_over_several_appends_make_one_object(spool: Spool, storage: Storage) -> None:
    rng = random.Random(7)
    data = rng.randbytes(5 * CHUNK + 3)
    cuts = sorted(rng.sample(range(1, len(data)), 150))
    parts = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    object_id = await new_object(spool, storage)
    offset = 0
    for batch in (parts[:1], parts[1:40], [b""], parts[40:100], parts[100:]):
        offset = await spool.append(object_id, offset, pieces(*batch))
        assert await spool.size(object_id) == offset
    assert offset == len(data)
    assert await read_all(spool, object_id) == data


async def test_an_append_at_the_wrong_offset_is_refused_and_writes_nothing(spool: Spool, storage: Storage) -> None:
    object_id = await new_object(spool, storage, b"0123456789")
    for offset in (0, 5, 9, 11, -1):
        with pytest.raises(SpoolOffsetMismatch) as refused:
            await spool.append(object_id, offset, pieces(b"xyz"))
        assert (refused.value.expected, refused.value.given) == (10, offset)
    with pytest.raises(SpoolOffsetMismatch):
        await spool.append(object_id, 3, pieces())
    assert await read_all(spool, object_id) == b"0123456789"
    assert await spool.append(object_id, 10, pieces(b"ab")) == 12


async def test_ranged_reads_at_every_boundary(spool: Spool, storage: Storage) -> None:
    data = os.urandom(3 * CHUNK + 5)
    object_id = await new_object(spool, storage, data)
    marks = sorted({0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK, len(data) - 1, len(data)})
    for start in marks:
        for end in (mark for mark in marks if mark >= start):
            assert await read_all(spool, object_id, start, end) == data[start:end], (start, end)
        assert await read_all(spool, object_id, start) == data[start:]
    for start, end in ((-1, 4), (5, 4), (0, len(data) + 1), (len(data) + 1, None)):
        with pytest.raises(ValueError):
            await read_all(spool, object_id, start, end)


async def test_an_object_that_does_not_exist_is_missing_everywhere(spool: Spool, storage: Storage) -> None:
    object_id = new_id()
    with pytest.raises(SpoolObjectMissing):
        await spool.size(object_id)
    with pytest.raises(SpoolObjectMissing):
        await spool.append(object_id, 0, pieces(b"x"))
    with pytest.raises(SpoolObjectMissing):
        await read_all(spool, object_id)
    with pytest.raises(SpoolObjectMissing):
        await spool.set_expiry(object_id, storage.clock.now() + timedelta(hours=1))
    assert await spool.delete(object_id) is False
    assert await spool.sweep(storage.clock.now() + timedelta(days=365)) == []
    assert await storage.residue() == []


async def test_creating_a_taken_id_is_refused_and_keeps_the_object(spool: Spool, storage: Storage) -> None:
    object_id = await new_object(spool, storage, b"sealed bytes")
    with pytest.raises(SpoolObjectExists):
        await spool.create(object_id, expires_at=storage.clock.now() + timedelta(seconds=5))
    assert await read_all(spool, object_id) == b"sealed bytes"
    storage.clock.advance(60)
    assert await spool.size(object_id) == len(b"sealed bytes")


async def test_put_makes_an_object_of_whole_bytes_with_its_deadline(spool: Spool, storage: Storage) -> None:
    object_id, sealed = new_id(), os.urandom(3 * CHUNK + 7)
    await spool.put(object_id, sealed, expires_at=storage.clock.now() + timedelta(seconds=60))
    assert await read_all(spool, object_id) == sealed
    assert await storage.open().size(object_id) == len(sealed)
    with pytest.raises(SpoolObjectExists):
        await spool.put(object_id, b"another message", expires_at=storage.clock.now() + timedelta(hours=1))
    assert await read_all(spool, object_id) == sealed
    storage.clock.advance(60)
    with pytest.raises(SpoolObjectMissing):
        await spool.size(object_id)
    assert await spool.sweep(storage.clock.now()) == [object_id]
    assert await storage.residue() == []


async def test_a_put_synced_later_is_served_at_once_and_a_sync_skips_what_was_deleted(
    spool: Spool, storage: Storage
) -> None:
    kept, dropped = new_id(), new_id()
    for object_id in (kept, dropped):
        await spool.put(object_id, f"sealed {object_id}".encode(), expires_at=storage.clock.now() + timedelta(hours=1),
                        synced=False)
    assert await read_all(storage.open(), kept) == f"sealed {kept}".encode()
    assert await spool.delete(dropped)
    await spool.sync()
    await spool.sync()
    assert await read_all(spool, kept) == f"sealed {kept}".encode()
    with pytest.raises(SpoolObjectMissing):
        await spool.size(dropped)


@pytest.mark.parametrize("storage", ["filesystem"], indirect=True)
async def test_a_put_synced_later_waits_for_no_fsync_and_sync_flushes_its_files_and_directory(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    fsync = os.fsync

    def recording(descriptor: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{descriptor}"))
        fsync(descriptor)

    monkeypatch.setattr(os, "fsync", recording)
    spool, later, now = storage.open(), new_id(), new_id()
    await spool.put(later, b"a message", expires_at=storage.clock.now() + timedelta(hours=1), synced=False)
    assert synced == []
    await spool.sync()
    shard = (storage.directory / later[:2]).resolve()
    assert sorted(synced) == sorted(str(path) for path in (shard, shard / later, shard / f"{later}.deadline"))
    synced.clear()
    await spool.sync()
    assert synced == []
    await spool.put(now, b"a photo's head", expires_at=storage.clock.now() + timedelta(hours=1))
    assert (storage.directory / now[:2] / now).resolve().as_posix() in synced


async def test_delete_removes_every_byte(spool: Spool, storage: Storage) -> None:
    object_id = await new_object(spool, storage, os.urandom(4 * CHUNK + 1))
    kept = await new_object(spool, storage, b"another upload")
    assert await spool.delete(object_id) is True
    assert all(object_id not in name for name in await storage.residue())
    with pytest.raises(SpoolObjectMissing):
        await spool.size(object_id)
    with pytest.raises(SpoolObjectMissing):
        await read_all(spool, object_id)
    assert await spool.delete(object_id) is False
    assert await read_all(spool, kept) == b"another upload"
    assert await spool.delete(kept) is True
    assert await storage.residue() == []


async def test_an_object_vanishes_at_its_deadline_and_sweep_removes_it(spool: Spool, storage: Storage) -> None:
    object_id = await new_object(spool, storage, os.urandom(2 * CHUNK + 3), seconds=60)
    storage.clock.advance(59)
    assert await spool.sweep(storage.clock.now()) == []
    assert await spool.size(object_id) == 2 * CHUNK + 3
    storage.clock.advance(1)
    with pytest.raises(SpoolObjectMissing):
        await spool.size(object_id)
    with pytest.raises(SpoolObjectMissing):
        await read_all(spool, object_id)
    with pytest.raises(SpoolObjectMissing):
        await spool.append(object_id, 2 * CHUNK + 3, pieces(b"late"))
    with pytest.raises(SpoolObjectMissing):
        await spool.set_expiry(object_id, storage.clock.now() + timedelta(hours=1))
    assert await storage.residue() != []
    assert await spool.sweep(storage.clock.now()) == [object_id]
    assert await storage.residue() == []
    assert await spool.sweep(storage.clock.now()) == []
    assert await spool.delete(object_id) is False


async def test_sweep_removes_only_what_is_due(spool: Spool, storage: Storage) -> None:
    soon = await new_object(spool, storage, b"soon", seconds=30)
    later = await new_object(spool, storage, b"later", seconds=90)
    empty = await new_object(spool, storage, seconds=30)
    removed = await spool.sweep(storage.clock.now() + timedelta(seconds=60))
    assert sorted(removed) == sorted([soon, empty])
    assert await read_all(spool, later) == b"later"


async def test_set_expiry_moves_the_deadline_both_ways(spool: Spool, storage: Storage) -> None:
    extended = await new_object(spool, storage, b"window extended", seconds=60)
    shortened = await new_object(spool, storage, b"delivered early", seconds=600)
    await spool.set_expiry(extended, storage.clock.now() + timedelta(seconds=600))
    await spool.set_expiry(shortened, storage.clock.now() + timedelta(seconds=30))
    storage.clock.advance(120)
    assert await spool.sweep(storage.clock.now()) == [shortened]
    assert await read_all(spool, extended) == b"window extended"
    storage.clock.advance(480)
    assert await spool.sweep(storage.clock.now()) == [extended]


async def test_a_deadline_without_a_time_zone_is_refused(spool: Spool, storage: Storage) -> None:
    naive = storage.clock.now().replace(tzinfo=None) + timedelta(hours=1)
    with pytest.raises(ValueError):
        await spool.create(new_id(), expires_at=naive)
    object_id = await new_object(spool, storage)
    with pytest.raises(ValueError):
        await spool.set_expiry(object_id, naive)


BAD_IDS = [
    "../" * 10 + "etc/passwd",
    "0" * 31,
    "0" * 33,
    "A" * 32,
    "g" * 32,
    "0" * 32 + "\n",
    "0" * 15 + "/" + "0" * 16,
    "*" * 32,
    "",
    "IMG_2041 wound left heel.jpg",
]


@pytest.mark.parametrize("bad_id", BAD_IDS)
async def test_an_id_that_is_not_opaque_hex_is_refused_before_touching_storage(
    spool: Spool, storage: Storage, bad_id: str
) -> None:
    later = storage.clock.now() + timedelta(hours=1)
    operations: Iterable[Callable[[], Awaitable[object]]] = (
        lambda: spool.create(bad_id, expires_at=later),
        lambda: spool.append(bad_id, 0, pieces(b"x")),
        lambda: spool.size(bad_id),
        lambda: read_all(spool, bad_id),
        lambda: spool.set_expiry(bad_id, later),
        lambda: spool.delete(bad_id),
    )
    for operation in operations:
        with pytest.raises(SpoolInvalidId):
            await operation()
    assert await storage.residue() == []


async def test_a_source_that_fails_midway_keeps_what_arrived_and_the_upload_resumes(
    spool: Spool, storage: Storage
) -> None:
    data = os.urandom(3 * CHUNK + 100)
    received = data[: 2 * CHUNK + 17]

    async def dropped_connection() -> AsyncIterator[bytes]:
        yield received[:CHUNK]
        yield received[CHUNK:]
        raise ConnectionResetError("client went away")

    object_id = await new_object(spool, storage)
    with pytest.raises(ConnectionResetError):
        await spool.append(object_id, 0, dropped_connection())
    resume_at = await spool.size(object_id)
    assert resume_at == len(received)
    assert await spool.append(object_id, resume_at, pieces(data[resume_at:])) == len(data)
    assert await read_all(spool, object_id) == data


async def test_concurrent_appends_at_the_same_offset_one_wins_whole(spool: Spool, storage: Storage) -> None:
    other_node = storage.open()
    object_id = await new_object(spool, storage, b"head:")

    async def slow(fill: bytes) -> AsyncIterator[bytes]:
        for _ in range(20):
            await asyncio.sleep(0)
            yield fill * (CHUNK // 3)

    outcomes = await asyncio.gather(
        spool.append(object_id, 5, slow(b"A")),
        other_node.append(object_id, 5, slow(b"B")),
        return_exceptions=True,
    )
    winners = [outcome for outcome in outcomes if isinstance(outcome, int)]
    losers = [outcome for outcome in outcomes if isinstance(outcome, SpoolOffsetMismatch)]
    assert len(winners) == 1 and len(losers) == 1, outcomes
    body = await read_all(other_node, object_id)
    assert len(body) == winners[0] == 5 + 20 * (CHUNK // 3)
    assert body in (b"head:" + b"A" * (20 * (CHUNK // 3)), b"head:" + b"B" * (20 * (CHUNK // 3)))


async def test_another_spool_over_the_same_storage_serves_the_object(spool: Spool, storage: Storage) -> None:
    data = os.urandom(2 * CHUNK + 9)
    object_id = await new_object(spool, storage, data[:CHUNK])
    other = storage.open()
    assert await other.append(object_id, CHUNK, pieces(data[CHUNK:])) == len(data)
    assert await read_all(spool, object_id) == data
    assert await other.delete(object_id) is True
    with pytest.raises(SpoolObjectMissing):
        await spool.size(object_id)


async def test_deleting_during_an_append_stops_it_and_leaves_nothing(spool: Spool, storage: Storage) -> None:
    object_id = await new_object(spool, storage)
    deleted = asyncio.Event()

    async def upload() -> AsyncIterator[bytes]:
        yield b"x" * (2 * CHUNK)
        await spool.delete(object_id)
        deleted.set()
        yield b"y" * CHUNK

    with pytest.raises(SpoolObjectMissing):
        await spool.append(object_id, 0, upload())
    assert deleted.is_set()
    assert await storage.residue() == []


async def test_deleting_during_a_read_stops_it(spool: Spool, storage: Storage) -> None:
    object_id = await new_object(spool, storage, os.urandom(3 * CHUNK))
    reader = spool.read(object_id)
    assert len(await anext(reader)) == CHUNK
    await spool.delete(object_id)
    with pytest.raises(SpoolObjectMissing):
        await anext(reader)
    await reader.aclose()


@pytest.mark.parametrize("storage", ["filesystem"], indirect=True)
async def test_filesystem_layout_is_opaque_and_private(storage: Storage) -> None:
    previous = os.umask(0)
    try:
        spool = storage.open()
        object_id = await new_object(spool, storage, b"ciphertext")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(storage.directory.stat().st_mode) == 0o700
    shard = storage.directory / object_id[:2]
    assert stat.S_IMODE(shard.stat().st_mode) == 0o700
    assert sorted(path.name for path in shard.iterdir()) == [object_id, f"{object_id}.deadline"]
    for path in shard.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert (shard / object_id).read_bytes() == b"ciphertext"


@pytest.mark.parametrize("storage", [kind for kind in IMPLEMENTATIONS if kind == "redis"], indirect=True)
async def test_every_redis_key_carries_the_deadline_as_its_ttl(storage: Storage) -> None:
    spool = storage.open()
    client = storage.admin
    assert client is not None
    object_id = await new_object(spool, storage, os.urandom(3 * CHUNK + 1), seconds=3600)
    keys = await storage.residue()
    object_keys = [key for key in keys if object_id in key]
    assert sorted(object_keys) == sorted(
        [f"{storage.namespace}:spool:{object_id}"] + [f"{storage.namespace}:spool:{object_id}:{n}" for n in range(4)]
    )
    grace_ms = DEFAULT_GRACE // timedelta(milliseconds=1)

    async def assert_ttls(seconds: int) -> None:
        expected = seconds * 1000 + grace_ms
        for key in object_keys:
            ttl = await client.pttl(key)
            assert expected - 5000 < ttl <= expected, (key, ttl, expected)

    await assert_ttls(3600)
    await spool.set_expiry(object_id, storage.clock.now() + timedelta(hours=72))
    await assert_ttls(72 * 3600)
    await spool.append(object_id, 3 * CHUNK + 1, pieces(os.urandom(CHUNK)))
    object_keys.append(f"{storage.namespace}:spool:{object_id}:4")
    await assert_ttls(72 * 3600)


async def test_a_256_mib_object_passes_through_in_bounded_memory(storage: Storage) -> None:
    spool = storage.open(chunk_size=256 * 1024)
    object_id = await new_object(spool, storage)
    block = os.urandom(64 * 1024 + 1)
    count = 256 * MiB // len(block)
    sent = hashlib.sha256()

    async def source() -> AsyncIterator[bytes]:
        for index in range(count):
            piece = index.to_bytes(8, "big") + block[8:]
            sent.update(piece)
            yield piece

    tracemalloc.start()
    try:
        size = await spool.append(object_id, 0, source())
        appending_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        received = hashlib.sha256()
        async for chunk in spool.read(object_id):
            received.update(chunk)
        reading_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        await spool.delete(object_id)
    assert size == count * len(block) > 255 * MiB
    assert received.digest() == sent.digest()
    assert appending_peak < 8 * MiB, f"appending peaked at {appending_peak / MiB:.1f} MiB"
    assert reading_peak < 8 * MiB, f"reading peaked at {reading_peak / MiB:.1f} MiB"


@pytest.mark.parametrize("storage", ["filesystem"], indirect=True)
async def test_an_unreadable_deadline_counts_as_expired(storage: Storage) -> None:
    spool = storage.open()
    object_id = await new_object(spool, storage, b"ciphertext")
    (storage.directory / object_id[:2] / f"{object_id}.deadline").write_text("not a time\n")
    with pytest.raises(SpoolObjectMissing):
        await spool.size(object_id)
    assert await spool.sweep(storage.clock.now()) == [object_id]
    assert await storage.residue() == []


def pending_deadline(storage: Storage) -> Path:
    """A new object's deadline as a create leaves it before its rename: ``ID.deadline.pending``."""
    object_id = new_id()
    shard = storage.directory / object_id[:2]
    shard.mkdir(mode=0o700)
    pending = shard / f"{object_id}.deadline.pending"
    pending.write_text((storage.clock.now() + timedelta(hours=1)).isoformat() + "\n")
    return pending


@pytest.mark.parametrize("storage", ["filesystem"], indirect=True)
async def test_a_sweep_during_a_create_leaves_the_deadline_being_written(storage: Storage) -> None:
    spool = storage.open()
    writing = pending_deadline(storage)
    assert await spool.sweep(storage.clock.now()) == []
    assert writing.exists()
    object_id = writing.name.split(".", 1)[0]
    writing.replace(writing.with_name(f"{object_id}.deadline"))
    writing.with_name(object_id).write_bytes(b"ciphertext")
    assert await spool.size(object_id) == len(b"ciphertext")


@pytest.mark.parametrize("storage", ["filesystem"], indirect=True)
async def test_a_sweep_removes_a_deadline_a_crashed_writer_left_pending(storage: Storage) -> None:
    spool = storage.open()
    abandoned = pending_deadline(storage)
    an_hour_ago = abandoned.stat().st_mtime - 3600
    os.utime(abandoned, (an_hour_ago, an_hour_ago))
    assert await spool.sweep(storage.clock.now()) == []
    assert await storage.residue() == []


@pytest.mark.parametrize("storage", ["filesystem"], indirect=True)
async def test_appends_from_two_filesystem_spools_never_interleave(storage: Storage) -> None:
    first, second = storage.open(), storage.open()
    for _ in range(100):
        object_id = await new_object(first, storage)
        outcomes = await asyncio.gather(
            first.append(object_id, 0, pieces(b"A" * 4096, b"A" * 4096)),
            second.append(object_id, 0, pieces(b"B" * 4096, b"B" * 4096)),
            return_exceptions=True,
        )
        assert sorted(type(outcome).__name__ for outcome in outcomes) == ["SpoolOffsetMismatch", "int"]
        assert await read_all(first, object_id) in (b"A" * 8192, b"B" * 8192)
