"""A clinician's device in a chat, written from docs/realtime.md as a client would: a socket.io
connection collecting every server event, client events with acknowledgements, and sealed
text messages (relay_client) to a conversation's recipients."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import socketio
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from relay_client.envelope import Manifest, Recipient, open_bytes, seal_bytes

from tests.support.devices import RegisteredDevice, unb64url
from tests.support.envelopes import Member, keyring_of
from tests.support.harness import Relay

TEXT = Manifest("text/plain")
SERVER_EVENTS = ("message.new", "message.receipt", "message.deleted", "conversation.updated", "consult.updated",
                 "blob.available", "device_revoked", "session_ended")
WAIT = 10


@dataclass
class Connection:
    client: socketio.AsyncClient
    events: dict[str, asyncio.Queue[dict[str, Any]]] = field(default_factory=lambda: defaultdict(asyncio.Queue))

    async def call(self, event: str, payload: Any) -> dict[str, Any]:
        """Send a client event and return its acknowledgement."""
        answer: dict[str, Any] = await self.client.call(event, payload, timeout=WAIT)
        return answer

    async def result(self, event: str, payload: Any) -> dict[str, Any]:
        answer = await self.call(event, payload)
        assert answer["ok"], answer
        result: dict[str, Any] = answer["result"]
        return result

    async def next(self, event: str) -> dict[str, Any]:
        return await asyncio.wait_for(self.events[event].get(), WAIT)

    def pending(self, event: str) -> list[dict[str, Any]]:
        queue, found = self.events[event], []
        while not queue.empty():
            found.append(queue.get_nowait())
        return found


@contextlib.asynccontextmanager
async def connected(relay: Relay, token: str, *, url: str | None = None) -> AsyncIterator[Connection]:
    client = socketio.AsyncClient(reconnection=False)
    connection = Connection(client)
    for name in SERVER_EVENTS:
        client.on(name, _collector(connection, name))
    await client.connect(url or relay.url, auth={"token": token}, transports=["websocket"], wait_timeout=WAIT)
    try:
        yield connection
    finally:
        await client.disconnect()


async def until_closed(connection: Connection) -> None:
    """Wait (WAIT seconds at most) for the relay to close the connection."""
    for _ in range(WAIT * 10):
        if not connection.client.connected:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the relay left the socket open")


def _collector(connection: Connection, name: str) -> Any:
    async def collect(payload: dict[str, Any]) -> None:
        for each in payload["receipts"] if name == "message.receipt" else [payload]:
            await connection.events[name].put(each)

    return collect


async def conversation(relay: Relay, creator: Member, others: list[Member], kind: str = "group",
                       **extra: Any) -> str:
    response = await relay.call("POST", "/api/v1/conversations", token=creator.token, json={
        "kind": kind, "member_user_ids": [other.account.user_id for other in others], **extra,
    })
    assert response.status == 201, await response.text()
    return str((await response.json())["id"])


async def recipients(relay: Relay, token: str, conversation_id: str) -> list[dict[str, Any]]:
    response = await relay.call("GET", f"/api/v1/conversations/{conversation_id}", token=token)
    assert response.status == 200, await response.text()
    return list((await response.json())["recipients"])


async def seal_text(sender: RegisteredDevice, recipient_views: list[dict[str, Any]], text: str) -> bytes:
    """Seal ``text`` to directory entries (the conversation's recipients), minus the sender itself."""
    targets = [
        Recipient(view["id"], view["encryption_key"]["key_id"],
                  X25519PublicKey.from_public_bytes(unb64url(view["encryption_key"]["public_key"])))
        for view in recipient_views if view["id"] != sender.id
    ]
    return await seal_bytes(TEXT, text.encode(), sender=keyring_of(sender).sender, recipients=targets)


async def open_text(device: RegisteredDevice, sender: RegisteredDevice, envelope: bytes) -> str:
    opened = await open_bytes(envelope, keyring_of(device).opening_keys(), keyring_of(sender).identity_key)
    return opened.content.decode()


def message_id() -> str:
    return secrets.token_urlsafe(16)


async def send_text(relay: Relay, connection: Connection, sender: RegisteredDevice, conversation_id: str,
                    text: str, **extra: Any) -> dict[str, Any]:
    """Seal ``text`` to the conversation's current recipients and send it; returns the ack."""
    envelope = await seal_text(sender, await recipients(relay, connection_token(connection), conversation_id), text)
    return await connection.call("message.send", {
        "conversation_id": conversation_id, "message_id": extra.pop("message_id", message_id()),
        "envelope": envelope, **extra,
    })


def connection_token(connection: Connection) -> str:
    token: str = connection.client.connection_auth["token"]
    return token
