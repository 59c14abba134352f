"""Where received messages are stored. The SDK acknowledges a message to the relay only after
``store`` returned, and never hands the same message id to ``store`` twice."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from relay_client.envelope import Manifest


@dataclass(frozen=True)
class IncomingMessage:
    """A message opened and verified (sender's signature included) on this device."""

    message_id: str
    conversation_id: str
    sender_user_id: str
    sender_device_id: str
    sent_at: datetime
    expires_at: datetime
    blob_id: str | None
    manifest: Manifest
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8")


class Inbox(Protocol):
    async def contains(self, message_id: str) -> bool: ...

    async def store(self, message: IncomingMessage) -> None: ...

    async def delete(self, message_ids: Iterable[str]) -> None: ...


class MemoryInbox:
    """An inbox in memory: what a short-lived script or a test needs. ``next()`` waits for the
    next stored message. Duplicates are recognised within one run only."""

    def __init__(self) -> None:
        self.messages: dict[str, IncomingMessage] = {}
        self._arrivals: asyncio.Queue[IncomingMessage] = asyncio.Queue()

    async def contains(self, message_id: str) -> bool:
        return message_id in self.messages

    async def store(self, message: IncomingMessage) -> None:
        self.messages[message.message_id] = message
        self._arrivals.put_nowait(message)

    async def delete(self, message_ids: Iterable[str]) -> None:
        for message_id in message_ids:
            self.messages.pop(message_id, None)

    async def next(self, timeout: float = 30) -> IncomingMessage:
        return await asyncio.wait_for(self._arrivals.get(), timeout)
