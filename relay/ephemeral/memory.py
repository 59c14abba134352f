"""The embedded ephemeral store: a dict with expiry read from the injected clock."""

from __future__ import annotations

from datetime import datetime, timedelta

from relay.clock import Clock
from relay.ephemeral.contract import EphemeralStore

SWEEP_EVERY = 1024


class MemoryEphemeralStore(EphemeralStore):
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._entries: dict[str, tuple[int, datetime]] = {}
        self._writes = 0

    def _live(self, key: str) -> tuple[int, datetime] | None:
        entry = self._entries.get(key)
        if entry is not None and entry[1] <= self._clock.now():
            del self._entries[key]
            return None
        return entry

    def _sweep(self) -> None:
        self._writes += 1
        if self._writes % SWEEP_EVERY == 0:
            now = self._clock.now()
            self._entries = {k: v for k, v in self._entries.items() if v[1] > now}

    async def increment(self, key: str, ttl: int) -> int:
        self._sweep()
        entry = self._live(key)
        count, expires = entry if entry else (0, self._clock.now() + timedelta(seconds=ttl))
        self._entries[key] = (count + 1, expires)
        return count + 1

    async def claim(self, key: str, ttl: int) -> bool:
        self._sweep()
        if self._live(key) is not None:
            return False
        self._entries[key] = (1, self._clock.now() + timedelta(seconds=ttl))
        return True
