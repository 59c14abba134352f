"""Faults on the camera relay's path, with real connections, processes and backends: a PATCH
cut mid-way resumes from the offset the relay reports; a relay restarted (or a node stopped)
mid-upload resumes it and still delivers what was complete; a Redis crash loses nothing with
AOF and, without persistence, is answered with clear 4xx codes; a cut download resumes with
Range. Every flow ends acknowledged with nothing of it left in the spool.

What "acknowledged as received" means (docs/uploads.md, "Resuming"): HEAD's Upload-Offset is
what the spool holds, and the relay writes a PATCH's bytes to the spool as they arrive, so a
byte counts once it is written, even when the PATCH that carried it was cut before it was
answered. A PATCH with Upload-Checksum counts only once all of it arrived and matched: cut, it
counts for nothing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from relay_client.envelope import open_bytes

from relay.camera.spool.contract import SpoolObjectMissing
from relay.camera.spool.filesystem import FilesystemSpool
from tests.conftest import SettingsFactory
from tests.support.clock import ManualClock
from tests.support.envelopes import (
    OFFSET_BYTES,
    TUS,
    Member,
    audit_trail,
    create_upload,
    download,
    head_of,
    keyring_of,
    listening,
    member,
    patch,
    seal_photo,
    upload,
)
from tests.support.harness import Relay, running_relay
from tests.support.redis_server import (
    AOF_ALWAYS,
    NO_PERSISTENCE,
    ThrowawayRedis,
    throwaway_redis_servers,
)

PATIENCE = 10.0
PHOTO_SIZE = 600_000
PART = 300_000


@pytest.fixture
async def throwaway_redis() -> AsyncIterator[list[ThrowawayRedis]]:
    async with throwaway_redis_servers() as servers:
        yield servers


def require_scaleout(backend: str) -> None:
    if backend != "scaleout":
        pytest.skip("scale-out only: it needs PostgreSQL and the Redis spool")


async def waited_for(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll ``condition`` (the relay works on a cut request in the background) for a few seconds."""
    deadline = time.monotonic() + PATIENCE
    while not await condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        await asyncio.sleep(0.01)


async def spool_contents(relay: Relay) -> set[str]:
    """Every file or key the spool holds (docs/spool.md: files under spool_dir, or REDIS_NAMESPACE:spool:*)."""
    if isinstance(relay.runtime.spool, FilesystemSpool):
        root = relay.runtime.settings.effective_spool_dir
        return {path.name for path in root.rglob("*") if path.is_file()}
    assert relay.runtime.redis is not None
    pattern = f"{relay.runtime.settings.redis_namespace}:spool:*"
    return {key.decode() async for key in relay.runtime.redis.scan_iter(match=pattern)}


async def spool_ids(relay: Relay) -> set[str]:
    """The ids of the objects in the spool (an upload's, a checksummed PATCH's staging object)."""
    names = await spool_contents(relay)
    if isinstance(relay.runtime.spool, FilesystemSpool):
        return {name.split(".", 1)[0] for name in names}
    return {name.split(":")[2] for name in names} - {"deadlines"}


async def upload_offset(relay: Relay, token: str, location: str) -> int:
    head = await relay.call("HEAD", location, token=token, headers=TUS)
    assert head.status == 200, await head.text()
    return int(head.headers["Upload-Offset"])


async def reached(relay: Relay, token: str, location: str, offset: int) -> bool:
    return await upload_offset(relay, token, location) >= offset


async def staged(relay: Relay, upload_id: str, size: int) -> bool:
    """Whether a checksummed PATCH's staging object (the one object besides the upload) holds ``size``
    bytes; not yet while its files are being created (or already removed)."""
    staging = await spool_ids(relay) - {upload_id}
    if len(staging) != 1:
        return False
    try:
        return await relay.runtime.spool.size(staging.pop()) >= size
    except SpoolObjectMissing:
        return False


async def only(relay: Relay, ids: set[str]) -> bool:
    return await spool_ids(relay) == ids


