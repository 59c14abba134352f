"""Appending with the write of one piece under way while the next piece arrives.

Both spools append this way: the source (a request body) and the storage (a worker thread or
Redis) each do their part at the same time, instead of taking turns. Writes still happen one
at a time, in order, each at the position the previous one ended at.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Awaitable, Callable
from typing import Any


async def append_pipelined(
    chunks: AsyncIterable[bytes], position: int, write: Callable[[int, bytes], Awaitable[int]],
    written: Callable[[int], None] = lambda position: None,
) -> int:
    """Write each chunk with ``write(position, chunk)`` (which returns the position after it)
    while the next chunk arrives; ``written`` hears each position reached before the last
    write. Returns the final position. A write still running when the source fails is waited
    for, so everything the source yielded before it failed is written, and the source's error
    is the one raised."""
    writing: asyncio.Future[int] | None = None
    try:
        async for chunk in chunks:
            if writing is not None:
                position = await asyncio.shield(writing)
                written(position)
            writing = asyncio.ensure_future(write(position, chunk))
        if writing is not None:
            position = await asyncio.shield(writing)
    finally:
        await settled(writing)
    return position


async def settled(*running: asyncio.Future[Any] | None) -> None:
    """Wait for work still under way (a worker thread may still hold the descriptor, a script
    may still be on its way to Redis). Its error, if any, was raised already, or gives way to
    the error that ended the append."""
    for future in running:
        if future is not None:
            await asyncio.wait([future])
            if not future.cancelled():
                future.exception()
