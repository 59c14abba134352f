"""The tus 1.0 protocol on /api/v1/uploads: a standard client (tuspy) uploads unchanged, and
the protocol's discovery, creation, offsets, resumption, checksums, expiration and
termination behave as the specification says."""

from __future__ import annotations

import base64
import hashlib
import io
import os

import pytest
from relay_client.envelope import open_bytes
from tusclient.client import TusClient
from tusclient.uploader import AsyncUploader

from tests.conftest import SettingsFactory
from tests.support.chat import conversation
from tests.support.clock import ManualClock
from tests.support.envelopes import (
    TUS,
    audit_trail,
    create_upload,
    download,
    keyring_of,
    member,
    patch,
    seal_photo,
    spool_holds,
)
from tests.support.harness import Relay, running_relay


class Sha256Uploader(AsyncUploader):
    """tuspy's uploader configured for the checksum algorithm Relay advertises."""

    CHECKSUM_ALGORITHM_PAIR = ("sha256", hashlib.sha256)


def checksum(data: bytes) -> str:
    return "sha256 " + base64.b64encode(hashlib.sha256(data).digest()).decode()


@pytest.mark.parametrize("uploader", [AsyncUploader, Sha256Uploader], ids=["plain", "with checksums"])
async def test_a_standard_tus_client_uploads_a_sealed_photo(relay: Relay, uploader: type[AsyncUploader]) -> None:
    alice, bob = await member(relay, "alice"), await member(relay, "bob")
    photo = os.urandom(150_000)
    envelope = await seal_photo(alice.device, [bob.device], photo)
    client = TusClient(relay.url + "/api/v1/uploads", headers={"Authorization": f"Bearer {alice.token}"})
    tus = uploader(file_stream=io.BytesIO(envelope), client=client, chunk_size=40_000,
                   metadata={"sha256": hashlib.sha256(envelope).hexdigest(),
                             "conversation": await conversation(relay, alice, [bob], kind="direct")},
                   upload_checksum=uploader is Sha256Uploader)
    await tus.upload()
    assert tus.offset == len(envelope)

    blob_id = tus.url.rsplit("/", 1)[1]
    received = await (await download(relay, bob.token, blob_id)).read()
    opened = await open_bytes(received, keyring_of(bob.device).opening_keys(), keyring_of(alice.device).identity_key)
    assert opened.content == photo


async def test_discovery_creation_and_offsets(relay: Relay) -> None:
    alice, bob = await member(relay, "alice"), await member(relay, "bob")
    envelope = await seal_photo(alice.device, [bob.device], os.urandom(10_000))

    options = await relay.call("OPTIONS", "/api/v1/uploads")
    assert options.status == 204
    assert options.headers["Tus-Version"] == "1.0.0"
    assert set(options.headers["Tus-Extension"].split(",")) == {"creation", "termination", "expiration", "checksum"}
    assert options.headers["Tus-Max-Size"] == str(relay.runtime.settings.max_upload_bytes)
    assert options.headers["Tus-Checksum-Algorithm"] == "sha256"

    created = await create_upload(relay, alice.token, envelope)
    assert created.status == 201
    assert created.headers["Tus-Resumable"] == "1.0.0"
    location = created.headers["Location"]
    assert location.startswith("/api/v1/uploads/") and "Upload-Expires" in created.headers

    head = await relay.call("HEAD", location, token=alice.token, headers=TUS)
    assert (head.status, head.headers["Upload-Offset"], head.headers["Upload-Length"]) == (200, "0", str(len(envelope)))
    assert head.headers["Cache-Control"] == "no-store"

    first = await patch(relay, alice.token, location, 0, envelope[:4000])
    assert (first.status, first.headers["Upload-Offset"]) == (204, "4000")
    head = await relay.call("HEAD", location, token=alice.token, headers=TUS)
    assert head.headers["Upload-Offset"] == "4000"
    last = await patch(relay, alice.token, location, 4000, envelope[4000:])
    assert (last.status, last.headers["Upload-Offset"]) == (204, str(len(envelope)))
    head = await relay.call("HEAD", location, token=alice.token, headers=TUS)
    assert head.headers["Upload-Offset"] == str(len(envelope))


async def test_a_checksum_mismatch_leaves_the_offset_where_it_was(relay: Relay) -> None:
    alice, bob = await member(relay, "alice"), await member(relay, "bob")
    envelope = await seal_photo(alice.device, [bob.device], os.urandom(20_000))
    location = (await create_upload(relay, alice.token, envelope)).headers["Location"]
    piece = envelope[:8000]

    good = await patch(relay, alice.token, location, 0, piece, **{"Upload-Checksum": checksum(piece)})
    assert (good.status, good.headers["Upload-Offset"]) == (204, "8000")
    corrupted = envelope[8000:12000] + b"x"
    bad = await patch(relay, alice.token, location, 8000, corrupted[1:],
                      **{"Upload-Checksum": checksum(envelope[8000:12000])})
    assert (bad.status, (await bad.json())["error"]["code"]) == (460, "checksum_mismatch")
    head = await relay.call("HEAD", location, token=alice.token, headers=TUS)
    assert head.headers["Upload-Offset"] == "8000"

    rest = envelope[8000:]
    done = await patch(relay, alice.token, location, 8000, rest, **{"Upload-Checksum": checksum(rest)})
    assert done.status == 204
    blob_id = location.rsplit("/", 1)[1]
    assert await (await download(relay, bob.token, blob_id)).read() == envelope

    unsupported = await patch(relay, alice.token, location, 0, b"x", **{"Upload-Checksum": "md5 AAAA"})
    assert (unsupported.status, (await unsupported.json())["error"]["code"]) == (400, "checksum_algorithm_unsupported")


