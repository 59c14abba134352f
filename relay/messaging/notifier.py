"""How messaging tells devices and users that something changed, without knowing socket.io.

The socket.io server (realtime.py) attaches itself when the application is built; until then
(the CLI) events go nowhere, and devices catch up from their queues on the next connection.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol


class Channel(Protocol):
    async def to_device(self, device_id: str, event: str, payload: dict[str, Any]) -> None:
        """Deliver ``event`` to every connection of ``device_id``, on whichever node holds it."""

    async def to_user(self, user_id: str, event: str, payload: dict[str, Any]) -> None:
        """Deliver ``event`` to every connected device of ``user_id``."""


class Notifier:
    def __init__(self) -> None:
        self._channel: Channel | None = None

    def attach(self, channel: Channel) -> None:
        self._channel = channel

    async def devices(self, device_ids: Iterable[str], event: str, payload: dict[str, Any]) -> None:
        if self._channel is not None:
            for device_id in device_ids:
                await self._channel.to_device(device_id, event, payload)

    async def device(self, device_id: str, event: str, payload: dict[str, Any]) -> None:
        await self.devices((device_id,), event, payload)

    async def users(self, user_ids: Iterable[str], event: str, payload: dict[str, Any]) -> None:
        if self._channel is not None:
            for user_id in user_ids:
                await self._channel.to_user(user_id, event, payload)
