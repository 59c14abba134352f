"""Adding a recipient (an EMR adapter, a consultant) to a delivered photo by uploading only a new
envelope head: the new recipient is notified and opens it; the body is never sent again."""

from __future__ import annotations

import asyncio
import os

from relay_client.envelope import append_recipients, open_bytes
from sqlalchemy import select

from relay.auth.principal import Role
from relay.keys.routing_view import MAX_HEAD_LENGTH
from relay.storage.tables import blobs
from tests.support.chat import conversation
from tests.support.envelopes import (
    adapter,
    audit_trail,
    download,
    head_of,
    keyring_of,
    listening,
    member,
    recipient_of,
    seal_photo,
    spool_holds,
    upload,
)
from tests.support.harness import Relay


async def put_head(relay: Relay, token: str, blob_id: str, head: bytes) -> object:
    return await relay.call("PUT", f"/api/v1/blobs/{blob_id}/head", token=token, data=head,
                            headers={"Content-Type": "application/octet-stream"})


async def replacement_head_id(relay: Relay, blob_id: str) -> str | None:
    async with relay.runtime.database.read() as connection:
        return await connection.scalar(select(blobs.c.replacement_head_id).where(blobs.c.id == blob_id))


async def test_a_recipient_forwards_a_photo_to_the_emr_adapter(relay: Relay) -> None:
    admin = await relay.account("admin", Role.ADMIN)
    alice, bob, emr = await member(relay, "alice"), await member(relay, "bob"), await adapter(relay, admin)
    photo = os.urandom(250_000)
    envelope = await seal_photo(alice.device, [bob.device], photo)
    blob_id = await upload(relay, alice.token, envelope)

    new_head = append_recipients(head_of(envelope), keyring_of(bob.device).opening_keys(), [recipient_of(emr.device)])
    async with listening(relay, emr.token) as events:
        response = await put_head(relay, bob.token, blob_id, new_head)
        assert response.status == 200, await response.text()
        assert await response.json() == {"added": [emr.device.id]}
        event = await asyncio.wait_for(events.get(), 10)
    forwarded = new_head + envelope[len(head_of(envelope)):]
    assert event == {"blob_id": blob_id, "size": len(forwarded), "sender_device_id": alice.device.id}

    boundary = len(new_head)
    first = await download(relay, emr.token, blob_id, Range=f"bytes=0-{boundary + 99}")
    rest = await download(relay, emr.token, blob_id, Range=f"bytes={boundary + 100}-")
    assert rest.headers["Content-Range"] == f"bytes {boundary + 100}-{len(forwarded) - 1}/{len(forwarded)}"
    assert await first.read() + await rest.read() == forwarded
    opened = await open_bytes(forwarded, keyring_of(emr.device).opening_keys(), keyring_of(alice.device).identity_key)
    assert opened.content == photo
    for reader in (bob, emr):
        whole = await (await download(relay, reader.token, blob_id)).read()
        assert (await open_bytes(whole, keyring_of(reader.device).opening_keys(),
                                 keyring_of(alice.device).identity_key)).content == photo

    trail = await audit_trail(relay, blob_id)
    assert ("blob.recipient_added", {"device_id": emr.device.id, "by_device_id": bob.device.id}) in trail
    assert ("blob.notified", {"device_id": emr.device.id}) in trail

    head_object = await replacement_head_id(relay, blob_id)
    assert head_object is not None and await spool_holds(relay, head_object)
    assert (await relay.call("POST", f"/api/v1/blobs/{blob_id}/ack", token=bob.token)).status == 204
    assert await spool_holds(relay, blob_id)
    assert (await relay.call("POST", f"/api/v1/blobs/{blob_id}/ack", token=emr.token)).status == 204
    assert not await spool_holds(relay, blob_id) and not await spool_holds(relay, head_object)


