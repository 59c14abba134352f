"""How the camera relay tells a device that something waits for it, without knowing socket.io.

The service holds a ``DeviceNotifier``; the socket.io server (relay/messaging/realtime.py)
attaches itself when the application is built. Until something is attached (the CLI, a
process without a socket server) notifications go nowhere and recipients find their blobs by
listing them. Events carry ids and sizes only (docs/realtime.md).
"""

from __future__ import annotations

from typing import Any, Protocol

BLOB_AVAILABLE = "blob.available"


class DeviceChannel(Protocol):
    async def to_device(self, device_id: str, event: str, payload: dict[str, Any]) -> None:
        """Deliver ``event`` to every connection of ``device_id``, on whichever node holds it."""


class DeviceNotifier:
    def __init__(self) -> None:
        self._channel: DeviceChannel | None = None

    def attach(self, channel: DeviceChannel) -> None:
        self._channel = channel

    async def blob_available(self, device_id: str, *, blob_id: str, size: int, sender_device_id: str) -> bool:
        """Tell ``device_id`` a blob waits for it; False when no channel is attached."""
        if self._channel is None:
            return False
        await self._channel.to_device(
            device_id, BLOB_AVAILABLE, {"blob_id": blob_id, "size": size, "sender_device_id": sender_device_id}
        )
        return True
