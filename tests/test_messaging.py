"""End-to-end encrypted messages over socket.io: sealed to every member device, queued per
device until acknowledged, receipts back to the sender, purge once delivered."""

from __future__ import annotations

import asyncio
import contextlib

from sqlalchemy import select

from relay.storage.tables import message_copies, messages
from tests.support.chat import connected, conversation, message_id, open_text, recipients, seal_text, send_text
from tests.support.devices import register_device
from tests.support.envelopes import (
    Member,
    create_upload,
    download,
    member,
    metadata,
    patch,
    seal_photo,
    spool_holds,
    upload,
)
from tests.support.harness import Relay


async def members(relay: Relay, *names: str) -> list[Member]:
    return [await member(relay, name) for name in names]


async def second_device(relay: Relay, someone: Member) -> Member:
    device = await register_device(relay, someone.account.token, name="phone")
    return Member(someone.account, device, await relay.login(someone.account, device_id=device.id))


async def stored(relay: Relay, message: str) -> tuple[bool, int]:
    """Whether the relay still holds a message's ciphertext, and how many copies wait."""
    async with relay.runtime.database.read() as connection:
        object_id = await connection.scalar(select(messages.c.object_id).where(messages.c.id == message))
        waiting = len((await connection.execute(select(message_copies.c.seq).where(
            message_copies.c.message_id == message, message_copies.c.acknowledged_at.is_(None)))).all())
    return object_id is not None and await spool_holds(relay, object_id), waiting


async def test_group_message_reaches_every_member_device_and_the_senders_other_device(relay: Relay) -> None:
    alice, bob, carol = await members(relay, "alice", "bob", "carol")
    alice_phone = await second_device(relay, alice)
    room = await conversation(relay, alice, [bob, carol])
    async with (connected(relay, alice.token) as sender, connected(relay, bob.token) as b,
                connected(relay, carol.token) as c, connected(relay, alice_phone.token) as phone):
        ack = await send_text(relay, sender, alice.device, room, "wound looks clean")
        assert ack["ok"], ack
        assert sorted(ack["result"]["recipients"]) == sorted([bob.device.id, carol.device.id, alice_phone.device.id])
        for receiver, who in ((b, bob), (c, carol), (phone, alice_phone)):
            event = await receiver.next("message.new")
            assert event["conversation_id"] == room and event["sender_device_id"] == alice.device.id
            assert await open_text(who.device, alice.device, event["envelope"]) == "wound looks clean"
        sent = ack["result"]["message_id"]
        assert (await stored(relay, sent))[1] == 3

        await b.result("message.ack", {"message_ids": [sent]})
        receipt = await sender.next("message.receipt")
        assert receipt == receipt | {"message_id": sent, "user_id": bob.account.user_id, "status": "delivered"}
        await c.result("message.ack", {"message_ids": [sent]})
        await c.result("message.read", {"message_ids": [sent]})
        assert (await stored(relay, sent))[0], "alice's phone has not acknowledged yet"
        await phone.result("message.ack", {"message_ids": [sent]})
        assert await stored(relay, sent) == (False, 0)
        statuses = [(await sender.next("message.receipt"))["status"] for _ in range(3)]
        assert sorted(statuses) == ["delivered", "delivered", "read"]


async def test_offline_device_gets_its_queue_in_order_on_reconnect_and_nothing_it_acknowledged(relay: Relay) -> None:
    alice, bob = await member(relay, "alice"), await member(relay, "bob")
    room = await conversation(relay, alice, [bob], kind="direct")
    async with connected(relay, alice.token) as sender:
        sent = [(await send_text(relay, sender, alice.device, room, f"note {n}"))["result"]["message_id"]
                for n in range(5)]
    async with connected(relay, bob.token) as b:
        first = [await b.next("message.new") for _ in range(5)]
        assert [event["message_id"] for event in first] == sent
        assert [event["seq"] for event in first] == sorted(event["seq"] for event in first)
        assert [await open_text(bob.device, alice.device, event["envelope"]) for event in first] == \
            [f"note {n}" for n in range(5)]
        await b.result("message.ack", {"message_ids": sent[:2]})
    async with connected(relay, bob.token) as b:
        again = [await b.next("message.new") for _ in range(3)]
        assert [event["message_id"] for event in again] == sent[2:]
        fetched = await b.result("queue.fetch", {"limit": 2})
        assert [event["message_id"] for event in fetched["messages"]] == sent[2:4] and fetched["more"]


