"""The in-process broker of the embedded default: events reach this process's subscribers."""

from __future__ import annotations

from typing import Any

from relay.broker.contract import Broker


class MemoryBroker(Broker):
    async def publish(self, channel: str, event: dict[str, Any]) -> None:
        await self._dispatch(channel, event)
