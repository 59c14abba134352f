"""The embedded spool: one 0600 file of ciphertext per object, named by its opaque id.

Layout under the spool directory (0700), sharded by the id's first two hex digits:

    ab/ab3f...e1            the object's bytes, exactly as appended
    ab/ab3f...e1.deadline   its deadline, one ISO 8601 UTC line, replaced atomically

The deadline file is written before the object's file is created and removed after it is
deleted, so an object's bytes never exist without a deadline that ``sweep`` honours; a deadline
file that cannot be read counts as expired. A deadline is written to ``.pending`` and renamed
into place; ``sweep`` leaves a ``.pending`` file to the writer still renaming it, and removes
it once it is older than PENDING_GRACE_SECONDS (its writer crashed). Every blocking call runs
in a worker thread, but for an unsynced ``put``, which waits for no disk. Each append piece
(check the size, write), deadline change and delete holds an exclusive ``flock`` on the
object's file, so writers in any thread or process are serialised; creates and appends fsync
before they return, except the puts that ask to be synced later by ``sync``. One process owning
the directory is the supported setup.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import io
import os
import re
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from relay.camera.spool.contract import (
    OBJECT_ID,
    Spool,
    SpoolObjectExists,
    SpoolObjectMissing,
    SpoolOffsetMismatch,
    check_deadline,
    check_object_id,
)
from relay.camera.spool.pipelining import append_pipelined, settled
from relay.clock import Clock

DEFAULT_CHUNK_SIZE = 1024 * 1024
SYNC_AHEAD = 1024 * 1024
"""Bytes an append writes before it starts flushing them in the background."""
T = TypeVar("T")
SHARD = re.compile(r"[0-9a-f]{2}")
DEADLINE_SUFFIX = ".deadline"
PENDING_SUFFIX = ".pending"
PENDING_GRACE_SECONDS = 60.0


class FilesystemSpool(Spool):
    def __init__(self, directory: Path, clock: Clock, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        if chunk_size < 1:
            raise ValueError("chunk_size must be positive")
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        directory.chmod(0o700)
        self._directory = directory
        self._clock = clock
        self._chunk_size = chunk_size
        self._unsynced: set[str] = set()

    async def create(self, object_id: str, *, expires_at: datetime) -> None:
        paths = self._paths(object_id)
        await asyncio.to_thread(paths.create, check_deadline(expires_at))

    async def put(self, object_id: str, data: bytes, *, expires_at: datetime, synced: bool = True) -> None:
        """Synced, one trip to a worker thread: every hand-back waits its turn on a busy event
        loop. Unsynced, where it is called: a few system calls that hand a message's bytes to
        the page cache wait for no disk, and cost less than the trip (the reasoning of
        ``relay/storage/sqlite_driver.py``)."""
        paths = self._paths(object_id)
        if synced:
            await asyncio.to_thread(paths.create, check_deadline(expires_at), data)
            return
        paths.create(check_deadline(expires_at), data, synced=False)
        self._unsynced.add(object_id)

    async def sync(self) -> None:
        """Sync the objects put unsynced so far, those deleted since excepted, and their
        directories, in one trip to a worker thread."""
        if not self._unsynced:
            return
        unsynced, self._unsynced = self._unsynced, set()
        await asyncio.to_thread(_sync_objects, [self._paths(object_id) for object_id in unsynced])

    async def append(self, object_id: str, offset: int, chunks: AsyncIterable[bytes]) -> int:
        """Each chunk is written in a worker thread while the next one arrives, and every
        SYNC_AHEAD bytes a background fdatasync starts flushing what was written, so the fsync
        that ends the append (and makes its bytes durable) finds little left to write."""
        paths = self._paths(object_id)
        descriptor = await asyncio.to_thread(paths.open_for_append, self._clock.now(), offset)
        flusher = _Flusher(descriptor, offset)
        try:
            position = await append_pipelined(
                chunks, offset,
                lambda position, chunk: _in_thread(paths.write_at, descriptor, self._clock.now(), position, chunk),
                flusher.written,
            )
            if flusher.flushing is not None:
                await asyncio.shield(flusher.flushing)
        finally:
            await settled(flusher.flushing)
            await asyncio.to_thread(_sync_and_close, descriptor)
        return position

    async def size(self, object_id: str) -> int:
        paths = self._paths(object_id)
        return await asyncio.to_thread(paths.live_size, self._clock.now())

    async def read(self, object_id: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        paths = self._paths(object_id)
        handle, size = await asyncio.to_thread(paths.open_for_read, self._clock.now())
        try:
            stop = size if end is None else end
            if not 0 <= start <= stop <= size:
                raise ValueError(f"range [{start}, {stop}) is outside the object's {size} bytes")
            position = start
            while position < stop:
                chunk = await asyncio.to_thread(_read_at, handle, position, min(self._chunk_size, stop - position))
                position += len(chunk)
                yield chunk
        finally:
            handle.close()

    async def set_expiry(self, object_id: str, expires_at: datetime) -> None:
        paths = self._paths(object_id)
        await asyncio.to_thread(paths.move_deadline, self._clock.now(), check_deadline(expires_at))

    async def delete(self, object_id: str) -> bool:
        paths = self._paths(object_id)
        return await asyncio.to_thread(paths.remove, None)

    async def close(self) -> None:
        await self.sync()

    async def sweep(self, now: datetime) -> list[str]:
        removed = []
        for object_id in sorted(await asyncio.to_thread(self._stored_ids)):
            if await asyncio.to_thread(self._paths(object_id).remove, now):
                removed.append(object_id)
        await asyncio.to_thread(self._remove_abandoned_pending)
        return removed

    def _paths(self, object_id: str) -> _ObjectFiles:
        check_object_id(object_id)
        return _ObjectFiles(self._directory / object_id[:2], object_id)

    def _stored_ids(self) -> set[str]:
        """The objects whose bytes or deadline exist; a lone ``.pending`` file is a deadline
        still being written, not an object."""
        return {object_id for object_id, entry in self._entries() if not entry.name.endswith(PENDING_SUFFIX)}

    def _remove_abandoned_pending(self) -> None:
        """Pending deadline files no writer will rename any more; they hold a time, never ciphertext."""
        abandoned_before = time.time() - PENDING_GRACE_SECONDS
        for _, entry in self._entries():
            if entry.name.endswith(PENDING_SUFFIX):
                with contextlib.suppress(FileNotFoundError):
                    if entry.stat().st_mtime < abandoned_before:
                        entry.unlink()

    def _entries(self) -> Iterator[tuple[str, Path]]:
        """Every file in the shards named for an object, with that object's id."""
        for shard in self._directory.iterdir():
            if SHARD.fullmatch(shard.name) is None or not shard.is_dir():
                continue
            for entry in shard.iterdir():
                object_id = entry.name.split(".", 1)[0]
                if OBJECT_ID.fullmatch(object_id) and object_id.startswith(shard.name):
                    yield object_id, entry


