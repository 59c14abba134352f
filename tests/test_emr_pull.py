"""The EMR pull API: an adapter (an integration principal's device) is notified, lists what is
addressed to it, downloads it, acknowledges it idempotently, or rejects it with a reason the
sender sees."""

from __future__ import annotations

import asyncio
import os

from relay_client.envelope import open_bytes

from relay.auth.principal import Role
from tests.support.envelopes import (
    adapter,
    audit_trail,
    download,
    keyring_of,
    listening,
    member,
    request_token,
    seal_photo,
    spool_holds,
    upload,
)
from tests.support.harness import Relay


async def test_an_adapter_pulls_opens_and_acknowledges_once(relay: Relay) -> None:
    admin = await relay.account("admin", Role.ADMIN)
    alice, emr = await member(relay, "alice"), await adapter(relay, admin)
    photo = os.urandom(120_000)
    envelope = await seal_photo(alice.device, [emr.device], photo)

    async with listening(relay, emr.token) as events:
        blob_id = await upload(relay, alice.token, envelope)
        assert (await asyncio.wait_for(events.get(), 10))["blob_id"] == blob_id

    listed = await (await relay.call("GET", "/api/v1/blobs", token=emr.token)).json()
    assert [item["blob_id"] for item in listed["blobs"]] == [blob_id]
    first = await download(relay, emr.token, blob_id, Range="bytes=0-59999")
    rest = await download(relay, emr.token, blob_id, Range="bytes=60000-")
    received = await first.read() + await rest.read()
    opened = await open_bytes(received, keyring_of(emr.device).opening_keys(), keyring_of(alice.device).identity_key)
    assert opened.content == photo

    for _ in range(2):
        assert (await relay.call("POST", f"/api/v1/blobs/{blob_id}/ack", token=emr.token)).status == 204
    assert not await spool_holds(relay, blob_id)
    actions = [action for action, _ in await audit_trail(relay, blob_id)]
    assert actions.count("blob.acknowledged") == 1 and actions[-1] == "blob.purged"
    assert (await (await relay.call("GET", "/api/v1/blobs", token=emr.token)).json())["blobs"] == []


async def test_a_rejection_reaches_the_sender_and_counts_as_done(relay: Relay) -> None:
    admin = await relay.account("admin", Role.ADMIN)
    alice, bob, emr = await member(relay, "alice"), await member(relay, "bob"), await adapter(relay, admin)
    envelope = await seal_photo(alice.device, [emr.device, bob.device], os.urandom(3000))
    blob_id = await upload(relay, alice.token, envelope)

    reject = f"/api/v1/blobs/{blob_id}/reject"
    assert (await relay.call("POST", reject, token=emr.token, json={"reason": "patient_not_found"})).status == 204
    assert (await relay.call("POST", reject, token=emr.token, json={"reason": "other"})).status == 204
    late_ack = await relay.call("POST", f"/api/v1/blobs/{blob_id}/ack", token=emr.token)
    assert (late_ack.status, (await late_ack.json())["error"]["code"]) == (409, "already_rejected")
    assert (await (await relay.call("GET", "/api/v1/blobs", token=emr.token)).json())["blobs"] == []

    status = await (await relay.call("GET", f"/api/v1/blobs/{blob_id}/status", token=alice.token)).json()
    by_device = {recipient["device_id"]: recipient for recipient in status["recipients"]}
    assert by_device[emr.device.id]["reject_reason"] == "patient_not_found"
    assert by_device[emr.device.id]["rejected_at"] is not None
    assert by_device[bob.device.id]["rejected_at"] is None and status["state"] == "complete"
    assert await spool_holds(relay, blob_id)

    assert (await relay.call("POST", f"/api/v1/blobs/{blob_id}/ack", token=bob.token)).status == 204
    assert not await spool_holds(relay, blob_id)
    trail = await audit_trail(relay, blob_id)
    assert ("blob.rejected", {"device_id": emr.device.id, "reason": "patient_not_found"}) in trail
    assert trail[-1] == ("blob.purged", {"reason": "delivered"})


async def test_rejections_need_a_known_reason_and_an_adapter(relay: Relay) -> None:
    admin = await relay.account("admin", Role.ADMIN)
    alice, emr = await member(relay, "alice"), await adapter(relay, admin)
    blob_id = await upload(relay, alice.token, await seal_photo(alice.device, [emr.device, alice.device], b"x"))
    reject = f"/api/v1/blobs/{blob_id}/reject"

    unknown = await relay.call("POST", reject, token=emr.token, json={"reason": "the patient is John Smith"})
    assert (unknown.status, (await unknown.json())["error"]["code"]) == (422, "invalid_request")
    clinician = await relay.call("POST", reject, token=alice.token, json={"reason": "other"})
    assert (clinician.status, (await clinician.json())["error"]["code"]) == (403, "role_forbidden")
    assert "blob.rejected" not in [action for action, _ in await audit_trail(relay, blob_id)]


async def test_an_adapter_binds_its_token_only_to_its_own_active_device(relay: Relay) -> None:
    admin = await relay.account("admin", Role.ADMIN)
    alice, emr, other = await member(relay, "alice"), await adapter(relay, admin), await adapter(relay, admin, "lab")

    for device_id in (other.device.id, alice.device.id, "0" * 32):
        refused = await request_token(relay, emr.integration_id, emr.key, device_id=device_id)
        assert (refused.status, (await refused.json())["error"]["code"]) == (422, "unknown_device")

    unbound = await (await request_token(relay, emr.integration_id, emr.key)).json()
    listed = await relay.call("GET", "/api/v1/blobs", token=unbound["access_token"])
    assert (listed.status, (await listed.json())["error"]["code"]) == (403, "device_required")

    assert (await relay.call("DELETE", f"/api/v1/devices/{emr.device.id}", token=admin.token)).status == 204
    revoked = await request_token(relay, emr.integration_id, emr.key, device_id=emr.device.id)
    assert revoked.status == 422
