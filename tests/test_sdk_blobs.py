"""Sealed photos through the client SDK and a real relay: upload with tus (resumed after the
relay's connection drops), notified over socket.io, listed, downloaded with Range resume,
opened, acknowledged; rejected by an adapter; a revoked device wipes its keys."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest
from relay_client import (
    BlobAvailable,
    Credentials,
    DeviceRevokedNotice,
    RelayApiError,
    RelayClient,
)
from relay_client.blobs import Blobs
from relay_client.envelope import Manifest, seal_bytes
from relay_client.http import RelayHttp
from relay_client.uploads import BytesSource, Uploader

from relay.auth.principal import Role
from tests.support.envelopes import adapter
from tests.support.harness import PASSWORD, Relay
from tests.support.tcp_proxy import tcp_proxy


async def device_client(relay: Relay, username: str, tmp_path: Path, *, url: str | None = None) -> RelayClient:
    account = await relay.account(username)
    client = RelayClient(url or relay.url, key_file=tmp_path / username / "device.json")
    await client.login(Credentials(account.tenant, username, PASSWORD))
    await client.use_device(f"{username}'s phone")
    return client


@pytest.fixture
async def alice_and_bob(relay: Relay, tmp_path: Path) -> AsyncIterator[tuple[RelayClient, RelayClient]]:
    alice, bob = await device_client(relay, "alice", tmp_path), await device_client(relay, "bob", tmp_path)
    try:
        yield alice, bob
    finally:
        await alice.close()
        await bob.close()


async def test_a_photo_is_announced_downloaded_opened_and_acknowledged(
        alice_and_bob: tuple[RelayClient, RelayClient], tmp_path: Path) -> None:
    alice, bob = alice_and_bob
    available: asyncio.Queue[BlobAvailable] = asyncio.Queue()
    bob.on("blob.available", available.put)
    await bob.connect()
    photo = os.urandom(200_000)
    bob_id = (await bob.auth.me())["id"]
    recipients = [alice.directory.recipient(device) for device in await alice.directory.user_devices(bob_id)]
    room = await alice.conversations.direct(bob_id)
    blob_id = await alice.upload_photo(photo, recipients, manifest=Manifest("image/png"), conversation_id=room.id)

    notice = await asyncio.wait_for(available.get(), 10)
    assert (notice.blob_id, notice.sender_device_id) == (blob_id, alice.devices.device_id)
    assert [(b.blob_id, b.downloaded) for b in await bob.blobs.waiting()] == [(blob_id, False)]
    target = tmp_path / "opened.png"
    opened = await bob.open_blob(blob_id, target)
    assert target.read_bytes() == photo and opened.authentic and opened.manifest.content_type == "image/png"
    assert [path.name for path in target.parent.iterdir() if path.name.startswith(".relay-")] == []
    await bob.blobs.ack(blob_id)
    assert await bob.blobs.waiting() == []
    status = await alice.blobs.status(blob_id)
    assert (status["state"], status["purge_reason"]) == ("purged", "delivered")


async def test_an_upload_resumes_from_the_relays_offset_after_the_connection_drops(
        relay: Relay, tmp_path: Path) -> None:
    port = urlsplit(relay.url).port
    assert port is not None
    async with tcp_proxy("127.0.0.1", port) as proxy:
        alice = await device_client(relay, "alice", tmp_path, url=f"http://127.0.0.1:{proxy.port}")
        bob = await device_client(relay, "bob", tmp_path)
        try:
            bob_id = (await bob.auth.me())["id"]
            recipients = [alice.directory.recipient(d) for d in await alice.directory.user_devices(bob_id)]
            photo = os.urandom(600_000)
            envelope = await seal_bytes(Manifest("image/jpeg"), photo, sender=alice.devices.keyring().sender,
                                        recipients=recipients)
            reads: list[int] = []

            class DroppingSource(BytesSource):
                """Cuts every connection to the relay once, when the third piece is read."""

                def read(self, offset: int, size: int) -> bytes:
                    reads.append(offset)
                    if len(reads) == 3:
                        asyncio.get_running_loop().create_task(outage())
                    return super().read(offset, size)

            async def outage() -> None:
                await proxy.stop()
                await asyncio.sleep(0.3)
                await proxy.start()

            uploader = Uploader(alice.http, piece_size=100_000)
            room = await alice.conversations.direct(bob_id)
            blob_id = await uploader.upload(DroppingSource(envelope), conversation_id=room.id)
            assert reads[0] == 0 and reads == sorted(reads)
            assert len(reads) > len(set(reads)), "a piece was sent again after the drop"
            assert len(reads) < 2 * len(range(0, len(envelope), 100_000)), "resumed, not restarted"
            target = tmp_path / "photo.jpg"
            await bob.open_blob(blob_id, target)
            assert target.read_bytes() == photo
        finally:
            await alice.close()
            await bob.close()


async def test_a_download_continues_a_partial_file_with_range(
        alice_and_bob: tuple[RelayClient, RelayClient], tmp_path: Path) -> None:
    alice, bob = alice_and_bob
    bob_id = (await bob.auth.me())["id"]
    recipients = [alice.directory.recipient(d) for d in await alice.directory.user_devices(bob_id)]
    room = await alice.conversations.direct(bob_id)
    blob_id = await alice.upload_photo(os.urandom(300_000), recipients, conversation_id=room.id)
    whole = tmp_path / "whole.sealed"
    size = await bob.blobs.download(blob_id, whole)
    partial = tmp_path / "partial.sealed"
    partial.write_bytes(whole.read_bytes()[:123_456])
    assert await bob.blobs.download(blob_id, partial) == size
    assert partial.read_bytes() == whole.read_bytes()


async def test_an_adapter_rejects_a_blob_with_a_reason_the_sender_sees(relay: Relay, tmp_path: Path) -> None:
    admin = await relay.account("admin", Role.ADMIN)
    emr = await adapter(relay, admin)
    alice = await device_client(relay, "alice", tmp_path)
    try:
        device = await alice.directory.device(emr.device.id)
        blob_id = await alice.upload_photo(b"jpeg bytes", [alice.directory.recipient(device)])
        async with aiohttp.ClientSession() as session:
            http = RelayHttp(relay.url, session=session)
            http.token = emr.token
            with pytest.raises(ValueError):
                await Blobs(http).reject(blob_id, "looks odd")
            await Blobs(http).reject(blob_id, "patient_not_found")
        status = await alice.blobs.status(blob_id)
        assert [(r["device_id"], r["reject_reason"]) for r in status["recipients"]] == [
            (emr.device.id, "patient_not_found")]
    finally:
        await alice.close()


async def test_a_revoked_device_is_told_to_wipe_and_its_key_file_is_gone(
        alice_and_bob: tuple[RelayClient, RelayClient]) -> None:
    _, bob = alice_and_bob
    notices: asyncio.Queue[DeviceRevokedNotice] = asyncio.Queue()
    bob.on("device_revoked", notices.put)
    await bob.connect()
    key_file = bob.devices.key_file.path
    assert key_file.exists()
    device_id = bob.devices.device_id
    await bob.devices.revoke(device_id)
    notice = await asyncio.wait_for(notices.get(), 10)
    assert notice == DeviceRevokedNotice(device_id, True)
    assert bob.revoked and not key_file.exists()


async def test_the_socket_needs_a_device_bound_session(relay: Relay, tmp_path: Path) -> None:
    account = await relay.account("carol")
    async with RelayClient(relay.url, key_file=tmp_path / "carol.json") as carol:
        await carol.login(Credentials(account.tenant, "carol", PASSWORD))
        with pytest.raises(RelayApiError) as refused:
            await carol.connect()
        assert refused.value.code == "device_required"
