"""What every ephemeral store does. Keys are opaque digests or ids, never PHI."""

from __future__ import annotations

from abc import ABC, abstractmethod


class EphemeralStore(ABC):
    @abstractmethod
    async def increment(self, key: str, ttl: int) -> int:
        """Add one to ``key``'s counter and return it; the counter vanishes ``ttl`` s after creation."""

    @abstractmethod
    async def claim(self, key: str, ttl: int) -> bool:
        """True the first time ``key`` is claimed within ``ttl`` seconds, False after."""

    async def close(self) -> None:
        """Release connections."""