async def peek(reader: asyncio.StreamReader) -> bytes:
    """What the relay has answered so far on a connection, without waiting for more."""
    with contextlib.suppress(asyncio.TimeoutError):
        return await asyncio.wait_for(reader.read(1), 0.05)
    return b""


@contextlib.asynccontextmanager
async def patch_in_flight(relay: Relay, token: str, location: str, offset: int, sent: bytes, announced: int,
                          **headers: str) -> AsyncIterator[asyncio.StreamReader]:
    """A PATCH announcing ``announced`` bytes of which only ``sent`` leave the client; leaving the
    context drops the connection (a phone losing its network mid-upload)."""
    port = relay.runtime.settings.port
    fields = {"Host": f"127.0.0.1:{port}", "Authorization": f"Bearer {token}", **TUS, "Upload-Offset": str(offset),
              "Content-Type": OFFSET_BYTES, "Content-Length": str(announced), **headers}
    request = f"PATCH {location} HTTP/1.1\r\n" + "".join(f"{name}: {value}\r\n" for name, value in fields.items())
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request.encode() + b"\r\n" + sent)
        await writer.drain()
        yield reader
    finally:
        writer.transport.abort()


def checksum(data: bytes) -> str:
    return "sha256 " + base64.b64encode(hashlib.sha256(data).digest()).decode()


async def opened_by(relay: Relay, recipient: Member, sender: Member, blob_id: str) -> bytes:
    """Download ``blob_id`` as ``recipient`` and open it with relay_client; the photo's bytes."""
    response = await download(relay, recipient.token, blob_id)
    assert response.status == 200, await response.text()
    return await open_envelope(await response.read(), recipient, sender)


async def open_envelope(envelope: bytes, recipient: Member, sender: Member) -> bytes:
    opened = await open_bytes(envelope, keyring_of(recipient.device).opening_keys(),
                              keyring_of(sender.device).identity_key)
    return opened.content


async def acknowledge(relay: Relay, recipient: Member, blob_id: str) -> None:
    response = await relay.call("POST", f"/api/v1/blobs/{blob_id}/ack", token=recipient.token)
    assert response.status == 204, await response.text()


async def patch_from(relay: Relay, sender: Member, location: str, envelope: bytes, start: int, end: int) -> None:
    response = await patch(relay, sender.token, location, start, envelope[start:end])
    assert (response.status, response.headers.get("Upload-Offset")) == (204, str(end)), await response.text()


# 1. An upload cut mid-way


@pytest.mark.parametrize("where", ["inside the envelope head", "in the body"])
async def test_a_patch_cut_mid_way_keeps_what_was_written_and_the_upload_resumes_from_there(
    relay: Relay, where: str
) -> None:
    alice, bob = await member(relay, "alice"), await member(relay, "bob")
    photo = os.urandom(PHOTO_SIZE)
    envelope = await seal_photo(alice.device, [bob.device], photo)
    head_length = len(head_of(envelope))
    cut = head_length // 2 if where == "inside the envelope head" else head_length + PART
    location = (await create_upload(relay, alice.token, envelope)).headers["Location"]
    blob_id = location.rsplit("/", 1)[1]

    async with patch_in_flight(relay, alice.token, location, 0, envelope[:cut], len(envelope)) as answer:
        await waited_for(lambda: reached(relay, alice.token, location, cut), f"the relay to write {cut} bytes")
        assert not answer.at_eof() and len(await peek(answer)) == 0, "the cut PATCH must not have been answered"
    assert await upload_offset(relay, alice.token, location) == cut

    again = await patch(relay, alice.token, location, 0, envelope)
    error = (await again.json())["error"]
    assert (again.status, error["code"], error["details"]) == (409, "offset_mismatch", {"offset": cut})
    async with listening(relay, bob.token) as events:
        await patch_from(relay, alice, location, envelope, cut, len(envelope))
        assert (await asyncio.wait_for(events.get(), PATIENCE))["blob_id"] == blob_id

    assert await opened_by(relay, bob, alice, blob_id) == photo
    await acknowledge(relay, bob, blob_id)
    assert await spool_contents(relay) == set()
    assert [action for action, _ in await audit_trail(relay, blob_id)] == [
        "blob.upload_created", "blob.uploaded", "blob.notified", "blob.downloaded", "blob.acknowledged",
        "blob.purged"]