async def test_termination_deletes_the_bytes(relay: Relay) -> None:
    alice, bob = await member(relay, "alice"), await member(relay, "bob")
    envelope = await seal_photo(alice.device, [bob.device], os.urandom(20_000))
    location = (await create_upload(relay, alice.token, envelope)).headers["Location"]
    blob_id = location.rsplit("/", 1)[1]
    assert (await patch(relay, alice.token, location, 0, envelope[:5000])).status == 204

    deleted = await relay.call("DELETE", location, token=alice.token, headers=TUS)
    assert (deleted.status, deleted.headers["Tus-Resumable"]) == (204, "1.0.0")
    assert not await spool_holds(relay, blob_id)
    for method in ("HEAD", "DELETE"):
        assert (await relay.call(method, location, token=alice.token, headers=TUS)).status == 404
    again = await patch(relay, alice.token, location, 5000, envelope[5000:])
    assert again.status == 404
    assert [action for action, _ in await audit_trail(relay, blob_id)] == [
        "blob.upload_created", "blob.upload_terminated"]


async def test_the_sender_can_withdraw_a_completed_photo_before_it_is_fetched(relay: Relay) -> None:
    alice, bob = await member(relay, "alice"), await member(relay, "bob")
    envelope = await seal_photo(alice.device, [bob.device], os.urandom(2000))
    location = (await create_upload(relay, alice.token, envelope)).headers["Location"]
    assert (await patch(relay, alice.token, location, 0, envelope)).status == 204
    blob_id = location.rsplit("/", 1)[1]

    assert (await relay.call("DELETE", location, token=alice.token, headers=TUS)).status == 204
    assert not await spool_holds(relay, blob_id)
    assert (await (await relay.call("GET", "/api/v1/blobs", token=bob.token)).json())["blobs"] == []
    status = await (await relay.call("GET", f"/api/v1/blobs/{blob_id}/status", token=alice.token)).json()
    assert (status["state"], status["purge_reason"]) == ("purged", "terminated")
    assert status["recipients"][0]["purge_reason"] == "terminated"


async def test_protocol_versions_are_checked(relay: Relay) -> None:
    alice, bob = await member(relay, "alice"), await member(relay, "bob")
    envelope = await seal_photo(alice.device, [bob.device], os.urandom(2000))
    without = await relay.call("POST", "/api/v1/uploads", token=alice.token,
                               headers={"Upload-Length": str(len(envelope))})
    for response in (without, await create_upload(relay, alice.token, envelope, **{"Tus-Resumable": "0.2.2"})):
        assert response.status == 412
        assert response.headers["Tus-Version"] == "1.0.0"
        assert (await response.json())["error"]["code"] == "tus_version_unsupported"


async def test_an_upload_expires_after_its_window(relay: Relay) -> None:
    alice, bob = await member(relay, "alice"), await member(relay, "bob")
    envelope = await seal_photo(alice.device, [bob.device], os.urandom(20_000))
    location = (await create_upload(relay, alice.token, envelope)).headers["Location"]
    assert (await patch(relay, alice.token, location, 0, envelope[:5000])).status == 204

    relay.clock.advance(relay.runtime.settings.upload_window)
    await alice.log_in_again(relay)
    head = await relay.call("HEAD", location, token=alice.token, headers=TUS)
    assert head.status == 410
    late = await patch(relay, alice.token, location, 5000, envelope[5000:])
    assert (late.status, (await late.json())["error"]["code"]) == (410, "upload_expired")


async def test_uploads_are_rate_limited_per_device(make_settings: SettingsFactory, clock: ManualClock) -> None:
    async with running_relay(make_settings(upload_rate_per_minute=3), clock) as relay:
        alice, bob = await member(relay, "alice"), await member(relay, "bob")
        envelope = await seal_photo(alice.device, [bob.device], b"photo")
        statuses = [(await create_upload(relay, alice.token, envelope)).status for _ in range(3)]
        assert statuses == [201, 201, 201]
        refused = await create_upload(relay, alice.token, envelope)
        assert refused.status == 429 and (await refused.json())["error"]["code"] == "rate_limited"
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        other = await seal_photo(bob.device, [alice.device], b"photo")
        assert (await create_upload(relay, bob.token, other)).status == 201, "another device has its own count"
        clock.advance(60)
        assert (await create_upload(relay, alice.token, envelope)).status == 201
