"""Byte streams: exact reads over an async iterable of arbitrarily sized pieces, and file
sources and sinks that keep memory constant."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path

from relay_client.envelope.errors import Truncated

FILE_READ_SIZE = 1024 * 1024


class ByteReader:
    """Reads exact byte counts from an async iterable of ``bytes`` pieces of any size."""

    def __init__(self, source: AsyncIterable[bytes]) -> None:
        self._pieces = aiter(source)
        self._buffer = bytearray()
        self._offset = 0

    async def read_exactly(self, size: int, *, what: str) -> bytes:
        """The next ``size`` bytes, or Truncated naming ``what`` if the source ends first."""
        available = len(self._buffer) - self._offset
        if available == 0:
            piece = await self._next_piece()
            if piece is not None and len(piece) == size:
                return bytes(piece)
            if piece is None and size:
                raise Truncated(f"the envelope ends inside {what}")
            self._buffer[:] = piece or b""
            self._offset = 0
            available = len(self._buffer)
        while available < size:
            piece = await self._next_piece()
            if piece is None:
                raise Truncated(f"the envelope ends inside {what}")
            del self._buffer[: self._offset]
            self._offset = 0
            self._buffer += piece
            available = len(self._buffer)
        view = memoryview(self._buffer)
        try:
            part = view[self._offset : self._offset + size]
            result = bytes(part)
            part.release()
        finally:
            view.release()
        self._offset += size
        return result

    async def at_end(self) -> bool:
        """True when the source has no bytes left."""
        while len(self._buffer) == self._offset:
            piece = await self._next_piece()
            if piece is None:
                return True
            self._buffer[:] = piece
            self._offset = 0
        return False

    async def _next_piece(self) -> bytes | None:
        while True:
            try:
                piece = await anext(self._pieces)
            except StopAsyncIteration:
                return None
            if piece:
                return piece


async def iterate_bytes(data: bytes, piece_size: int = FILE_READ_SIZE) -> AsyncIterator[bytes]:
    """``data`` as an async iterable of pieces (slices share ``data``'s memory)."""
    view = memoryview(data)
    for start in range(0, len(data), piece_size):
        yield view[start : start + piece_size]  # type: ignore[misc]


async def read_file(path: str | os.PathLike[str], piece_size: int = FILE_READ_SIZE) -> AsyncIterator[bytes]:
    """A file's bytes in pieces, read off the event loop."""
    handle = await asyncio.to_thread(open, path, "rb")
    try:
        while piece := await asyncio.to_thread(handle.read, piece_size):
            yield piece
    finally:
        handle.close()


async def write_file(pieces: AsyncIterable[bytes], path: str | os.PathLike[str]) -> int:
    """Write ``pieces`` to ``path`` through a temporary file that replaces ``path`` only once
    every piece was written (and, for an envelope being opened, verified). Returns the size."""
    target = Path(path)
    descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    written = 0
    try:
        with os.fdopen(descriptor, "wb") as handle:
            async for piece in pieces:
                await asyncio.to_thread(handle.write, piece)
                written += len(piece)
            await asyncio.to_thread(handle.flush)
            await asyncio.to_thread(os.fsync, handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return written
