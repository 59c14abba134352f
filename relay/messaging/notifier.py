"""How messaging tells devices and users that something changed, without knowing socket.io.

The socket.io server (realtime.py) attaches itself when the application is built; until then
(the CLI) events go nowhere, and devices catch up from their queues on the next connection.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol


class Channel(Protocol):
    async def to_devices(self, device_ids: Sequence[str], event: str, payload: dict[str, Any]) -> None:
        """Deliver ``event`` to every connection of each of ``device_ids``, on whichever node holds it."""

    async def to_users(self, user_ids: Sequence[str], event: str, payload: dict[str, Any]) -> None:
        """Deliver ``event`` to every connected device of each of ``user_ids``."""


class Notifier:
    """One emit per event, whatever the number of devices or users: the payload is encoded
    once, and on scale-out published once."""

    def __init__(self) -> None:
        self._channel: Channel | None = None

    def attach(self, channel: Channel) -> None:
        self._channel = channel

    async def devices(self, device_ids: Iterable[str], event: str, payload: dict[str, Any]) -> None:
        targets = list(dict.fromkeys(device_ids))
        if self._channel is not None and targets:
            await self._channel.to_devices(targets, event, payload)

    async def device(self, device_id: str, event: str, payload: dict[str, Any]) -> None:
        await self.devices((device_id,), event, payload)

    async def users(self, user_ids: Iterable[str], event: str, payload: dict[str, Any]) -> None:
        targets = list(dict.fromkeys(user_ids))
        if self._channel is not None and targets:
            await self._channel.to_users(targets, event, payload)
