"""Bad uploads and bad delivery calls get a 4xx with a code, and nothing already accepted is
disturbed: wrong offsets, oversize, hash mismatches, truncated or garbage heads, recipients the
sender may not address, other people's uploads and blobs."""

from __future__ import annotations

import base64
import os

from relay.auth.principal import Role
from tests.support.chat import conversation
from tests.support.envelopes import (
    TUS,
    Member,
    audit_trail,
    create_upload,
    download,
    head_of,
    member,
    metadata,
    patch,
    seal_photo,
    spool_holds,
    upload,
)
from tests.support.harness import Relay


async def code_of(response: object) -> tuple[int, str]:
    return response.status, (await response.json())["error"]["code"]  # type: ignore[attr-defined]


async def offset_of(relay: Relay, token: str, location: str) -> int:
    response = await relay.call("HEAD", location, token=token, headers=TUS)
    assert response.status == 200
    return int(response.headers["Upload-Offset"])


async def test_wrong_offsets_and_oversize_patches_change_nothing(relay: Relay) -> None:
    alice, bob = await member(relay, "alice"), await member(relay, "bob")
    envelope = await seal_photo(alice.device, [bob.device], os.urandom(40_000))
    location = (await create_upload(relay, alice.token, envelope)).headers["Location"]
    assert (await patch(relay, alice.token, location, 0, envelope[:10_000])).status == 204

    for wrong in (0, 9_999, 10_001):
        response = await patch(relay, alice.token, location, wrong, envelope[wrong:wrong + 100])
        assert await code_of(response) == (409, "offset_mismatch")
        assert (await response.json())["error"]["details"] == {"offset": 10_000}
    too_much = await patch(relay, alice.token, location, 10_000, envelope[10_000:] + b"extra")
    assert await code_of(too_much) == (413, "exceeds_upload_length")
    assert await offset_of(relay, alice.token, location) == 10_000

    assert (await patch(relay, alice.token, location, 10_000, envelope[10_000:])).status == 204
    again = await patch(relay, alice.token, location, len(envelope), b"more")
    assert await code_of(again) == (409, "upload_complete")
    blob_id = location.rsplit("/", 1)[1]
    assert await (await download(relay, bob.token, blob_id)).read() == envelope


async def test_creation_refuses_bad_declarations(relay: Relay) -> None:
    alice, bob = await member(relay, "alice"), await member(relay, "bob")
    envelope = await seal_photo(alice.device, [bob.device], b"photo")
    limit = relay.runtime.settings.max_upload_bytes

    def encoded(value: bytes) -> str:
        return base64.b64encode(value).decode()

    cases = [
        ({"Upload-Length": str(limit + 1)}, (413, "upload_too_large")),
        ({"Upload-Length": "100"}, (422, "malformed_envelope")),
        ({"Upload-Length": "-5"}, (400, "invalid_upload_length")),
        ({"Upload-Metadata": metadata(envelope, filename=b"Smith_John_wound.jpg")}, (422, "metadata_refused")),
        ({"Upload-Metadata": f"filetype {encoded(b'image/jpeg')}"}, (422, "metadata_refused")),
        ({"Upload-Metadata": ""}, (422, "sha256_required")),
        ({"Upload-Metadata": f"sha256 {encoded(b'not a digest')}"}, (422, "invalid_sha256")),
        ({"Upload-Metadata": "sha256 !!!"}, (400, "invalid_base64")),
    ]
    for headers, expected in cases:
        assert await code_of(await create_upload(relay, alice.token, envelope, **headers)) == expected, headers
    missing = await relay.call("POST", "/api/v1/uploads", token=alice.token, headers=TUS)
    assert await code_of(missing) == (400, "invalid_upload_length")
    unbound = await create_upload(relay, alice.account.token, envelope)
    assert await code_of(unbound) == (403, "device_required")


async def test_a_garbage_head_is_refused_at_once_and_its_bytes_deleted(relay: Relay) -> None:
    alice, bob = await member(relay, "alice"), await member(relay, "bob")
    envelope = await seal_photo(alice.device, [bob.device], os.urandom(200_000))
    location = (await create_upload(relay, alice.token, envelope)).headers["Location"]
    blob_id = location.rsplit("/", 1)[1]

    response = await patch(relay, alice.token, location, 0, b"\xff\xd8\xff\xe0 a JPEG in the clear" + bytes(1000))
    assert await code_of(response) == (422, "malformed_envelope")
    assert not await spool_holds(relay, blob_id)
    assert (await relay.call("HEAD", location, token=alice.token, headers=TUS)).status == 410
    assert (await audit_trail(relay, blob_id))[-1] == (
        "blob.upload_refused", {"reason": "refused", "code": "malformed_envelope"})


async def test_a_truncated_head_is_refused_when_the_upload_ends(relay: Relay) -> None:
    alice, bob, carol = await member(relay, "alice"), await member(relay, "bob"), await member(relay, "carol")
    envelope = await seal_photo(alice.device, [bob.device, carol.device, alice.device], b"photo")
    cut = envelope[:400]
    assert len(head_of(envelope)) > len(cut)
    location = (await create_upload(relay, alice.token, cut, **{"Upload-Metadata": metadata(cut)})).headers["Location"]
    assert (await patch(relay, alice.token, location, 0, cut[:200])).status == 204

    response = await patch(relay, alice.token, location, 200, cut[200:])
    assert await code_of(response) == (422, "malformed_envelope")
    assert not await spool_holds(relay, location.rsplit("/", 1)[1])