class _ObjectFiles:
    """One object's files and the blocking operations on them (run in worker threads)."""

    def __init__(self, shard: Path, object_id: str) -> None:
        self.shard = shard
        self.data = shard / object_id
        self.deadline = shard / (object_id + DEADLINE_SUFFIX)
        self.pending = shard / (object_id + DEADLINE_SUFFIX + PENDING_SUFFIX)

    def create(self, expires_at: datetime, data: bytes = b"", *, synced: bool = True) -> None:
        """The deadline, then the object's file holding ``data``, synced together at the end
        (unless not ``synced``: ``sync`` does it later): each sync is a journal commit that also
        flushes whatever else the disk has pending (SQLite's log), so one at the end costs less
        than one per step. A crash before they finish leaves at worst bytes whose deadline is
        unreadable, which count as expired."""
        self.shard.mkdir(mode=0o700, exist_ok=True)
        self.shard.chmod(0o700)
        if self.data.exists() or self.deadline.exists():
            raise SpoolObjectExists("an object with this id exists")
        self._write_deadline(expires_at, durable=False)
        try:
            descriptor = os.open(self.data, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise SpoolObjectExists("an object with this id exists") from None
        try:
            os.fchmod(descriptor, 0o600)
            _write_all(descriptor, data)
            if synced:
                os.fsync(descriptor)
        finally:
            os.close(descriptor)
        if synced:
            _sync_path(self.deadline)
            _sync_path(self.shard, os.O_DIRECTORY)

    def open_for_append(self, now: datetime, offset: int) -> int:
        self._require_live(now)
        try:
            descriptor = os.open(self.data, os.O_WRONLY | os.O_APPEND)
        except FileNotFoundError:
            raise SpoolObjectMissing("no such object") from None
        try:
            with _exclusive(descriptor):
                _check_position(descriptor, offset)
        except BaseException:
            os.close(descriptor)
            raise
        return descriptor

    def write_at(self, descriptor: int, now: datetime, position: int, chunk: bytes) -> int:
        """Write ``chunk`` if the object is live and holds exactly ``position`` bytes."""
        with _exclusive(descriptor):
            self._require_live(now)
            _check_position(descriptor, position)
            _write_all(descriptor, chunk)
        return position + len(chunk)

    def open_for_read(self, now: datetime) -> tuple[io.FileIO, int]:
        self._require_live(now)
        try:
            handle = io.FileIO(self.data, "rb")
        except FileNotFoundError:
            raise SpoolObjectMissing("no such object") from None
        return handle, os.fstat(handle.fileno()).st_size

    def live_size(self, now: datetime) -> int:
        self._require_live(now)
        try:
            return self.data.stat().st_size
        except FileNotFoundError:
            raise SpoolObjectMissing("no such object") from None

    def move_deadline(self, now: datetime, expires_at: datetime) -> None:
        with self._locked_data() as descriptor:
            if descriptor is None or os.fstat(descriptor).st_nlink == 0:
                raise SpoolObjectMissing("no such object")
            self._require_live(now)
            self._write_deadline(expires_at, durable=True)

    def remove(self, due: datetime | None) -> bool:
        """Remove every file of the object (only if its deadline is <= ``due``, when given)."""
        with self._locked_data():
            if due is not None:
                deadline = self._read_deadline()
                if deadline is not None and deadline > due:
                    return False
            existed = False
            for path in (self.data, self.deadline):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    existed = True
            self.pending.unlink(missing_ok=True)
        if existed:
            _sync_path(self.shard, os.O_DIRECTORY)
        return existed

    @contextlib.contextmanager
    def _locked_data(self) -> Iterator[int | None]:
        """The object's file, opened and exclusively locked; None if there is none."""
        try:
            descriptor = os.open(self.data, os.O_RDONLY)
        except FileNotFoundError:
            descriptor = None
        if descriptor is None:
            yield None
            return
        try:
            with _exclusive(descriptor):
                yield descriptor
        finally:
            os.close(descriptor)

    def _require_live(self, now: datetime) -> None:
        deadline = self._read_deadline()
        if deadline is None or deadline <= now:
            raise SpoolObjectMissing("no such object, or past its deadline")

    def _read_deadline(self) -> datetime | None:
        """The stored deadline; None if there is none or it cannot be read (treated as expired)."""
        try:
            deadline = datetime.fromisoformat(self.deadline.read_text(encoding="ascii").strip())
        except (FileNotFoundError, UnicodeDecodeError, ValueError):
            return None
        return deadline if deadline.tzinfo is not None else None

    def _write_deadline(self, expires_at: datetime, *, durable: bool) -> None:
        """Replace the deadline file atomically. ``durable``: synced before the rename, which is
        synced too, so a crash leaves the old deadline or the new one, never an unreadable one;
        otherwise the caller syncs."""
        text = expires_at.astimezone(UTC).isoformat() + "\n"
        descriptor = os.open(self.pending, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(descriptor, 0o600)
            os.write(descriptor, text.encode("ascii"))
            if durable:
                os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(self.pending, self.deadline)
        if durable:
            _sync_path(self.shard, os.O_DIRECTORY)


@contextlib.contextmanager
def _exclusive(descriptor: int) -> Iterator[None]:
    fcntl.flock(descriptor, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(descriptor, fcntl.LOCK_UN)


def _write_all(descriptor: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(descriptor, view) :]


def _check_position(descriptor: int, position: int) -> None:
    status = os.fstat(descriptor)
    if status.st_nlink == 0:
        raise SpoolObjectMissing("the object was deleted")
    if status.st_size != position:
        raise SpoolOffsetMismatch(expected=status.st_size, given=position)


def _read_at(handle: io.FileIO, position: int, length: int) -> bytes:
    """Up to ``length`` bytes at ``position``, refusing an object deleted or cut short meanwhile."""
    if os.fstat(handle.fileno()).st_nlink == 0:
        raise SpoolObjectMissing("the object was deleted")
    chunk = os.pread(handle.fileno(), length, position)
    if not chunk:
        raise SpoolObjectMissing("the object ended before the requested range")
    return chunk


class _Flusher:
    """Starts an fdatasync of an append's descriptor every SYNC_AHEAD bytes written, one at a
    time. Its error (EIO) must fail the append: the closing fsync would not report it again."""

    def __init__(self, descriptor: int, position: int) -> None:
        self._descriptor = descriptor
        self._flushed = position
        self.flushing: asyncio.Future[None] | None = None

    def written(self, position: int) -> None:
        if position - self._flushed < SYNC_AHEAD:
            return
        if self.flushing is not None and (not self.flushing.done() or self.flushing.exception() is not None):
            return
        self._flushed, self.flushing = position, _in_thread(os.fdatasync, self._descriptor)


def _in_thread(function: Callable[..., T], *args: Any) -> asyncio.Future[T]:
    """``function`` submitted to the default executor now, not when a task first runs."""
    return asyncio.get_running_loop().run_in_executor(None, function, *args)


def _sync_objects(objects: list[_ObjectFiles]) -> None:
    """Each object's files, then each of their directories once; a file deleted meanwhile has
    nothing left to sync."""
    for files in objects:
        for path in (files.data, files.deadline):
            with contextlib.suppress(FileNotFoundError):
                _sync_path(path)
    for shard in {files.shard for files in objects}:
        _sync_path(shard, os.O_DIRECTORY)


def _sync_and_close(descriptor: int) -> None:
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _sync_path(path: Path, flags: int = 0) -> None:
    descriptor = os.open(path, os.O_RDONLY | flags)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
