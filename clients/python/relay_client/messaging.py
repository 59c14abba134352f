"""Sending and receiving sealed messages over socket.io (docs/messaging.md, docs/realtime.md).

Sending seals to every device in the conversation's ``recipients`` after checking each one's
signed key; when the relay answers ``recipients_incomplete`` (a device joined meanwhile) the
recipients are read again and the message sealed again, once. Receiving opens each
``message.new``, drops duplicates by message id, stores it in the inbox, and only then
acknowledges it."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from relay_client.conversations import Conversations
from relay_client.devices import Devices
from relay_client.directory import Directory
from relay_client.envelope import (
    EnvelopeError,
    Manifest,
    Recipient,
    open_bytes,
    seal_bytes,
)
from relay_client.errors import RelayApiError, UntrustedDevice
from relay_client.inbox import Inbox, IncomingMessage
from relay_client.photos import PHOTO, seal_and_upload
from relay_client.realtime import Realtime
from relay_client.uploads import Uploader

log = logging.getLogger(__name__)
TEXT = Manifest("text/plain; charset=utf-8")


def new_message_id() -> str:
    return secrets.token_urlsafe(24)


@dataclass(frozen=True)
class SentMessage:
    message_id: str
    sent_at: str
    expires_at: str
    recipients: list[str]
    blob_id: str | None = None


class Messenger:
    def __init__(self, realtime: Realtime, conversations: Conversations, directory: Directory, devices: Devices,
                 uploads: Uploader, inbox: Inbox) -> None:
        self._realtime = realtime
        self._conversations = conversations
        self._directory = directory
        self._devices = devices
        self._uploads = uploads
        self.inbox = inbox
        self._receiving = asyncio.Lock()
        realtime.on("message.new", self.receive)
        realtime.on("message.deleted", self._deleted)

    async def recipients(self, conversation_id: str) -> list[Recipient]:
        """Every device the conversation's messages must be sealed to, each key verified; this
        sending device is left out (it holds the plaintext already)."""
        conversation = await self._conversations.get(conversation_id)
        own = self._devices.device_id
        return [self._directory.recipient(device) for device in conversation.recipients if device.id != own]

    async def send(self, conversation_id: str, content: bytes, *, manifest: Manifest = TEXT,
                   message_id: str | None = None, blob_id: str | None = None) -> SentMessage:
        """Seal ``content`` for the conversation and send it (``blob_id``: the photo it shows)."""
        message_id = message_id or new_message_id()
        for attempt in (1, 2):
            envelope = await self._seal(manifest, content, await self.recipients(conversation_id))
            try:
                return await self._send(conversation_id, message_id, envelope, blob_id)
            except RelayApiError as error:
                if attempt == 2 or error.code != "recipients_incomplete" or blob_id is not None:
                    raise
        raise AssertionError("unreachable")

    async def send_text(self, conversation_id: str, text: str, *, message_id: str | None = None) -> SentMessage:
        return await self.send(conversation_id, text.encode("utf-8"), message_id=message_id)

    async def send_photo(self, conversation_id: str, photo: bytes | Path, *, manifest: Manifest = PHOTO,
                         caption: str = "", workdir: Path | None = None) -> SentMessage:
        """Seal the photo (EXIF already removed by the caller) to the conversation's devices,
        upload it naming the conversation, then send a message showing it. If the members
        changed meanwhile the upload is withdrawn and both are sealed again, once."""
        message_id = new_message_id()
        for attempt in (1, 2):
            recipients = await self.recipients(conversation_id)
            blob_id = await seal_and_upload(self._uploads, self._devices.keyring().sender, photo, recipients,
                                            manifest=manifest, conversation_id=conversation_id,
                                            workdir=workdir or self._devices.key_file.path.parent)
            envelope = await self._seal(TEXT, caption.encode("utf-8"), recipients)
            try:
                return await self._send(conversation_id, message_id, envelope, blob_id)
            except RelayApiError as error:
                await self._uploads.withdraw(blob_id)
                if attempt == 2 or error.code != "recipients_incomplete":
                    raise
        raise AssertionError("unreachable")

    async def ack(self, message_ids: Sequence[str]) -> list[str]:
        return list((await self._realtime.call("message.ack", {"message_ids": list(message_ids)}))["acknowledged"])

    async def read(self, message_ids: Sequence[str]) -> list[str]:
        """Send read receipts."""
        return list((await self._realtime.call("message.read", {"message_ids": list(message_ids)}))["read"])

    async def recall(self, message_id: str) -> int:
        """Recall a message this user sent; returns how many queued copies were purged."""
        return int((await self._realtime.call("message.recall", {"message_id": message_id}))["purged"])

    async def fetch_queue(self, limit: int = 100) -> bool:
        """Receive (open, store, acknowledge) what is queued for this device; True if more wait."""
        result = await self._realtime.call("queue.fetch", {"limit": limit})
        for payload in result["messages"]:
            await self.receive(payload)
        return bool(result.get("more"))

    async def receive(self, payload: dict[str, Any]) -> None:
        """Handle one ``message.new``: open, store, then acknowledge. A message that cannot be
        opened or whose sender cannot be verified is acknowledged and dropped (it never will
        open); a failure to store leaves it queued on the relay for the next connection."""
        message_id = payload["message_id"]
        async with self._receiving:
            if not await self.inbox.contains(message_id):
                try:
                    message = await self._open(payload)
                except (EnvelopeError, UntrustedDevice) as error:
                    log.warning("dropped message %s: %s", message_id, type(error).__name__)
                else:
                    await self.inbox.store(message)
        await self.ack([message_id])

    async def _open(self, payload: dict[str, Any]) -> IncomingMessage:
        sender_key = await self._directory.sender_key(payload["sender_device_id"], payload["sender_user_id"])
        keyring = self._devices.keyring()
        opened = await open_bytes(bytes(payload["envelope"]), keyring.opening_keys(), sender_key)
        if opened.sender_device_id != payload["sender_device_id"]:
            raise UntrustedDevice("the envelope was sealed by another device than the relay says")
        if opened.key_id in keyring.one_time_keys:
            self._devices.forget_one_time_key(opened.key_id)
        return IncomingMessage(
            message_id=payload["message_id"], conversation_id=payload["conversation_id"],
            sender_user_id=payload["sender_user_id"], sender_device_id=payload["sender_device_id"],
            sent_at=datetime.fromisoformat(payload["sent_at"]), expires_at=datetime.fromisoformat(payload["expires_at"]),
            blob_id=payload.get("blob_id"), manifest=opened.manifest, content=opened.content)

    async def _deleted(self, payload: dict[str, Any]) -> None:
        await self.inbox.delete(payload.get("message_ids") or [])

    async def _seal(self, manifest: Manifest, content: bytes, recipients: list[Recipient]) -> bytes:
        return await seal_bytes(manifest, content, sender=self._devices.keyring().sender, recipients=recipients)

    async def _send(self, conversation_id: str, message_id: str, envelope: bytes, blob_id: str | None) -> SentMessage:
        payload: dict[str, Any] = {"conversation_id": conversation_id, "message_id": message_id, "envelope": envelope}
        if blob_id is not None:
            payload["blob_id"] = blob_id
        result = await self._realtime.call("message.send", payload)
        return SentMessage(result["message_id"], result["sent_at"], result["expires_at"], list(result["recipients"]),
                           blob_id)