async def wrong_digest(relay: Relay, sender: Member, recipient: Member) -> dict[str, str]:
    """Upload-Metadata naming the pair's conversation and the SHA-256 of other bytes."""
    room = await conversation(relay, sender, [recipient], kind="direct")
    return {"Upload-Metadata": metadata(b"other", conversation=room.encode())}


async def test_a_hash_mismatch_discards_the_upload_and_notifies_no_one(relay: Relay) -> None:
    alice, bob = await member(relay, "alice"), await member(relay, "bob")
    envelope = await seal_photo(alice.device, [bob.device], os.urandom(20_000))
    wrong = await wrong_digest(relay, alice, bob)
    location = (await create_upload(relay, alice.token, envelope, **wrong)).headers["Location"]
    blob_id = location.rsplit("/", 1)[1]
    assert (await patch(relay, alice.token, location, 0, envelope[:10_000])).status == 204

    response = await patch(relay, alice.token, location, 10_000, envelope[10_000:])
    assert await code_of(response) == (460, "sha256_mismatch")
    assert not await spool_holds(relay, blob_id)
    assert (await (await relay.call("GET", "/api/v1/blobs", token=bob.token)).json())["blobs"] == []
    assert [action for action, _ in await audit_trail(relay, blob_id)] == [
        "blob.upload_created", "blob.upload_refused"]


async def test_a_hash_mismatch_in_a_single_patch_upload_is_caught_too(relay: Relay) -> None:
    """One PATCH from byte 0 is hashed as it streams (no read-back): the check still holds."""
    alice, bob = await member(relay, "alice"), await member(relay, "bob")
    envelope = await seal_photo(alice.device, [bob.device], os.urandom(20_000))
    wrong = await wrong_digest(relay, alice, bob)
    location = (await create_upload(relay, alice.token, envelope, **wrong)).headers["Location"]

    response = await patch(relay, alice.token, location, 0, envelope)
    assert await code_of(response) == (460, "sha256_mismatch")
    assert not await spool_holds(relay, location.rsplit("/", 1)[1])
    assert (await (await relay.call("GET", "/api/v1/blobs", token=bob.token)).json())["blobs"] == []


async def test_envelopes_the_sender_may_not_send_are_refused_before_the_body(relay: Relay) -> None:
    alice, bob, carol = await member(relay, "alice"), await member(relay, "bob"), await member(relay, "carol")
    outsider = await member(relay, "mallory", tenant="elsewhere")
    revoked = await member(relay, "dan")
    assert (await relay.call("DELETE", f"/api/v1/devices/{revoked.device.id}",
                             token=revoked.account.token)).status == 204
    photo = os.urandom(500_000)
    keep = await seal_photo(alice.device, [carol.device], os.urandom(30_000))
    kept = (await create_upload(relay, alice.token, keep)).headers["Location"]
    assert (await patch(relay, alice.token, kept, 0, keep[:10_000])).status == 204

    cases = [
        (await seal_photo(alice.device, [outsider.device], photo), "recipient_not_addressable"),
        (await seal_photo(alice.device, [bob.device, revoked.device], photo), "recipient_not_addressable"),
        (await seal_photo(bob.device, [carol.device], photo), "sender_mismatch"),
    ]
    for envelope, code in cases:
        location = (await create_upload(relay, alice.token, envelope)).headers["Location"]
        response = await patch(relay, alice.token, location, 0, envelope[:65_536])
        assert await code_of(response) == (422, code)
        assert not await spool_holds(relay, location.rsplit("/", 1)[1])

    envelope = cases[0][0]
    longer = await create_upload(relay, alice.token, envelope, **{"Upload-Length": str(len(envelope) + 10)})
    response = await patch(relay, alice.token, longer.headers["Location"], 0, envelope[:65_536])
    assert await code_of(response) == (422, "length_mismatch")

    assert await offset_of(relay, alice.token, kept) == 10_000
    assert (await patch(relay, alice.token, kept, 10_000, keep[10_000:])).status == 204


async def test_other_peoples_uploads_and_blobs_are_out_of_reach(relay: Relay) -> None:
    admin = await relay.account("admin", Role.ADMIN)
    alice, bob, eve = await member(relay, "alice"), await member(relay, "bob"), await member(relay, "eve")
    outsider = await member(relay, "mallory", tenant="elsewhere")
    envelope = await seal_photo(alice.device, [bob.device], os.urandom(20_000))
    location = (await create_upload(relay, alice.token, envelope)).headers["Location"]
    blob_id = await upload(relay, alice.token, await seal_photo(alice.device, [bob.device], b"photo"))

    for token in (eve.token, outsider.token):
        assert await code_of(await patch(relay, token, location, 0, envelope)) == (404, "upload_not_found")
        assert (await relay.call("HEAD", location, token=token, headers=TUS)).status == 404
        assert await code_of(await relay.call("DELETE", location, token=token, headers=TUS)) == (
            404, "upload_not_found")
        assert await code_of(await relay.call("POST", f"/api/v1/blobs/{blob_id}/ack", token=token)) == (
            404, "blob_not_found")
    assert await code_of(await relay.call("POST", f"/api/v1/blobs/{'0' * 32}/ack", token=bob.token)) == (
        404, "blob_not_found")
    wrong_type = await relay.call("PATCH", location, token=alice.token, data=b"x",
                                  headers=TUS | {"Upload-Offset": "0", "Content-Type": "application/octet-stream"})
    assert wrong_type.status == 415
    assert await code_of(await relay.call("POST", f"/api/v1/blobs/{blob_id}/ack", token=admin.token)) == (
        403, "role_forbidden")

    assert await offset_of(relay, alice.token, location) == 0
    assert await spool_holds(relay, blob_id)
    assert "blob.acknowledged" not in [action for action, _ in await audit_trail(relay, blob_id)]
