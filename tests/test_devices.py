"""Registering devices with signed keys, rotating and topping up keys, and revoking devices."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest
import socketio
from nacl.signing import SigningKey
from sqlalchemy import func, select

from relay.auth.principal import Role
from relay.storage.tables import audit_events, devices, one_time_keys
from tests.conftest import SettingsFactory
from tests.support.clock import ManualClock
from tests.support.devices import (
    ENCRYPTION_KEY_DOMAIN,
    DeviceKeys,
    b64url,
    device_session,
    integration_principal,
    register_device,
    unb64url,
)
from tests.support.harness import Relay, running_relay


@pytest.fixture
async def limited_relay(make_settings: SettingsFactory, clock: ManualClock) -> AsyncIterator[Relay]:
    async with running_relay(make_settings(max_devices_per_user=2, max_one_time_keys=3), clock) as running:
        yield running


async def error_code(response: Any) -> str:
    return (await response.json())["error"]["code"]


async def audit_actions(relay: Relay, device_id: str) -> list[str]:
    async with relay.runtime.database.read() as connection:
        rows = await connection.execute(
            select(audit_events.c.action).where(audit_events.c.object_id == device_id).order_by(audit_events.c.seq)
        )
        return list(rows.scalars())


async def test_a_clinician_registers_a_device_and_sees_it(relay: Relay) -> None:
    alice = await relay.account("alice")
    keys = DeviceKeys()
    response = await relay.call("POST", "/api/v1/devices", token=alice.token,
                                json=keys.registration("alice's phone", one_time_keys=5))
    assert response.status == 201, await response.text()
    device = await response.json()
    assert device["identity_key"] == keys.identity_key
    assert device["encryption_key"] == keys.encryption_upload()
    assert device["owner_type"] == "user" and device["owner_id"] == alice.user_id
    assert device["name"] == "alice's phone"
    assert len(device["fingerprint"].split(" ")) == 12

    listed = await (await relay.call("GET", "/api/v1/devices", token=alice.token)).json()
    assert [d["id"] for d in listed["devices"]] == [device["id"]]
    count = await relay.call("GET", f"/api/v1/devices/{device['id']}/one-time-keys/count", token=alice.token)
    assert await count.json() == {"count": 5, "max": relay.runtime.settings.max_one_time_keys}
    assert await audit_actions(relay, device["id"]) == ["device.registered"]


async def test_a_bad_signature_is_refused_and_nothing_is_stored(relay: Relay) -> None:
    alice = await relay.account("alice")
    impostor = SigningKey.generate()
    keys = DeviceKeys()
    signed_by_another = keys.registration()
    signed_by_another["encryption_key"]["signature"] = b64url(impostor.sign(
        ENCRYPTION_KEY_DOMAIN + b"\x00" + keys.encryption_key_id.encode() + b"\x00"
        + unb64url(signed_by_another["encryption_key"]["public_key"])).signature)
    other_key_id = keys.registration()
    other_key_id["encryption_key"]["key_id"] = "ek-other"
    one_time_bad = keys.registration(one_time_keys=3)
    one_time_bad["one_time_keys"][2]["signature"] = one_time_bad["one_time_keys"][0]["signature"]
    wrong_purpose = keys.registration()
    encryption = keys.encryption_upload()
    wrong_purpose["one_time_keys"] = [encryption]
    cases = [("encryption_key", signed_by_another), ("encryption_key", other_key_id),
             ("one_time_keys.2", one_time_bad), ("one_time_keys.0", wrong_purpose)]
    for field, body in cases:
        response = await relay.call("POST", "/api/v1/devices", token=alice.token, json=body)
        assert response.status == 422, field
        error = (await response.json())["error"]
        assert error["code"] == "bad_signature" and error["details"]["field"] == field
    assert (await (await relay.call("GET", "/api/v1/devices", token=alice.token)).json())["devices"] == []
    async with relay.runtime.database.read() as connection:
        assert await connection.scalar(select(func.count()).select_from(devices)) == 0
        assert await connection.scalar(select(func.count()).select_from(one_time_keys)) == 0


async def test_malformed_and_weak_keys_are_refused(relay: Relay) -> None:
    alice = await relay.account("alice")
    keys = DeviceKeys()

    def body_with(**changes: Any) -> dict[str, Any]:
        body = keys.registration(one_time_keys=1)
        for path, value in changes.items():
            target = body
            *parents, last = path.split("__")
            for part in parents:
                target = target[int(part)] if part.isdigit() else target[part]
            target[last] = value
        return body

    identity = unb64url(keys.identity_key)
    signature = unb64url(keys.encryption_upload()["signature"])
    cases = [
        ("identity_key", body_with(identity_key=b64url(identity[:31]))),
        ("encryption_key.public_key", body_with(encryption_key__public_key=b64url(bytes(33)))),
        ("encryption_key.signature", body_with(encryption_key__signature=b64url(signature[:63]))),
        ("one_time_keys.0.public_key", body_with(one_time_keys__0__public_key=b64url(bytes(31)))),
        ("identity_key", body_with(identity_key=keys.identity_key + "=")),
        ("identity_key", body_with(identity_key=base64.b64encode(identity).decode())),
        ("encryption_key.signature", body_with(encryption_key__signature="not base64!")),
    ]
    for field, body in cases:
        response = await relay.call("POST", "/api/v1/devices", token=alice.token, json=body)
        assert response.status == 422, field
        error = (await response.json())["error"]
        assert (error["code"], error["details"]["field"]) == ("malformed_key", field)

    weak = keys.sign(ENCRYPTION_KEY_DOMAIN, "ek-zero", bytes(32))
    response = await relay.call("POST", "/api/v1/devices", token=alice.token, json=body_with(encryption_key=weak))
    assert response.status == 422 and await error_code(response) == "weak_key"
    assert (await (await relay.call("GET", "/api/v1/devices", token=alice.token)).json())["devices"] == []


async def test_one_time_key_ids_must_be_unique(relay: Relay) -> None:
    alice = await relay.account("alice")
    keys = DeviceKeys()
    body = keys.registration(one_time_keys=2)
    body["one_time_keys"][1] = body["one_time_keys"][0]
    response = await relay.call("POST", "/api/v1/devices", token=alice.token, json=body)
    assert response.status == 409 and await error_code(response) == "duplicate_key_id"

    device = await register_device(relay, alice.token, one_time_keys=2)
    stored, private = next(iter(device.keys.one_time.items()))
    again = device.keys.sign(b"relay/v1/one-time-key", stored, bytes(private.public_key))
    response = await relay.call("POST", f"/api/v1/devices/{device.id}/one-time-keys", token=alice.token,
                                json={"one_time_keys": [*device.keys.one_time_batch(1), again]})
    assert response.status == 409 and await error_code(response) == "duplicate_key_id"
    count = await relay.call("GET", f"/api/v1/devices/{device.id}/one-time-keys/count", token=alice.token)
    assert (await count.json())["count"] == 2


async def test_one_time_keys_are_topped_up_within_the_limit(limited_relay: Relay) -> None:
    relay = limited_relay
    alice = await relay.account("alice")
    too_many = DeviceKeys().registration(one_time_keys=4)
    response = await relay.call("POST", "/api/v1/devices", token=alice.token, json=too_many)
    assert response.status == 409 and await error_code(response) == "too_many_one_time_keys"

    device = await register_device(relay, alice.token, one_time_keys=2)
    path = f"/api/v1/devices/{device.id}/one-time-keys"
    response = await relay.call("POST", path, token=alice.token, json={"one_time_keys": device.keys.one_time_batch(2)})
    assert response.status == 409 and await error_code(response) == "too_many_one_time_keys"
    response = await relay.call("POST", path, token=alice.token, json={"one_time_keys": device.keys.one_time_batch(1)})
    assert response.status == 200 and await response.json() == {"count": 3, "max": 3}
    assert "device.one_time_keys_uploaded" in await audit_actions(relay, device.id)


async def test_a_user_may_hold_only_so_many_active_devices(limited_relay: Relay) -> None:
    relay = limited_relay
    alice = await relay.account("alice")
    first = await register_device(relay, alice.token)
    await register_device(relay, alice.token)
    response = await relay.call("POST", "/api/v1/devices", token=alice.token, json=DeviceKeys().registration())
    assert response.status == 409 and await error_code(response) == "too_many_devices"
    assert (await relay.call("DELETE", f"/api/v1/devices/{first.id}", token=alice.token)).status == 204
    await register_device(relay, alice.token)


async def test_an_identity_key_names_one_device(relay: Relay) -> None:
    alice = await relay.account("alice")
    bob = await relay.account("bob")
    keys = DeviceKeys()
    await register_device(relay, alice.token, keys=keys)
    copy = DeviceKeys(identity=keys.identity)
    response = await relay.call("POST", "/api/v1/devices", token=bob.token, json=copy.registration())
    assert response.status == 409 and await error_code(response) == "identity_key_in_use"


async def test_the_owner_rotates_the_encryption_key(relay: Relay) -> None:
    alice = await relay.account("alice")
    bob = await relay.account("bob")
    device = await register_device(relay, alice.token)
    path = f"/api/v1/devices/{device.id}/encryption-key"
    old_key_id = device.keys.encryption_key_id

    stale = device.keys.encryption_upload()
    response = await relay.call("PUT", path, token=alice.token, json=stale)
    assert response.status == 409 and await error_code(response) == "key_id_reused"
    forged = DeviceKeys().rotate()
    response = await relay.call("PUT", path, token=alice.token, json=forged)
    assert response.status == 422 and await error_code(response) == "bad_signature"
    new_key = device.keys.rotate()
    response = await relay.call("PUT", path, token=bob.token, json=new_key)
    assert response.status == 403 and await error_code(response) == "not_device_owner"

    response = await relay.call("PUT", path, token=alice.token, json=new_key)
    assert response.status == 200, await response.text()
    rotated = await response.json()
    assert rotated["encryption_key"] == new_key and rotated["rotated_at"] is not None
    assert rotated["fingerprint"] == device.view["fingerprint"]
    seen_by_bob = await (await relay.call("GET", f"/api/v1/directory/devices/{device.id}", token=bob.token)).json()
    assert seen_by_bob["encryption_key"]["key_id"] == new_key["key_id"] != old_key_id
    assert "device.key_rotated" in await audit_actions(relay, device.id)


async def test_the_owner_revokes_a_lost_phone(relay: Relay) -> None:
    alice = await relay.account("alice")
    phone, phone_token = await device_session(relay, alice, one_time_keys=3)
    tablet, tablet_token = await device_session(relay, alice)
    assert (await relay.call("GET", "/api/v1/me", token=phone_token)).status == 200

    response = await relay.call("DELETE", f"/api/v1/devices/{phone.id}", token=alice.token)
    assert response.status == 204
    stopped = await relay.call("GET", "/api/v1/me", token=phone_token)
    assert stopped.status == 401 and await error_code(stopped) == "invalid_token"
    assert (await relay.call("GET", "/api/v1/me", token=tablet_token)).status == 200
    listed = await (await relay.call("GET", "/api/v1/devices", token=alice.token)).json()
    assert [d["id"] for d in listed["devices"]] == [tablet.id]
    again = await relay.call("DELETE", f"/api/v1/devices/{phone.id}", token=alice.token)
    assert again.status == 404
    login = await relay.call("POST", "/api/v1/auth/login", json={
        "tenant": alice.tenant, "username": alice.username, "password": alice.password, "device_id": phone.id})
    assert login.status == 422 and await error_code(login) == "unknown_device"

    async with relay.runtime.database.read() as connection:
        row = (await connection.execute(select(devices).where(devices.c.id == phone.id))).one()
        left = await connection.scalar(
            select(func.count()).select_from(one_time_keys).where(one_time_keys.c.device_id == phone.id))
    assert row.revoked_at == relay.clock.now()
    assert (row.identity_key, row.encryption_key, row.encryption_key_signature) == (None, None, None)
    assert left == 0
    assert (await audit_actions(relay, phone.id))[-1] == "device.revoked"


async def test_a_revoked_device_is_told_and_disconnected(relay: Relay) -> None:
    alice = await relay.account("alice")
    device, token = await device_session(relay, alice)
    client = socketio.AsyncClient(reconnection=False)
    told: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    gone = asyncio.Event()
    client.on("device_revoked", told.put)

    @client.event
    async def disconnect(*_: Any) -> None:
        gone.set()

    await client.connect(relay.url, auth={"token": token}, transports=["websocket"], wait_timeout=10)
    try:
        assert (await relay.call("DELETE", f"/api/v1/devices/{device.id}", token=alice.token)).status == 204
        assert await asyncio.wait_for(told.get(), 10) == {"device_id": device.id, "wipe": True}
        await asyncio.wait_for(gone.wait(), 10)
    finally:
        await client.disconnect()

    refused = socketio.AsyncClient(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await refused.connect(relay.url, auth={"token": token}, transports=["websocket"], wait_timeout=10)


async def test_an_admin_revokes_a_users_and_an_integrations_device(relay: Relay) -> None:
    admin = await relay.account("admin", Role.ADMIN)
    alice = await relay.account("alice")
    device, token = await device_session(relay, alice)
    response = await relay.call("DELETE", f"/api/v1/devices/{device.id}", token=admin.token)
    assert response.status == 204
    assert (await relay.call("GET", "/api/v1/me", token=token)).status == 401

    integration_id, adapter_token = await integration_principal(relay, admin)
    adapter_device = await register_device(relay, adapter_token, name="epic adapter")
    assert adapter_device.view["owner_type"] == "integration"
    assert adapter_device.view["owner_id"] == integration_id
    response = await relay.call("DELETE", f"/api/v1/devices/{adapter_device.id}", token=admin.token)
    assert response.status == 204
    listed = await (await relay.call("GET", "/api/v1/devices", token=adapter_token)).json()
    assert listed["devices"] == []


async def test_only_the_owner_or_an_admin_revokes(relay: Relay) -> None:
    alice = await relay.account("alice")
    bob = await relay.account("bob")
    auditor = await relay.account("audrey", Role.AUDITOR)
    stranger = await relay.account("eve", Role.ADMIN, tenant="elsewhere")
    device, token = await device_session(relay, alice)
    for caller, status, code in ((bob, 403, "not_device_owner"), (auditor, 403, "not_device_owner"),
                                 (stranger, 404, "device_not_found")):
        response = await relay.call("DELETE", f"/api/v1/devices/{device.id}", token=caller.token)
        assert response.status == status and await error_code(response) == code, caller.username
    assert (await relay.call("GET", "/api/v1/me", token=token)).status == 200
    assert (await relay.call("GET", f"/api/v1/directory/devices/{device.id}", token=bob.token)).status == 200


async def test_an_auditor_registers_a_device_but_an_integration_cannot_touch_a_users(relay: Relay) -> None:
    admin = await relay.account("admin", Role.ADMIN)
    auditor = await relay.account("audrey", Role.AUDITOR)
    own = await register_device(relay, auditor.token)
    _, adapter_token = await integration_principal(relay, admin)
    for method, path, body in (("DELETE", f"/api/v1/devices/{own.id}", None),
                               ("PUT", f"/api/v1/devices/{own.id}/encryption-key", own.keys.rotate()),
                               ("GET", f"/api/v1/devices/{own.id}/one-time-keys/count", None)):
        response = await relay.call(method, path, token=adapter_token, json=body)
        assert response.status == 403 and await error_code(response) == "not_device_owner", path