async def test_the_sender_and_then_a_consultant_add_recipients(relay: Relay) -> None:
    alice, bob, carol, dave = [await member(relay, name) for name in ("alice", "bob", "carol", "dave")]
    envelope = await seal_photo(alice.device, [bob.device, alice.device], os.urandom(40_000))
    room = await conversation(relay, alice, [bob])
    blob_id = await upload(relay, alice.token, envelope, conversation=room)
    body = envelope[len(head_of(envelope)):]
    erin = await member(relay, "erin")
    not_yet = append_recipients(head_of(envelope), keyring_of(alice.device).opening_keys(), [recipient_of(carol.device)])
    refused = await put_head(relay, alice.token, blob_id, not_yet)
    assert (refused.status, (await refused.json())["error"]["code"]) == (422, "recipient_not_addressable")
    joined = await relay.call("POST", f"/api/v1/conversations/{room}/members", token=alice.token,
                              json={"user_ids": [someone.account.user_id for someone in (carol, dave, erin)]})
    assert joined.status == 200, await joined.text()

    with_carol = append_recipients(head_of(envelope), keyring_of(alice.device).opening_keys(),
                                   [recipient_of(carol.device)])
    assert (await put_head(relay, alice.token, blob_id, with_carol)).status == 200
    first_object = await replacement_head_id(relay, blob_id)
    with_dave = append_recipients(with_carol, keyring_of(carol.device).opening_keys(), [recipient_of(dave.device)])
    assert (await put_head(relay, carol.token, blob_id, with_dave)).status == 200
    assert first_object is not None and not await spool_holds(relay, first_object)

    whole = await (await download(relay, dave.token, blob_id)).read()
    assert whole == with_dave + body
    opened = await open_bytes(whole, keyring_of(dave.device).opening_keys(), keyring_of(alice.device).identity_key)
    assert len(opened.content) == 40_000

    stale = await put_head(relay, bob.token, blob_id,
                           append_recipients(with_carol, keyring_of(bob.device).opening_keys(),
                                             [recipient_of(erin.device)]))
    assert (stale.status, (await stale.json())["error"]["code"]) == (422, "head_mismatch")


async def test_heads_that_do_not_extend_the_envelope_are_refused(relay: Relay) -> None:
    alice, bob, eve = await member(relay, "alice"), await member(relay, "bob"), await member(relay, "eve")
    outsider = await member(relay, "mallory", tenant="elsewhere")
    envelope = await seal_photo(alice.device, [bob.device], os.urandom(5000))
    blob_id = await upload(relay, alice.token, envelope)
    head = head_of(envelope)
    opening = keyring_of(bob.device).opening_keys()

    other_envelope = await seal_photo(alice.device, [bob.device], os.urandom(5000))
    other = append_recipients(head_of(other_envelope), opening, [recipient_of(eve.device)])
    cases = {
        "head_mismatch": other,
        "no_new_recipients": head,
        "recipient_not_addressable": append_recipients(head, opening, [recipient_of(outsider.device)]),
        "malformed_envelope": head[:-10],
    }
    for code, candidate in cases.items():
        response = await put_head(relay, bob.token, blob_id, candidate)
        assert (response.status, (await response.json())["error"]["code"]) == (422, code), code

    too_long = await put_head(relay, bob.token, blob_id, b"\0" * (MAX_HEAD_LENGTH + 1))
    assert (too_long.status, (await too_long.json())["error"]["code"]) == (413, "head_too_large")
    stranger = await put_head(relay, eve.token, blob_id, append_recipients(head, opening, [recipient_of(eve.device)]))
    assert stranger.status == 404
    wrong_type = await relay.call("PUT", f"/api/v1/blobs/{blob_id}/head", token=bob.token, json={"head": "x"})
    assert wrong_type.status == 415

    assert await (await download(relay, bob.token, blob_id)).read() == envelope
    assert "blob.recipient_added" not in [action for action, _ in await audit_trail(relay, blob_id)]
