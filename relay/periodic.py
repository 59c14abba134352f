"""Background jobs that run every few seconds while the server runs (sweeps, escalations)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def every(interval: float, job: Callable[[], Awaitable[object]], name: str) -> AsyncIterator[None]:
    """Run ``job()`` every ``interval`` seconds while the context is open; a failure is logged
    (by ``name``, never with data) and the job runs again next time."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await job()
            except Exception:
                log.exception("%s failed; retrying in %s seconds", name, interval)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
