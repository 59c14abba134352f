"""Windows and revocations, driven by the injected clock: incomplete uploads expire, blobs past
their (tenant's) retention window are purged, a revoked device's waiting blobs are purged,
and every step is audited with ids and reason codes only."""

from __future__ import annotations

import asyncio
import os

from sqlalchemy import select

from relay.auth.principal import Role
from relay.storage.tables import blobs
from tests.conftest import SettingsFactory
from tests.support.clock import ManualClock
from tests.support.envelopes import (
    audit_trail,
    create_upload,
    member,
    patch,
    seal_photo,
    spool_holds,
    upload,
)
from tests.support.harness import Relay, running_relay

HOUR = 3600


async def state_of(relay: Relay, blob_id: str) -> tuple[str, str | None]:
    async with relay.runtime.database.read() as connection:
        row = (await connection.execute(select(blobs.c.state, blobs.c.purge_reason).where(blobs.c.id == blob_id))).one()
    return row.state, row.purge_reason


async def settled(relay: Relay, blob_id: str) -> tuple[str, str | None]:
    """The blob's state once it has ended; revocations reach the camera relay through the
    broker, which on scale-out is Redis pub/sub, so this waits (up to ten seconds) for it."""
    for _ in range(100):
        state = await state_of(relay, blob_id)
        if state[0] != "complete" and state[0] != "uploading":
            return state
        await asyncio.sleep(0.1)
    return await state_of(relay, blob_id)


async def test_an_unfinished_upload_expires_with_its_window(relay: Relay) -> None:
    alice, bob = await member(relay, "alice"), await member(relay, "bob")
    envelope = await seal_photo(alice.device, [bob.device], os.urandom(30_000))
    location = (await create_upload(relay, alice.token, envelope)).headers["Location"]
    blob_id = location.rsplit("/", 1)[1]
    assert (await patch(relay, alice.token, location, 0, envelope[:10_000])).status == 204

    relay.clock.advance(relay.runtime.settings.upload_window - 1)
    assert (await relay.runtime.camera.sweeper.sweep()).expired == 0
    assert await spool_holds(relay, blob_id)
    relay.clock.advance(1)
    assert (await relay.runtime.camera.sweeper.sweep()).expired == 1
    assert not await spool_holds(relay, blob_id)
    assert await state_of(relay, blob_id) == ("expired", "upload_window")
    assert (await audit_trail(relay, blob_id))[-1] == ("blob.expired", {"reason": "upload_window"})
    assert (await relay.runtime.camera.sweeper.sweep()).expired == 0


async def test_a_photo_nobody_fetched_is_purged_when_its_retention_ends(relay: Relay) -> None:
    alice, bob = await member(relay, "alice"), await member(relay, "bob")
    blob_id = await upload(relay, alice.token, await seal_photo(alice.device, [bob.device], os.urandom(5000)))
    listed = (await (await relay.call("GET", "/api/v1/blobs", token=bob.token)).json())["blobs"]
    assert listed[0]["retention_until"] == "2026-11-05T09:00:00Z"

    relay.clock.advance(72 * HOUR - 1)
    assert (await relay.runtime.camera.sweeper.sweep()).purged == 0
    relay.clock.advance(1)
    assert (await relay.runtime.camera.sweeper.sweep()).purged == 1
    assert not await spool_holds(relay, blob_id)
    assert await state_of(relay, blob_id) == ("purged", "retention")
    assert (await audit_trail(relay, blob_id))[-1] == ("blob.purged", {"reason": "retention"})

    await bob.log_in_again(relay)
    assert (await (await relay.call("GET", "/api/v1/blobs", token=bob.token)).json())["blobs"] == []
    await alice.log_in_again(relay)
    status = await (await relay.call("GET", f"/api/v1/blobs/{blob_id}/status", token=alice.token)).json()
    assert status["recipients"][0]["purge_reason"] == "retention"


async def test_a_tenant_sets_its_own_retention_window(relay: Relay) -> None:
    admin = await relay.account("admin", Role.ADMIN)
    alice, bob = await member(relay, "alice"), await member(relay, "bob")
    window = "/api/v1/tenant/photo-retention"
    assert await (await relay.call("GET", window, token=admin.token)).json() == {
        "seconds": None, "effective_seconds": 72 * HOUR}
    changed = await relay.call("PUT", window, token=admin.token, json={"seconds": 6 * HOUR})
    assert await changed.json() == {"seconds": 6 * HOUR, "effective_seconds": 6 * HOUR}
    too_short = await relay.call("PUT", window, token=admin.token, json={"seconds": 5})
    assert too_short.status == 422
    assert (await relay.call("PUT", window, token=alice.account.token, json={"seconds": 60})).status == 403

    blob_id = await upload(relay, alice.token, await seal_photo(alice.device, [bob.device], b"photo"))
    relay.clock.advance(6 * HOUR)
    assert (await relay.runtime.camera.sweeper.sweep()).purged == 1
    assert not await spool_holds(relay, blob_id)


async def test_revoking_a_device_purges_what_waits_for_it(relay: Relay) -> None:
    alice, bob, carol = await member(relay, "alice"), await member(relay, "bob"), await member(relay, "carol")
    shared = await upload(relay, alice.token, await seal_photo(alice.device, [bob.device, carol.device], b"one"))
    only_bob = await upload(relay, alice.token, await seal_photo(alice.device, [bob.device], b"two"))

    revoke = await relay.call("DELETE", f"/api/v1/devices/{bob.device.id}", token=bob.account.token)
    assert revoke.status == 204

    assert await settled(relay, only_bob) == ("purged", "device_revoked")
    assert not await spool_holds(relay, only_bob)
    assert [entry for entry in await audit_trail(relay, only_bob) if entry[0].endswith("purged")] == [
        ("blob.recipient_purged", {"device_id": bob.device.id, "reason": "device_revoked"}),
        ("blob.purged", {"reason": "device_revoked"}),
    ]
    assert await state_of(relay, shared) == ("complete", None)
    assert ("blob.recipient_purged", {"device_id": bob.device.id, "reason": "device_revoked"}) in await audit_trail(
        relay, shared)
    assert (await relay.call("POST", f"/api/v1/blobs/{shared}/ack", token=carol.token)).status == 204
    assert await state_of(relay, shared) == ("purged", "delivered")


async def test_revoking_the_uploading_device_purges_its_unfinished_upload(relay: Relay) -> None:
    alice, bob = await member(relay, "alice"), await member(relay, "bob")
    envelope = await seal_photo(alice.device, [bob.device], os.urandom(30_000))
    location = (await create_upload(relay, alice.token, envelope)).headers["Location"]
    assert (await patch(relay, alice.token, location, 0, envelope[:10_000])).status == 204
    blob_id = location.rsplit("/", 1)[1]

    assert (await relay.call("DELETE", f"/api/v1/devices/{alice.device.id}", token=alice.account.token)).status == 204
    assert await settled(relay, blob_id) == ("purged", "device_revoked")
    assert not await spool_holds(relay, blob_id)


async def test_the_running_server_sweeps_by_itself(make_settings: SettingsFactory, clock: ManualClock) -> None:
    async with running_relay(make_settings(blob_sweep_interval=1), clock) as relay:
        alice, bob = await member(relay, "alice"), await member(relay, "bob")
        envelope = await seal_photo(alice.device, [bob.device], os.urandom(3000))
        location = (await create_upload(relay, alice.token, envelope)).headers["Location"]
        blob_id = location.rsplit("/", 1)[1]
        relay.clock.advance(relay.runtime.settings.upload_window)
        assert await settled(relay, blob_id) == ("expired", "upload_window")