async def test_a_retry_with_the_same_message_id_is_harmless_and_another_envelope_is_refused(relay: Relay) -> None:
    alice, bob = await member(relay, "alice"), await member(relay, "bob")
    room = await conversation(relay, alice, [bob], kind="direct")
    async with connected(relay, alice.token) as sender, connected(relay, bob.token) as b:
        envelope = await seal_text(alice.device, await recipients(relay, alice.token, room), "hello")
        payload = {"conversation_id": room, "message_id": message_id(), "envelope": envelope}
        first = await sender.result("message.send", payload)
        assert await sender.result("message.send", payload) == first
        other = await seal_text(alice.device, await recipients(relay, alice.token, room), "other")
        clash = await sender.call("message.send", payload | {"envelope": other})
        assert clash["error"]["code"] == "duplicate_message_id"
        await b.next("message.new")
        assert b.pending("message.new") == []


async def test_membership_changes_apply_to_everything_sealed_afterwards(relay: Relay) -> None:
    alice, bob, carol = await members(relay, "alice", "bob", "carol")
    room = await conversation(relay, alice, [bob, carol])
    async with connected(relay, alice.token) as sender:
        before = await seal_text(alice.device, await recipients(relay, alice.token, room), "before")
        queued = (await send_text(relay, sender, alice.device, room, "queued for carol"))["result"]["message_id"]
        response = await relay.call("DELETE", f"/api/v1/conversations/{room}/members/{carol.account.user_id}",
                                    token=alice.token)
        assert response.status == 200, await response.text()
        assert {view["id"] for view in await recipients(relay, alice.token, room)} == {alice.device.id, bob.device.id}
        refused = await sender.call("message.send", {"conversation_id": room, "message_id": message_id(),
                                                     "envelope": before})
        assert refused["error"]["code"] == "recipient_not_member"
        assert carol.device.id in refused["error"]["details"]["device_ids"]
        assert (await send_text(relay, sender, alice.device, room, "after"))["ok"]
    async with connected(relay, carol.token) as c:
        assert (await c.result("queue.fetch", {}))["messages"] == []
        response = await relay.call("GET", f"/api/v1/conversations/{room}", token=carol.token)
        assert response.status == 403 and (await response.json())["error"]["code"] == "not_member"
        envelope = await seal_text(carol.device, [bob.device.view], "still here?")
        denied = await c.call("message.send", {"conversation_id": room, "message_id": message_id(),
                                               "envelope": envelope})
        assert denied["error"]["code"] == "not_member"
    assert (await stored(relay, queued))[1] == 1, "only bob's copy still waits"


async def test_recall_purges_queued_copies_and_tells_every_device_to_delete(relay: Relay) -> None:
    alice, bob, carol = await members(relay, "alice", "bob", "carol")
    room = await conversation(relay, alice, [bob, carol])
    async with connected(relay, alice.token) as sender, connected(relay, bob.token) as b:
        sent = (await send_text(relay, sender, alice.device, room, "wrong patient"))["result"]["message_id"]
        await b.next("message.new")
        await b.result("message.ack", {"message_ids": [sent]})
        assert (await b.call("message.recall", {"message_id": sent}))["error"]["code"] == "not_sender"
        assert await sender.result("message.recall", {"message_id": sent}) == {"message_id": sent, "purged": 1}
        deleted = await b.next("message.deleted")
        assert deleted == {"conversation_id": room, "message_ids": [sent], "reason": "recalled"}
        assert await stored(relay, sent) == (False, 0)
    async with connected(relay, carol.token) as c:
        assert (await c.result("queue.fetch", {}))["messages"] == []


async def test_lifespan_end_purges_undelivered_copies_and_tells_devices_to_delete(relay: Relay) -> None:
    alice, bob, carol = await members(relay, "alice", "bob", "carol")
    room = await conversation(relay, alice, [bob, carol], lifespan_seconds=3600)
    async with connected(relay, alice.token) as sender, connected(relay, bob.token) as b:
        sent = (await send_text(relay, sender, alice.device, room, "short-lived"))["result"]["message_id"]
        await b.next("message.new")
        await b.result("message.ack", {"message_ids": [sent]})
        relay.clock.advance(3599)
        await relay.runtime.messaging.sweep()
        assert b.pending("message.deleted") == []
        relay.clock.advance(2)
        await relay.runtime.messaging.sweep()
        assert (await b.next("message.deleted"))["reason"] == "expired"
        assert await stored(relay, sent) == (False, 0)


