"""Fixed-window rate limits over the ephemeral store, so every node counts the same hits.

The window is derived from the injected clock, so tests move time instead of sleeping, on the
in-process store and on Redis alike (the key names the window; its TTL only cleans up).
"""

from __future__ import annotations

from relay.clock import Clock
from relay.ephemeral.contract import EphemeralStore
from relay.errors import TooManyRequests


class RateLimit:
    def __init__(self, ephemeral: EphemeralStore, clock: Clock, *, name: str, limit: int, window: int,
                 message: str) -> None:
        self._ephemeral = ephemeral
        self._clock = clock
        self._name = name
        self.limit = limit
        self._window = window
        self._message = message

    async def hit(self, key: str) -> None:
        """Count one hit for ``key`` (an opaque id or digest, never PHI); TooManyRequests past the limit."""
        now = int(self._clock.now().timestamp())
        count = await self._ephemeral.increment(f"{self._name}:{key}:{now // self._window}", self._window * 2)
        if count > self.limit:
            raise TooManyRequests(self._message, retry_after=self._window - now % self._window)
