"""Consults and photo messages through the client SDK and a real relay: a pool consult offered,
accepted with the case photo in its conversation, resolved; a colleague consult cancelled."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from relay_client import (
    ConsultUpdated,
    Credentials,
    MemoryInbox,
    RelayApiError,
    RelayClient,
)

from relay.auth.principal import Role
from tests.support.harness import PASSWORD, Relay


async def clinician(relay: Relay, username: str, tmp_path: Path) -> tuple[RelayClient, str, MemoryInbox]:
    account = await relay.account(username)
    inbox = MemoryInbox()
    client = RelayClient(relay.url, key_file=tmp_path / username / "device.json", inbox=inbox)
    await client.login(Credentials(account.tenant, username, PASSWORD))
    await client.use_device(f"{username}'s phone")
    await client.connect()
    return client, account.user_id, inbox


@pytest.fixture
async def ward(relay: Relay, tmp_path: Path) -> AsyncIterator[dict[str, tuple[RelayClient, str, MemoryInbox]]]:
    people = {name: await clinician(relay, name, tmp_path) for name in ("gp", "derm1", "derm2")}
    try:
        yield people
    finally:
        for client, _, _ in people.values():
            await client.close()


async def test_a_pool_consult_with_a_photo_is_accepted_and_resolved(
        relay: Relay, ward: dict[str, tuple[RelayClient, str, MemoryInbox]], tmp_path: Path) -> None:
    gp, gp_id, _ = ward["gp"]
    derm1, derm1_id, derm1_inbox = ward["derm1"]
    derm2, derm2_id, _ = ward["derm2"]
    admin = await relay.account("admin", Role.ADMIN)
    pool = await (await relay.call("POST", "/api/v1/pools", token=admin.token, json={
        "name": "dermatology on call", "member_user_ids": [derm1_id, derm2_id]})).json()
    updates: asyncio.Queue[ConsultUpdated] = asyncio.Queue()
    gp.on("consult.updated", updates.put)

    assert [p["id"] for p in await gp.consults.pools()] == [pool["id"]]
    consult = await gp.consults.ask_pool(pool["id"])
    assert (consult.state, consult.offered_to, consult.requester_id) == ("open", derm1_id, gp_id)
    photo = os.urandom(50_000)
    sent = await gp.messages.send_photo(consult.conversation_id, photo, caption="rash, left forearm, 3 days")

    message = await derm1_inbox.next(10)
    assert (message.text, message.blob_id) == ("rash, left forearm, 3 days", sent.blob_id)
    assert sent.blob_id is not None
    target = tmp_path / "case.jpg"
    await derm1.open_blob(sent.blob_id, target)
    assert target.read_bytes() == photo
    await derm1.blobs.ack(sent.blob_id)

    accepted = await derm1.consults.accept(consult.id)
    assert (accepted.state, accepted.accepted_by) == ("accepted", derm1_id)
    with pytest.raises(RelayApiError) as taken:
        await derm2.consults.accept(consult.id)
    assert (taken.value.status, taken.value.code) == (409, "consult_taken")
    seen = await asyncio.wait_for(updates.get(), 10)
    while seen.state != "accepted":
        seen = await asyncio.wait_for(updates.get(), 10)
    assert (seen.consult_id, seen.accepted_by) == (consult.id, derm1_id)

    await derm1.messages.send_text(consult.conversation_id, "contact dermatitis; see you at 3")
    resolved = await gp.consults.resolve(consult.id)
    assert resolved.state == "resolved"
    with pytest.raises(RelayApiError) as closed:
        await gp.messages.send_text(consult.conversation_id, "thanks")
    assert closed.value.code == "consult_closed"
    assert consult.id in [c.id for c in await gp.consults.mine()]


async def test_a_colleague_consult_can_be_cancelled_by_its_requester(
        ward: dict[str, tuple[RelayClient, str, MemoryInbox]]) -> None:
    gp, _, _ = ward["gp"]
    derm1, derm1_id, _ = ward["derm1"]
    consult = await gp.consults.ask_colleague(derm1_id, lifespan_seconds=3600)
    assert (consult.state, consult.offered_to) == ("open", derm1_id)
    assert (await derm1.consults.get(consult.id)).state == "open"
    assert (await gp.consults.cancel(consult.id)).state == "cancelled"
    with pytest.raises(RelayApiError):
        await derm1.consults.accept(consult.id)
