"""RelayClient: one device of one user on one relay, with every part of the SDK behind it.

    async with RelayClient(url, key_file="~/.relay/device.json") as client:
        await client.login(Credentials(tenant, username, password, totp=ask_code))
        await client.use_device("ward phone")      # registers once, reused on later runs
        await client.connect()                     # socket.io: messages, receipts, blobs
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiohttp

from relay_client.auth import Authenticator, Credentials, Session
from relay_client.blobs import Blobs, temporary_path
from relay_client.conversations import Consults, Conversations
from relay_client.devices import Devices
from relay_client.directory import Directory
from relay_client.envelope import (
    Manifest,
    OpenedEnvelope,
    Recipient,
    open_file,
    read_envelope,
)
from relay_client.envelope.streams import read_file
from relay_client.errors import RelayApiError
from relay_client.events import EVENT_TYPES, RECEIPTS, parse
from relay_client.http import RelayHttp
from relay_client.inbox import Inbox, MemoryInbox
from relay_client.invitations import Invitations
from relay_client.keyfile import DeviceSecrets, KeyFile
from relay_client.messaging import Messenger
from relay_client.photos import PHOTO, seal_and_upload
from relay_client.realtime import Realtime
from relay_client.uploads import Uploader

EventHandler = Callable[[Any], Awaitable[None]]


class RelayClient:
    def __init__(self, url: str, *, key_file: str | os.PathLike[str], inbox: Inbox | None = None,
                 http_session: aiohttp.ClientSession | None = None, request_timeout: float = 30) -> None:
        self.http = RelayHttp(url, session=http_session)
        self.auth = Authenticator(self.http)
        self.devices = Devices(self.http, KeyFile(Path(key_file).expanduser()))
        self.directory = Directory(self.http)
        self.uploads = Uploader(self.http)
        self.blobs = Blobs(self.http)
        self.conversations = Conversations(self.http)
        self.consults = Consults(self.http)
        self.invitations = Invitations(self.http, self.directory)
        self.realtime = Realtime(self.http, request_timeout=request_timeout)
        self.messages = Messenger(self.realtime, self.conversations, self.directory, self.devices, self.uploads,
                                  inbox if inbox is not None else MemoryInbox())
        self.revoked = False
        self.realtime.on("device_revoked", self._revoked)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.close()

    async def login(self, credentials: Credentials) -> Session:
        """Log in. If the key file already names an active device, the session is bound to it
        (a device revoked meanwhile is left to ``use_device``, which wipes it)."""
        device_id = None
        if self.devices.key_file.exists():
            device_id = self.devices.key_file.load().device_id
        try:
            return await self.auth.login(credentials, device_id=device_id)
        except RelayApiError as error:
            if device_id is None or error.code != "unknown_device":
                raise
        return await self.auth.login(credentials)

    async def use_device(self, name: str, *, one_time_keys: int = 10) -> DeviceSecrets:
        """This device: the key file's when it is still active, else registered now; then the
        session moves to it (POST /api/v1/auth/device-session: no second login or TOTP code)."""
        secrets = await self.devices.ensure(name, one_time_keys=one_time_keys)
        if self.auth.session is None or self.auth.session.device_id != secrets.device_id:
            await self.auth.bind_device(self.devices.device_id)
        return secrets

    async def connect(self) -> None:
        """Connect to socket.io; queued messages are pushed (and stored, acknowledged) first."""
        await self.realtime.connect()

    def on(self, event: str, handler: EventHandler) -> None:
        """Call ``handler`` for a server event, with its typed value (events.py) or, for
        events the SDK does not know, the payload dict. ``message.new`` is handled by the SDK:
        read the inbox instead."""
        kind = EVENT_TYPES.get(event)

        async def typed(payload: dict[str, Any]) -> None:
            for each in payload.get("receipts", []) if event == RECEIPTS else [payload]:
                await handler(parse(kind, each) if kind is not None else each)

        self.realtime.on(event, typed)

    async def upload_photo(self, photo: bytes | Path, recipients: Sequence[Recipient], *,
                           manifest: Manifest = PHOTO, conversation_id: str | None = None) -> str:
        """Seal ``photo`` to ``recipients`` (from ``directory.recipient``/``claim``) and upload it;
        returns the blob id. To show it in a conversation use ``messages.send_photo``."""
        return await seal_and_upload(self.uploads, self.devices.keyring().sender, photo, recipients,
                                     manifest=manifest, conversation_id=conversation_id,
                                     workdir=self.devices.key_file.path.parent)

    async def open_blob(self, blob_id: str, target: str | os.PathLike[str]) -> OpenedEnvelope:
        """Download a blob and open it into ``target``, which appears only once the sender's
        signature verified. Acknowledge it (``blobs.ack``) after committing what it holds."""
        target_path = Path(target)
        with temporary_path(target_path.parent) as sealed:
            await self.blobs.download(blob_id, sealed)
            keys = self.devices.keyring()
            from_device = await _sender_of(sealed)
            sender_key = await self.directory.sender_key(from_device)
            opened = await open_file(sealed, target_path, keys.opening_keys(), sender_key)
        if opened.key_id in keys.one_time_keys:
            self.devices.forget_one_time_key(opened.key_id)
        return opened

    async def logout(self) -> None:
        await self.realtime.disconnect()
        await self.auth.logout()

    async def close(self) -> None:
        await self.realtime.disconnect()
        await self.http.close()

    async def _revoked(self, payload: dict[str, Any]) -> None:
        if payload.get("device_id") == (self.devices.secrets.device_id if self.devices.secrets else None):
            self.revoked = True
            self.devices.wipe()


async def _sender_of(path: Path) -> str:
    """The device that sealed the envelope in ``path`` (read from its head; no key needed)."""
    pieces = read_file(path)
    try:
        return (await read_envelope(pieces)).sender_device_id
    finally:
        await pieces.aclose()  # type: ignore[attr-defined]