async def test_a_revoked_device_has_nothing_left_waiting(relay: Relay) -> None:
    alice, bob = await member(relay, "alice"), await member(relay, "bob")
    room = await conversation(relay, alice, [bob], kind="direct")
    async with connected(relay, alice.token) as sender:
        sent = (await send_text(relay, sender, alice.device, room, "for bob"))["result"]["message_id"]
    response = await relay.call("DELETE", f"/api/v1/devices/{bob.device.id}", token=bob.account.token)
    assert response.status == 204
    for _ in range(100):  # revocations reach messaging through the broker: Redis pub/sub on scale-out
        if await stored(relay, sent) == (False, 0):
            break
        await asyncio.sleep(0.1)
    assert await stored(relay, sent) == (False, 0)


async def test_a_photo_message_shows_a_blob_sealed_to_the_conversation(relay: Relay) -> None:
    alice, bob, eve = await members(relay, "alice", "bob", "eve")
    room = await conversation(relay, alice, [bob])
    photo = await seal_photo(alice.device, [bob.device], b"\xff\xd8 a wound photo")
    blob_id = await upload(relay, alice.token, photo, conversation=room)

    to_eve = await seal_photo(alice.device, [bob.device, eve.device], b"x")
    stray = await create_upload(relay, alice.token, to_eve,
                                **{"Upload-Metadata": metadata(to_eve, conversation=room.encode())})
    assert stray.status == 201
    refused = await patch(relay, alice.token, stray.headers["Location"], 0, to_eve)
    assert (await refused.json())["error"] == {
        "code": "recipient_not_addressable", "message": "the envelope addresses devices you may not send to",
        "details": {"device_ids": [eve.device.id]}}
    in_room = {"Upload-Metadata": metadata(photo, conversation=room.encode())}
    not_mine = await create_upload(relay, eve.token, photo, **in_room)
    assert (not_mine.status, (await not_mine.json())["error"]["code"]) == (403, "not_member")

    async with connected(relay, alice.token) as sender, connected(relay, bob.token) as b:
        ack = await send_text(relay, sender, alice.device, room, "see photo", blob_id=blob_id)
        assert ack["ok"], ack
        event = await b.next("message.new")
        assert event["blob_id"] == blob_id
        assert (await download(relay, bob.token, blob_id)).status == 200

        other_room = await conversation(relay, alice, [eve])
        elsewhere = await send_text(relay, sender, alice.device, other_room, "wrong photo", blob_id=blob_id)
        assert elsewhere["error"]["code"] == "blob_mismatch"


async def test_acknowledgements_arriving_together_all_count(relay: Relay) -> None:
    alice, bob, carol = await members(relay, "alice", "bob", "carol")
    devices = [bob, carol, await second_device(relay, bob), await second_device(relay, carol)]
    room = await conversation(relay, alice, [bob, carol])
    async with connected(relay, alice.token) as sender:
        sent = [(await send_text(relay, sender, alice.device, room, f"n{n}"))["result"]["message_id"] for n in range(3)]
        async with contextlib.AsyncExitStack() as stack:
            sockets = [await stack.enter_async_context(connected(relay, someone.token)) for someone in devices]
            answers = await asyncio.gather(*(socket.result("message.ack", {"message_ids": sent + sent[:1]})
                                             for socket in sockets))
            assert [sorted(answer["acknowledged"]) for answer in answers] == [sorted(sent)] * len(devices)
            receipts = [await sender.next("message.receipt") for _ in range(len(devices) * len(sent))]
            assert {(receipt["device_id"], receipt["message_id"]) for receipt in receipts} == {
                (someone.device.id, message) for someone in devices for message in sent}
    for message in sent:
        assert await stored(relay, message) == (False, 0)


async def test_both_starting_their_direct_conversation_at_once_get_the_same_one(relay: Relay) -> None:
    alice, bob = await members(relay, "alice", "bob")
    answers = await asyncio.gather(
        relay.call("POST", "/api/v1/conversations", token=alice.token,
                   json={"kind": "direct", "member_user_ids": [bob.account.user_id]}),
        relay.call("POST", "/api/v1/conversations", token=bob.token,
                   json={"kind": "direct", "member_user_ids": [alice.account.user_id]}),
    )
    assert [answer.status for answer in answers] == [201, 201]
    first, second = [await answer.json() for answer in answers]
    assert first["id"] == second["id"] and first["kind"] == "direct"
    assert {member["user_id"] for member in first["members"]} == {alice.account.user_id, bob.account.user_id}