async def test_a_cut_patch_with_a_checksum_counts_for_nothing_and_leaves_no_staging_bytes(relay: Relay) -> None:
    alice, bob = await member(relay, "alice"), await member(relay, "bob")
    photo = os.urandom(PHOTO_SIZE)
    envelope = await seal_photo(alice.device, [bob.device], photo)
    location = (await create_upload(relay, alice.token, envelope)).headers["Location"]
    blob_id = location.rsplit("/", 1)[1]
    first = envelope[:50_000]
    assert (await patch(relay, alice.token, location, 0, first, **{"Upload-Checksum": checksum(first)})).status == 204

    rest = envelope[50_000:]
    async with patch_in_flight(relay, alice.token, location, 50_000, rest[:PART], len(rest),
                               **{"Upload-Checksum": checksum(rest)}):
        await waited_for(lambda: staged(relay, blob_id, PART), "the relay to stage the cut PATCH's bytes")
        assert await upload_offset(relay, alice.token, location) == 50_000
    await waited_for(lambda: only(relay, {blob_id}), "the staging object to go")
    assert await upload_offset(relay, alice.token, location) == 50_000

    done = await patch(relay, alice.token, location, 50_000, rest, **{"Upload-Checksum": checksum(rest)})
    assert (done.status, done.headers["Upload-Offset"]) == (204, str(len(envelope)))
    assert await opened_by(relay, bob, alice, blob_id) == photo
    await acknowledge(relay, bob, blob_id)
    assert await spool_contents(relay) == set()


# 2. and 3. The relay restarted, or a node stopped, mid-upload


