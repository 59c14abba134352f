"""Exponential backoff with full jitter for the EMR: ``attempts`` tries, waits drawn from
[0, min(max_delay, base_delay * 2**n)) (an EMR's Retry-After wins, within max_delay). ``sleep``
is injected so tests do not wait."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

Sleep = Callable[[float], Awaitable[None]]


@dataclass
class Backoff:
    attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 60.0
    sleep: Sleep = asyncio.sleep
    random: Callable[[], float] = field(default=random.random)

    def delay(self, failures: int, retry_after: float | None = None) -> float:
        """Seconds to wait after the ``failures``-th failure in a row (1 for the first)."""
        if retry_after is not None:
            return min(retry_after, self.max_delay)
        ceiling = min(self.max_delay, self.base_delay * 2 ** (failures - 1))
        return ceiling * self.random()

    async def wait(self, failures: int, retry_after: float | None = None) -> None:
        await self.sleep(self.delay(failures, retry_after))
