"""Sealing real envelopes (relay_client) to devices registered on a test relay, and moving them
through the camera relay as a client would: tus uploads, downloads, device-bound adapters."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import socketio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from relay_client.envelope import Manifest, Recipient, seal_bytes
from relay_client.envelope.format import split_envelope
from relay_client.envelope.keys import DeviceKeyring
from sqlalchemy import select

from relay.auth.principal import Role
from relay.camera.spool.contract import SpoolObjectMissing
from relay.errors import ApiError
from relay.keys.routing_view import read_routing_view
from relay.storage.tables import audit_events, devices
from tests.support.devices import RegisteredDevice, register_device
from tests.support.harness import Account, Relay
from tests.support.integration import AdapterKey, token_form

PHOTO = Manifest("image/jpeg")
TUS = {"Tus-Resumable": "1.0.0"}
OFFSET_BYTES = "application/offset+octet-stream"


def keyring_of(device: RegisteredDevice) -> DeviceKeyring:
    """The relay_client keyring holding the same private keys as a test device (pynacl)."""
    keys = device.keys
    return DeviceKeyring(
        device.id, Ed25519PrivateKey.from_private_bytes(bytes(keys.identity)), keys.encryption_key_id,
        X25519PrivateKey.from_private_bytes(bytes(keys.encryption)), {},
    )


def recipient_of(device: RegisteredDevice) -> Recipient:
    keyring = keyring_of(device)
    return Recipient(device.id, keyring.encryption_key_id, keyring.encryption_key.public_key())


async def seal_photo(sender: RegisteredDevice, recipients: list[RegisteredDevice], content: bytes) -> bytes:
    return await seal_bytes(PHOTO, content, sender=keyring_of(sender).sender,
                            recipients=[recipient_of(device) for device in recipients])


def head_of(envelope: bytes) -> bytes:
    return split_envelope(envelope)[0]


def metadata(envelope: bytes, **extra: bytes) -> str:
    values = {"sha256": hashlib.sha256(envelope).hexdigest().encode(), **extra}
    return ",".join(f"{key} {base64.b64encode(value).decode()}" for key, value in values.items())


@dataclass
class Member:
    """Someone with a registered device and a session bound to it."""

    account: Account
    device: RegisteredDevice
    token: str

    async def log_in_again(self, relay: Relay) -> str:
        """A fresh device-bound session (after the clock moved past the idle timeout)."""
        self.account.token = await relay.login(self.account)
        self.token = await relay.login(self.account, device_id=self.device.id)
        return self.token


async def member(relay: Relay, username: str, role: Role = Role.CLINICIAN, *, tenant: str = "general") -> Member:
    account = await relay.account(username, role, tenant=tenant)
    device = await register_device(relay, account.token)
    return Member(account, device, await relay.login(account, device_id=device.id))


async def request_token(relay: Relay, integration_id: str, key: AdapterKey, **form: str) -> Any:
    """POST /api/v1/auth/token with a fresh assertion (and extra form fields such as device_id)."""
    assertion = key.assertion(integration_id, relay.runtime.integrations.token_url, relay.clock.now())
    return await relay.call("POST", "/api/v1/auth/token", data=token_form(assertion) | form)


@dataclass
class Adapter:
    integration_id: str
    key: AdapterKey
    device: RegisteredDevice
    token: str


async def adapter(relay: Relay, admin: Account, name: str = "emr-adapter") -> Adapter:
    """An EMR adapter: an integration principal with one device and a token bound to it."""
    key = AdapterKey.generate()
    response = await relay.call("POST", "/api/v1/integrations", token=admin.token,
                                json={"name": name, "public_key_pem": key.public_pem})
    assert response.status == 201, await response.text()
    integration_id = (await response.json())["id"]
    unbound = await (await request_token(relay, integration_id, key)).json()
    device = await register_device(relay, unbound["access_token"], name="adapter device")
    response = await request_token(relay, integration_id, key, device_id=device.id)
    assert response.status == 200, await response.text()
    return Adapter(integration_id, key, device, (await response.json())["access_token"])


async def create_upload(relay: Relay, token: str, envelope: bytes, **headers: str) -> Any:
    """tus creation; unless the caller sets Upload-Metadata, the upload names a conversation of
    the sender and its recipients' users, as a clinician's client does (see ``conversation_for``)."""
    if "Upload-Metadata" not in headers:
        room = await conversation_for(relay, token, envelope)
        extra = {} if room is None else {"conversation": room.encode()}
        headers = headers | {"Upload-Metadata": metadata(envelope, **extra)}
    return await relay.call("POST", "/api/v1/uploads", token=token, headers=TUS | {
        "Upload-Length": str(len(envelope))} | headers)


async def conversation_for(relay: Relay, token: str, envelope: bytes) -> str | None:
    """A group conversation of the sender and the users owning the envelope's recipient devices;
    None when the envelope cannot be read or addresses only the sender's own devices and adapters,
    or when those users cannot share a conversation (another tenant's, disabled): the relay then
    judges the recipients without one."""
    try:
        view = read_routing_view(envelope)
    except ApiError:
        return None
    me = await relay.call("GET", "/api/v1/me", token=token)
    if me.status != 200:
        return None
    async with relay.runtime.database.read() as connection:
        owners = set((await connection.scalars(select(devices.c.owner_id).where(
            devices.c.id.in_([recipient.device_id for recipient in view.recipients]),
            devices.c.owner_type == "user",
        ))).all())
    others = sorted(owners - {(await me.json())["id"]})
    if not others:
        return None
    created = await relay.call("POST", "/api/v1/conversations", token=token,
                               json={"kind": "group", "member_user_ids": others})
    return str((await created.json())["id"]) if created.status == 201 else None


async def patch(relay: Relay, token: str, location: str, offset: int, data: bytes, **headers: str) -> Any:
    return await relay.call("PATCH", location, token=token, data=data, headers=TUS | {
        "Upload-Offset": str(offset), "Content-Type": OFFSET_BYTES} | headers)


async def upload(relay: Relay, token: str, envelope: bytes, *, chunk: int = 64 * 1024,
                 conversation: str | None = None) -> str:
    """Upload ``envelope`` with tus in PATCHes of ``chunk`` bytes (naming ``conversation`` if
    given); returns the blob id."""
    extra = {} if conversation is None else {"Upload-Metadata": metadata(envelope, conversation=conversation.encode())}
    created = await create_upload(relay, token, envelope, **extra)
    assert created.status == 201, await created.text()
    location = created.headers["Location"]
    for offset in range(0, len(envelope), chunk):
        response = await patch(relay, token, location, offset, envelope[offset: offset + chunk])
        assert response.status == 204, await response.text()
        assert int(response.headers["Upload-Offset"]) == min(offset + chunk, len(envelope))
    return location.rsplit("/", 1)[1]


async def download(relay: Relay, token: str, blob_id: str, **headers: str) -> Any:
    return await relay.call("GET", f"/api/v1/blobs/{blob_id}", token=token, headers=headers)


async def audit_trail(relay: Relay, blob_id: str) -> list[tuple[str, dict[str, Any]]]:
    """(action, details) of every audit row about ``blob_id``, oldest first."""
    async with relay.runtime.database.read() as connection:
        rows = await connection.execute(select(audit_events.c.action, audit_events.c.details)
                                        .where(audit_events.c.object_id == blob_id).order_by(audit_events.c.seq))
        return [(row.action, json.loads(row.details)) for row in rows]


async def spool_holds(relay: Relay, object_id: str) -> bool:
    try:
        await relay.runtime.spool.size(object_id)
    except SpoolObjectMissing:
        return False
    return True


@contextlib.asynccontextmanager
async def listening(relay: Relay, token: str) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
    """A socket.io connection with ``token``; yields the queue of its ``blob.available`` events."""
    client = socketio.AsyncClient(reconnection=False)
    events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    client.on("blob.available", events.put)
    await client.connect(relay.url, auth={"token": token}, transports=["websocket"], wait_timeout=10)
    try:
        yield events
    finally:
        await client.disconnect()
