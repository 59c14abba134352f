"""Messaging through the client SDK and a real relay: conversations over REST, sealed messages
over socket.io with receipts, duplicates dropped, a late-joining device handled by sealing
again, recall, and the checks a sender makes on directory keys."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from relay_client import (
    Conversation,
    Credentials,
    IncomingMessage,
    MemoryInbox,
    Receipt,
    RelayApiError,
    RelayClient,
    SessionEnded,
    UntrustedDevice,
)
from relay_client.directory import Directory
from relay_client.envelope.keys import PublishedKey
from relay_client.http import RelayHttp

from relay.auth.principal import Role
from tests.support.harness import PASSWORD, Relay


class CountingInbox(MemoryInbox):
    def __init__(self) -> None:
        super().__init__()
        self.stored: list[str] = []

    async def store(self, message: IncomingMessage) -> None:
        self.stored.append(message.message_id)
        await super().store(message)


@dataclasses.dataclass
class Clinician:
    client: RelayClient
    user_id: str
    inbox: CountingInbox


async def clinician(relay: Relay, username: str, tmp_path: Path, *, connect: bool = True) -> Clinician:
    account = await relay.account(username)
    inbox = CountingInbox()
    client = RelayClient(relay.url, key_file=tmp_path / username / "device.json", inbox=inbox)
    await client.login(Credentials(account.tenant, username, PASSWORD))
    await client.use_device(f"{username}'s phone")
    if connect:
        await client.connect()
    return Clinician(client, account.user_id, inbox)


@pytest.fixture
async def team(relay: Relay, tmp_path: Path) -> AsyncIterator[tuple[Clinician, Clinician]]:
    alice, bob = await clinician(relay, "alice", tmp_path), await clinician(relay, "bob", tmp_path)
    try:
        yield alice, bob
    finally:
        await alice.client.close()
        await bob.client.close()


async def test_a_message_reaches_a_colleague_with_delivered_and_read_receipts(
        team: tuple[Clinician, Clinician]) -> None:
    alice, bob = team
    receipts: asyncio.Queue[Receipt] = asyncio.Queue()
    alice.client.on("message.receipt", receipts.put)
    conversation = await alice.client.conversations.direct(bob.user_id)
    assert sorted(conversation.member_user_ids) == sorted([alice.user_id, bob.user_id])
    assert (await bob.client.conversations.direct(alice.user_id)).id == conversation.id

    sent = await alice.client.messages.send_text(conversation.id, "Bed 4: please review the wound photo")
    assert bob.client.devices.device_id in sent.recipients
    received = await bob.inbox.next(10)
    assert (received.message_id, received.text, received.sender_user_id) == (
        sent.message_id, "Bed 4: please review the wound photo", alice.user_id)
    assert received.manifest.content_type == "text/plain; charset=utf-8"
    delivered = await asyncio.wait_for(receipts.get(), 10)
    assert (delivered.message_id, delivered.status, delivered.device_id) == (
        sent.message_id, "delivered", bob.client.devices.device_id)

    assert await bob.client.messages.read([sent.message_id]) == [sent.message_id]
    read = await asyncio.wait_for(receipts.get(), 10)
    assert (read.message_id, read.status) == (sent.message_id, "read")


async def test_a_message_queued_while_offline_is_stored_once_and_acknowledged(relay: Relay, tmp_path: Path) -> None:
    alice = await clinician(relay, "alice", tmp_path)
    bob = await clinician(relay, "bob", tmp_path, connect=False)
    try:
        conversation = await alice.client.conversations.direct(bob.user_id)
        sent = await alice.client.messages.send_text(conversation.id, "handover at 7")
        await bob.client.connect()
        queued = await bob.client.realtime.call("queue.fetch", {})
        for payload in queued["messages"]:
            await bob.client.messages.receive(payload)
        assert (await bob.inbox.next(10)).text == "handover at 7"
        await asyncio.sleep(0.2)
        assert bob.inbox.stored == [sent.message_id], "pushed on connection and fetched: stored once"
        assert await bob.client.messages.fetch_queue() is False
        assert (await bob.client.realtime.call("queue.fetch", {}))["messages"] == []
    finally:
        await alice.client.close()
        await bob.client.close()


async def test_a_device_that_joined_after_the_recipients_were_read_is_sealed_to_on_the_retry(
        relay: Relay, team: tuple[Clinician, Clinician], tmp_path: Path) -> None:
    alice, bob = team
    conversation = await alice.client.conversations.direct(bob.user_id)
    bob_tablet: list[Clinician] = []
    read_conversation = alice.client.conversations.get

    async def get_then_bob_adds_a_tablet(conversation_id: str) -> Conversation:
        found = await read_conversation(conversation_id)
        if not bob_tablet:
            tablet = RelayClient(relay.url, key_file=tmp_path / "bob-tablet" / "device.json", inbox=CountingInbox())
            await tablet.login(Credentials("general", "bob", PASSWORD))
            await tablet.use_device("bob's tablet")
            await tablet.connect()
            bob_tablet.append(Clinician(tablet, bob.user_id, tablet.messages.inbox))  # type: ignore[arg-type]
        return found

    alice.client.conversations.get = get_then_bob_adds_a_tablet  # type: ignore[method-assign]
    try:
        sent = await alice.client.messages.send_text(conversation.id, "are you on the ward?")
        tablet = bob_tablet[0]
        assert tablet.client.devices.device_id in sent.recipients
        assert (await tablet.inbox.next(10)).text == "are you on the ward?"
        assert (await bob.inbox.next(10)).text == "are you on the ward?"
    finally:
        for extra in bob_tablet:
            await extra.client.close()


async def test_a_recalled_message_is_deleted_from_the_recipients_inbox(team: tuple[Clinician, Clinician]) -> None:
    alice, bob = team
    conversation = await alice.client.conversations.direct(bob.user_id)
    sent = await alice.client.messages.send_text(conversation.id, "wrong patient, ignore")
    await bob.inbox.next(10)
    deleted = asyncio.Event()

    async def on_deleted(_: object) -> None:
        deleted.set()

    bob.client.on("message.deleted", on_deleted)
    await alice.client.messages.recall(sent.message_id)
    await asyncio.wait_for(deleted.wait(), 10)
    assert sent.message_id not in bob.inbox.messages


async def test_group_membership_changes_over_rest(relay: Relay, team: tuple[Clinician, Clinician],
                                                 tmp_path: Path) -> None:
    alice, bob = team
    carol = await relay.account("carol")
    group = await alice.client.conversations.create("group", [bob.user_id], lifespan_seconds=3600)
    assert group.kind == "group" and group.raw["lifespan_seconds"] == 3600
    await bob.client.conversations.add_members(group.id, [carol.user_id])
    detail = await alice.client.conversations.get(group.id)
    assert sorted(detail.member_user_ids) == sorted([alice.user_id, bob.user_id, carol.user_id])
    assert {device.id for device in detail.recipients} == {alice.client.devices.device_id,
                                                          bob.client.devices.device_id}
    await alice.client.conversations.remove_member(group.id, carol.user_id)
    await bob.client.conversations.remove_member(group.id, bob.user_id)
    assert [c.id for c in await bob.client.conversations.mine()] == []
    with pytest.raises(RelayApiError) as refused:
        await bob.client.messages.send_text(group.id, "still here?")
    assert refused.value.status in (403, 404)


async def test_a_sender_refuses_directory_keys_that_do_not_verify(team: tuple[Clinician, Clinician]) -> None:
    alice, bob = team
    directory = Directory(RelayHttp("http://127.0.0.1:1"))
    [device] = await alice.client.directory.user_devices(bob.user_id)
    key = device.encryption_key
    forged = dataclasses.replace(device, encryption_key=PublishedKey(key.key_id, bytes(32 * [9]), key.signature))
    with pytest.raises(UntrustedDevice):
        directory.recipient(forged)
    directory.recipient(device)
    alice_identity = alice.client.devices.keyring().identity_key.public_bytes_raw()
    with pytest.raises(UntrustedDevice):
        directory.recipient(dataclasses.replace(device, identity_key=alice_identity, fingerprint=""))


async def test_messaging_continues_after_the_sessions_ended(relay: Relay, team: tuple[Clinician, Clinician]) -> None:
    alice, bob = team
    conversation = await alice.client.conversations.direct(bob.user_id)
    relay.clock.advance(relay.runtime.settings.session_idle_timeout + 1)
    sent = await alice.client.messages.send_text(conversation.id, "still there?")
    assert (await bob.inbox.next(10)).message_id == sent.message_id
    assert await bob.client.messages.read([sent.message_id]) == [sent.message_id]
    assert alice.client.realtime.connected and bob.client.realtime.connected


async def test_a_device_signed_out_by_an_admin_logs_in_again_and_keeps_receiving(
        relay: Relay, team: tuple[Clinician, Clinician]) -> None:
    alice, bob = team
    admin = await relay.account("root", Role.ADMIN)
    conversation = await alice.client.conversations.direct(bob.user_id)
    notices: asyncio.Queue[SessionEnded] = asyncio.Queue()
    bob.client.on("session_ended", notices.put)
    ended = await relay.call("DELETE", f"/api/v1/users/{bob.user_id}/sessions", token=admin.token)
    assert ended.status == 200 and (await ended.json())["ended"] >= 1
    assert await asyncio.wait_for(notices.get(), 10) == SessionEnded("invalid_token")
    sent = await alice.client.messages.send_text(conversation.id, "after the sign-out")
    assert (await bob.inbox.next(10)).message_id == sent.message_id, "bob's client logged in again and reconnected"
    assert bob.client.realtime.connected