async def test_a_relay_restarted_mid_upload_resumes_it_and_still_delivers_what_was_complete(
    make_settings: SettingsFactory, clock: ManualClock
) -> None:
    settings = make_settings()
    photo, waiting_photo = os.urandom(PHOTO_SIZE), os.urandom(40_000)
    async with running_relay(settings, clock) as relay:
        alice, bob = await member(relay, "alice"), await member(relay, "bob")
        waiting_envelope = await seal_photo(alice.device, [bob.device], waiting_photo)
        waiting_id = await upload(relay, alice.token, waiting_envelope)
        envelope = await seal_photo(alice.device, [bob.device], photo)
        created = await create_upload(relay, alice.token, envelope)
        location = created.headers["Location"]
        await patch_from(relay, alice, location, envelope, 0, PART // 2)
        await patch_from(relay, alice, location, envelope, PART // 2, PART)
        before = await relay.call("HEAD", location, token=alice.token, headers=TUS)

    async with running_relay(settings, clock) as relay:
        after = await relay.call("HEAD", location, token=alice.token, headers=TUS)
        assert after.status == 200
        assert {name: after.headers[name] for name in ("Upload-Offset", "Upload-Length", "Upload-Expires")} == {
            name: before.headers[name] for name in ("Upload-Offset", "Upload-Length", "Upload-Expires")}
        assert after.headers["Upload-Offset"] == str(PART)
        blob_id = location.rsplit("/", 1)[1]
        async with listening(relay, bob.token) as events:
            await patch_from(relay, alice, location, envelope, PART, len(envelope))
            assert (await asyncio.wait_for(events.get(), PATIENCE))["blob_id"] == blob_id

        listed = await (await relay.call("GET", "/api/v1/blobs", token=bob.token)).json()
        assert {item["blob_id"] for item in listed["blobs"]} == {waiting_id, blob_id}
        assert await opened_by(relay, bob, alice, waiting_id) == waiting_photo
        assert await opened_by(relay, bob, alice, blob_id) == photo
        await acknowledge(relay, bob, waiting_id)
        await acknowledge(relay, bob, blob_id)
        assert await spool_contents(relay) == set()


async def test_an_upload_begun_on_a_node_that_stopped_is_finished_and_served_by_another(
    backend: str, make_settings: SettingsFactory, clock: ManualClock
) -> None:
    require_scaleout(backend)
    photo = os.urandom(PHOTO_SIZE)
    async with running_relay(make_settings(), clock) as second:
        async with running_relay(make_settings(), clock) as first:
            assert first.url != second.url
            alice, bob = await member(first, "alice"), await member(first, "bob")
            envelope = await seal_photo(alice.device, [bob.device], photo)
            location = (await create_upload(first, alice.token, envelope)).headers["Location"]
            await patch_from(first, alice, location, envelope, 0, PART)

        assert await upload_offset(second, alice.token, location) == PART
        blob_id = location.rsplit("/", 1)[1]
        async with listening(second, bob.token) as events:
            await patch_from(second, alice, location, envelope, PART, len(envelope))
            assert (await asyncio.wait_for(events.get(), PATIENCE))["blob_id"] == blob_id
        assert await opened_by(second, bob, alice, blob_id) == photo
        await acknowledge(second, bob, blob_id)
        assert await spool_contents(second) == set()


# 4. Redis restarted under a scale-out relay; bytes the spool no longer holds


async def test_with_aof_a_redis_crash_mid_upload_loses_nothing_the_relay_acknowledged(
    backend: str, make_settings: SettingsFactory, clock: ManualClock, tmp_path: Path,
    throwaway_redis: list[ThrowawayRedis],
) -> None:
    require_scaleout(backend)
    server = ThrowawayRedis(tmp_path / "redis", *AOF_ALWAYS)
    throwaway_redis.append(server)
    await server.start()
    photo, waiting_photo = os.urandom(PHOTO_SIZE), os.urandom(40_000)
    async with running_relay(make_settings(redis_url=server.url), clock) as relay:
        alice, bob = await member(relay, "alice"), await member(relay, "bob")
        waiting_id = await upload(relay, alice.token, await seal_photo(alice.device, [bob.device], waiting_photo))
        envelope = await seal_photo(alice.device, [bob.device], photo)
        location = (await create_upload(relay, alice.token, envelope)).headers["Location"]
        await patch_from(relay, alice, location, envelope, 0, PART)

        await server.restart(signal.SIGKILL)

        assert await upload_offset(relay, alice.token, location) == PART
        await patch_from(relay, alice, location, envelope, PART, len(envelope))
        blob_id = location.rsplit("/", 1)[1]
        assert await opened_by(relay, bob, alice, waiting_id) == waiting_photo
        assert await opened_by(relay, bob, alice, blob_id) == photo
        await acknowledge(relay, bob, waiting_id)
        await acknowledge(relay, bob, blob_id)
        assert await spool_contents(relay) == set()


async def test_without_persistence_a_redis_crash_is_answered_with_clear_codes_and_the_photo_sent_again(
    backend: str, make_settings: SettingsFactory, clock: ManualClock, tmp_path: Path,
    throwaway_redis: list[ThrowawayRedis],
) -> None:
    require_scaleout(backend)
    server = ThrowawayRedis(tmp_path / "redis", *NO_PERSISTENCE)
    throwaway_redis.append(server)
    await server.start()
    photo = os.urandom(PHOTO_SIZE)
    async with running_relay(make_settings(redis_url=server.url), clock) as relay:
        alice, bob = await member(relay, "alice"), await member(relay, "bob")
        envelope = await seal_photo(alice.device, [bob.device], photo)
        waiting_id = await upload(relay, alice.token, envelope)
        location = (await create_upload(relay, alice.token, envelope)).headers["Location"]
        await patch_from(relay, alice, location, envelope, 0, PART)

        await server.restart(signal.SIGKILL)

        head = await relay.call("HEAD", location, token=alice.token, headers=TUS)
        assert head.status == 410
        late = await patch(relay, alice.token, location, PART, envelope[PART:])
        assert (late.status, (await late.json())["error"]["code"]) == (410, "upload_expired")

        inspected = await relay.call("HEAD", f"/api/v1/blobs/{waiting_id}", token=bob.token)
        assert inspected.status == 410
        lost = await download(relay, bob.token, waiting_id)
        assert (lost.status, (await lost.json())["error"]["code"]) == (410, "blob_lost")
        assert (await (await relay.call("GET", "/api/v1/blobs", token=bob.token)).json())["blobs"] == []
        ack = await relay.call("POST", f"/api/v1/blobs/{waiting_id}/ack", token=bob.token)
        assert (ack.status, (await ack.json())["error"]["code"]) == (410, "blob_lost")
        status = await (await relay.call("GET", f"/api/v1/blobs/{waiting_id}/status", token=alice.token)).json()
        assert (status["state"], status["purge_reason"]) == ("purged", "lost")
        assert status["recipients"][0]["purge_reason"] == "lost"
        assert (await audit_trail(relay, waiting_id))[-1] == ("blob.purged", {"reason": "lost"})

        resent = await upload(relay, alice.token, envelope)
        assert await opened_by(relay, bob, alice, resent) == photo
        await acknowledge(relay, bob, resent)
        assert await spool_contents(relay) == set()

        clock.advance(relay.runtime.settings.upload_window)
        await relay.runtime.camera.sweeper.sweep()
        await alice.log_in_again(relay)
        upload_id = location.rsplit("/", 1)[1]
        ended = await (await relay.call("GET", f"/api/v1/blobs/{upload_id}/status", token=alice.token)).json()
        assert (ended["state"], ended["purge_reason"]) == ("expired", "upload_window")


async def test_a_blob_past_its_window_before_any_sweep_is_answered_purged_not_broken_off(relay: Relay) -> None:
    alice, bob = await member(relay, "alice"), await member(relay, "bob")
    blob_id = await upload(relay, alice.token, await seal_photo(alice.device, [bob.device], os.urandom(40_000)))

    relay.clock.advance(relay.runtime.settings.photo_retention)
    await bob.log_in_again(relay)
    for method in ("HEAD", "GET"):
        late = await relay.call(method, f"/api/v1/blobs/{blob_id}", token=bob.token)
        assert late.status == 410
    assert (await late.json())["error"]["code"] == "blob_purged"
    assert (await audit_trail(relay, blob_id))[-1] == ("blob.purged", {"reason": "retention"})
    assert await spool_contents(relay) == set()
    assert (await relay.runtime.camera.sweeper.sweep()).purged == 0


# 5. A cut download


async def test_a_download_cut_twice_resumes_with_range_and_if_range(relay: Relay) -> None:
    alice, bob = await member(relay, "alice"), await member(relay, "bob")
    photo = os.urandom(PHOTO_SIZE)
    envelope = await seal_photo(alice.device, [bob.device], photo)
    blob_id = await upload(relay, alice.token, envelope)
    url, authorization = f"{relay.url}/api/v1/blobs/{blob_id}", {"Authorization": f"Bearer {bob.token}"}

    whole = await relay.http.get(url, headers=authorization)
    assert (whole.status, whole.headers["Content-Length"]) == (200, str(len(envelope)))
    etag = whole.headers["ETag"]
    received = await whole.content.readexactly(100_000)
    whole.close()

    middle = await relay.http.get(url, headers=authorization | {"Range": f"bytes={len(received)}-",
                                                                "If-Range": etag})
    assert middle.status == 206
    assert middle.headers["Content-Range"] == f"bytes {len(received)}-{len(envelope) - 1}/{len(envelope)}"
    received += await middle.content.readexactly(PART)
    middle.close()

    rest = await download(relay, bob.token, blob_id, Range=f"bytes={len(received)}-", **{"If-Range": etag})
    assert rest.status == 206
    received += await rest.read()
    assert received == envelope
    assert await open_envelope(received, bob, alice) == photo

    listed = await (await relay.call("GET", "/api/v1/blobs", token=bob.token)).json()
    assert [(item["blob_id"], item["downloaded"]) for item in listed["blobs"]] == [(blob_id, True)]
    await acknowledge(relay, bob, blob_id)
    assert await spool_contents(relay) == set()
    assert [action for action, _ in await audit_trail(relay, blob_id)].count("blob.downloaded") == 1
