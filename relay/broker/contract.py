"""What every broker does: publish an event on a channel, and deliver it to every subscriber
on every node. Events carry ids only, never PHI."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any

Handler = Callable[[dict[str, Any]], Awaitable[None]]

DEVICE_REVOKED = "device.revoked"
SESSIONS_ENDED = "sessions.ended"
"""``{"session_ids": [...], "code": ...}``: sessions ended (a logout, a sign-out, a disabled
account); every node closes their sockets at once."""


class Broker(ABC):
    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = {}

    def subscribe(self, channel: str, handler: Handler) -> None:
        """Call ``handler`` for each event published on ``channel`` from now on, on any node."""
        self._handlers.setdefault(channel, []).append(handler)

    @abstractmethod
    async def publish(self, channel: str, event: dict[str, Any]) -> None:
        """Deliver ``event`` to this channel's subscribers on every node."""

    async def start(self) -> None:
        """Begin receiving events published elsewhere."""

    async def close(self) -> None:
        """Stop receiving and release connections."""

    async def _dispatch(self, channel: str, event: dict[str, Any]) -> None:
        for handler in self._handlers.get(channel, []):
            await handler(event)
