"""A sealed photo from one clinician's device to another's: notified over socket.io, listed,
downloaded with Range (and resumed), opened, acknowledged, and purged at once."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

from relay_client.envelope import open_bytes

from relay.camera.notifier import BLOB_AVAILABLE
from tests.support.envelopes import (
    audit_trail,
    download,
    keyring_of,
    listening,
    member,
    seal_photo,
    spool_holds,
    upload,
)
from tests.support.harness import Relay


async def test_a_photo_is_notified_downloaded_in_ranges_acknowledged_and_purged(relay: Relay) -> None:
    alice, bob = await member(relay, "alice"), await member(relay, "bob")
    photo = os.urandom(300_000)
    envelope = await seal_photo(alice.device, [bob.device], photo)

    async with listening(relay, bob.token) as events:
        blob_id = await upload(relay, alice.token, envelope)
        event = await asyncio.wait_for(events.get(), 10)
    assert event == {"blob_id": blob_id, "size": len(envelope), "sender_device_id": alice.device.id}

    listed = await (await relay.call("GET", "/api/v1/blobs", token=bob.token)).json()
    assert [(b["blob_id"], b["size"], b["sender_device_id"], b["downloaded"]) for b in listed["blobs"]] == [
        (blob_id, len(envelope), alice.device.id, False)]

    first = await download(relay, bob.token, blob_id, Range="bytes=0-99999")
    assert first.status == 206
    assert first.headers["Content-Range"] == f"bytes 0-99999/{len(envelope)}"
    assert first.headers["Content-Type"] == "application/octet-stream"
    assert "no-store" in first.headers["Cache-Control"]
    rest = await download(relay, bob.token, blob_id, Range="bytes=100000-")
    assert rest.status == 206
    received = await first.read() + await rest.read()
    assert received == envelope
    opened = await open_bytes(received, keyring_of(bob.device).opening_keys(), keyring_of(alice.device).identity_key)
    assert opened.content == photo

    assert (await relay.call("POST", f"/api/v1/blobs/{blob_id}/ack", token=bob.token)).status == 204
    assert not await spool_holds(relay, blob_id)
    assert (await (await relay.call("GET", "/api/v1/blobs", token=bob.token)).json())["blobs"] == []
    gone = await download(relay, bob.token, blob_id)
    assert (gone.status, (await gone.json())["error"]["code"]) == (410, "blob_purged")
    assert (await relay.call("POST", f"/api/v1/blobs/{blob_id}/ack", token=bob.token)).status == 204

    status = await (await relay.call("GET", f"/api/v1/blobs/{blob_id}/status", token=alice.token)).json()
    assert (status["state"], status["purge_reason"]) == ("purged", "delivered")
    [seen] = status["recipients"]
    assert seen["device_id"] == bob.device.id and seen["acknowledged_at"] and seen["downloaded_at"]

    trail = await audit_trail(relay, blob_id)
    assert [action for action, _ in trail] == [
        "blob.upload_created", "blob.uploaded", "blob.notified", "blob.downloaded", "blob.acknowledged",
        "blob.purged"]
    assert trail[-1][1] == {"reason": "delivered"}
    assert trail[2][1] == trail[3][1] == {"device_id": bob.device.id}


async def test_the_blob_stays_until_every_recipient_acknowledged(relay: Relay) -> None:
    alice, bob, carol = await member(relay, "alice"), await member(relay, "bob"), await member(relay, "carol")
    envelope = await seal_photo(alice.device, [bob.device, carol.device], os.urandom(5000))
    blob_id = await upload(relay, alice.token, envelope)

    assert (await relay.call("POST", f"/api/v1/blobs/{blob_id}/ack", token=bob.token)).status == 204
    assert (await relay.call("POST", f"/api/v1/blobs/{blob_id}/ack", token=bob.token)).status == 204
    assert await spool_holds(relay, blob_id)
    response = await download(relay, carol.token, blob_id)
    assert response.status == 200 and await response.read() == envelope

    assert (await relay.call("POST", f"/api/v1/blobs/{blob_id}/ack", token=carol.token)).status == 204
    assert not await spool_holds(relay, blob_id)
    actions = [action for action, _ in await audit_trail(relay, blob_id)]
    assert actions.count("blob.acknowledged") == 2 and actions[-1] == "blob.purged"


async def test_ranges_resume_a_cut_download_and_bad_ranges_are_answered(relay: Relay) -> None:
    alice, bob = await member(relay, "alice"), await member(relay, "bob")
    envelope = await seal_photo(alice.device, [bob.device], os.urandom(200_000))
    blob_id = await upload(relay, alice.token, envelope)

    response = await relay.http.get(f"{relay.url}/api/v1/blobs/{blob_id}",
                                    headers={"Authorization": f"Bearer {bob.token}"})
    partial = await response.content.readexactly(70_000)
    response.close()
    head = await relay.call("HEAD", f"/api/v1/blobs/{blob_id}", token=bob.token)
    assert (head.status, head.headers["Content-Length"], head.headers["Accept-Ranges"]) == (
        200, str(len(envelope)), "bytes")
    resumed = await download(relay, bob.token, blob_id, Range=f"bytes={len(partial)}-",
                             **{"If-Range": head.headers["ETag"]})
    assert resumed.status == 206
    assert partial + await resumed.read() == envelope

    tail = await download(relay, bob.token, blob_id, Range="bytes=-64")
    assert (tail.status, await tail.read()) == (206, envelope[-64:])
    stale = await download(relay, bob.token, blob_id, Range="bytes=10-", **{"If-Range": '"another-version"'})
    assert (stale.status, len(await stale.read())) == (200, len(envelope))
    several = await download(relay, bob.token, blob_id, Range="bytes=0-1,5-6")
    assert several.status == 200
    past = await download(relay, bob.token, blob_id, Range=f"bytes={len(envelope)}-")
    assert past.status == 416
    assert past.headers["Content-Range"] == f"bytes */{len(envelope)}"
    assert (await past.json())["error"]["code"] == "range_not_satisfiable"

    downloads = [action for action, _ in await audit_trail(relay, blob_id) if action == "blob.downloaded"]
    assert downloads == ["blob.downloaded"]


async def test_only_recipient_devices_see_or_fetch_a_blob(relay: Relay) -> None:
    alice, bob, eve = await member(relay, "alice"), await member(relay, "bob"), await member(relay, "eve")
    envelope = await seal_photo(alice.device, [bob.device], os.urandom(1000))
    blob_id = await upload(relay, alice.token, envelope)

    for token in (eve.token, alice.token):
        response = await download(relay, token, blob_id)
        assert (response.status, (await response.json())["error"]["code"]) == (404, "blob_not_found")
        assert (await (await relay.call("GET", "/api/v1/blobs", token=token)).json())["blobs"] == []
    unbound = await download(relay, bob.account.token, blob_id)
    assert (unbound.status, (await unbound.json())["error"]["code"]) == (403, "device_required")
    status = await relay.call("GET", f"/api/v1/blobs/{blob_id}/status", token=eve.token)
    assert status.status == 404


def test_every_event_the_camera_relay_emits_is_documented() -> None:
    table = (Path(__file__).resolve().parents[1] / "docs" / "realtime.md").read_text()
    documented = set(re.findall(r"^\| `([^`]+)` \|", table, flags=re.MULTILINE))
    assert {BLOB_AVAILABLE, "device_revoked"} <= documented
