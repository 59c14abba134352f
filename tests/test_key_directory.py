"""The key directory: senders read signed keys and fingerprints, claim one-time keys once each,
and never see another tenant's devices or revoked ones."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from nacl.public import PrivateKey
from nacl.signing import SigningKey

from relay.auth.principal import Role
from tests.support.devices import (
    ENCRYPTION_KEY_DOMAIN,
    ONE_TIME_KEY_DOMAIN,
    DeviceKeys,
    b64url,
    fingerprint,
    integration_principal,
    register_device,
    signed_message,
    unb64url,
    verify_signed_key,
)
from tests.support.harness import Relay

KEYS_DOC = Path(__file__).parent.parent / "docs" / "keys.md"


def documented_vectors() -> dict[str, str]:
    block = re.search(r"## Test vectors.*?```text\n(.*?)```", KEYS_DOC.read_text(), re.S)
    assert block, "docs/keys.md has no test vectors"
    return dict(line.split(" = ", 1) for line in block.group(1).strip().splitlines())


async def test_a_clinician_reads_a_colleagues_signed_keys(relay: Relay) -> None:
    alice = await relay.account("alice")
    bob = await relay.account("bob")
    phone = await register_device(relay, bob.token, name="bob's phone")
    relay.clock.advance(60)
    tablet = await register_device(relay, bob.token, name="ward tablet")
    response = await relay.call("GET", f"/api/v1/directory/users/{bob.user_id}/devices", token=alice.token)
    assert response.status == 200
    listed = (await response.json())["devices"]
    assert [d["id"] for d in listed] == [phone.id, tablet.id]
    for device, registered in zip(listed, (phone, tablet)):
        assert device["identity_key"] == registered.keys.identity_key
        verify_signed_key(device["identity_key"], ENCRYPTION_KEY_DOMAIN, device["encryption_key"])
        assert device["fingerprint"] == fingerprint(unb64url(device["identity_key"]))
    one = await relay.call("GET", f"/api/v1/directory/devices/{phone.id}", token=alice.token)
    assert await one.json() == listed[0]


async def test_an_adapters_devices_are_in_the_directory(relay: Relay) -> None:
    admin = await relay.account("admin", Role.ADMIN)
    alice = await relay.account("alice")
    integration_id, adapter_token = await integration_principal(relay, admin)
    device = await register_device(relay, adapter_token, one_time_keys=1)
    response = await relay.call("GET", f"/api/v1/directory/integrations/{integration_id}/devices", token=alice.token)
    assert [d["id"] for d in (await response.json())["devices"]] == [device.id]
    own = await register_device(relay, alice.token)
    seen_by_adapter = await relay.call("GET", f"/api/v1/directory/users/{alice.user_id}/devices", token=adapter_token)
    assert [d["id"] for d in (await seen_by_adapter.json())["devices"]] == [own.id]


async def test_auditors_cannot_read_the_directory(relay: Relay) -> None:
    bob = await relay.account("bob")
    auditor = await relay.account("audrey", Role.AUDITOR)
    device = await register_device(relay, bob.token, one_time_keys=1)
    for method, path in (("GET", f"/api/v1/directory/users/{bob.user_id}/devices"),
                         ("GET", f"/api/v1/directory/devices/{device.id}"),
                         ("POST", f"/api/v1/directory/devices/{device.id}/one-time-key")):
        response = await relay.call(method, path, token=auditor.token)
        assert response.status == 403, path
        assert (await response.json())["error"]["code"] == "role_forbidden"


async def test_another_tenants_devices_look_unknown(relay: Relay) -> None:
    eve = await relay.account("eve", tenant="elsewhere")
    alice = await relay.account("alice")
    theirs = await register_device(relay, alice.token, one_time_keys=2)
    unknown = "0" * 32
    for method, path in (("GET", "/api/v1/directory/devices/{}"),
                         ("POST", "/api/v1/directory/devices/{}/one-time-key"),
                         ("GET", "/api/v1/devices/{}/one-time-keys/count"),
                         ("DELETE", "/api/v1/devices/{}")):
        foreign = await relay.call(method, path.format(theirs.id), token=eve.token)
        missing = await relay.call(method, path.format(unknown), token=eve.token)
        assert foreign.status == missing.status == 404, path
        assert await foreign.json() == await missing.json()
    foreign = await relay.call("GET", f"/api/v1/directory/users/{alice.user_id}/devices", token=eve.token)
    missing = await relay.call("GET", f"/api/v1/directory/users/{unknown}/devices", token=eve.token)
    assert foreign.status == missing.status == 404
    assert await foreign.json() == await missing.json()
    count = await relay.call("GET", f"/api/v1/devices/{theirs.id}/one-time-keys/count", token=alice.token)
    assert (await count.json())["count"] == 2


async def test_revoked_devices_vanish_from_the_directory(relay: Relay) -> None:
    alice = await relay.account("alice")
    bob = await relay.account("bob")
    lost = await register_device(relay, bob.token, one_time_keys=2)
    relay.clock.advance(60)
    kept = await register_device(relay, bob.token)
    assert (await relay.call("DELETE", f"/api/v1/devices/{lost.id}", token=bob.token)).status == 204
    listed = await relay.call("GET", f"/api/v1/directory/users/{bob.user_id}/devices", token=alice.token)
    assert [d["id"] for d in (await listed.json())["devices"]] == [kept.id]
    assert (await relay.call("GET", f"/api/v1/directory/devices/{lost.id}", token=alice.token)).status == 404
    claim = await relay.call("POST", f"/api/v1/directory/devices/{lost.id}/one-time-key", token=alice.token)
    assert claim.status == 404


async def test_each_one_time_key_is_handed_out_once(relay: Relay) -> None:
    alice = await relay.account("alice")
    bob = await relay.account("bob")
    device = await register_device(relay, bob.token, one_time_keys=3)
    path = f"/api/v1/directory/devices/{device.id}/one-time-key"
    claimed = []
    for _ in range(3):
        response = await relay.call("POST", path, token=alice.token)
        assert response.status == 200
        body = await response.json()
        verify_signed_key(body["device"]["identity_key"], ONE_TIME_KEY_DOMAIN, body["one_time_key"])
        claimed.append(body["one_time_key"]["key_id"])
    assert sorted(claimed) == sorted(device.keys.one_time)
    count = await relay.call("GET", f"/api/v1/devices/{device.id}/one-time-keys/count", token=bob.token)
    assert (await count.json())["count"] == 0

    exhausted = await (await relay.call("POST", path, token=alice.token)).json()
    assert exhausted["one_time_key"] is None
    assert exhausted["device"]["encryption_key"] == device.keys.encryption_upload()


async def test_concurrent_claims_never_share_a_key(relay: Relay) -> None:
    alice = await relay.account("alice")
    bob = await relay.account("bob")
    device = await register_device(relay, bob.token, one_time_keys=10)
    path = f"/api/v1/directory/devices/{device.id}/one-time-key"
    responses = await asyncio.gather(*(relay.call("POST", path, token=alice.token) for _ in range(25)))
    assert all(response.status == 200 for response in responses)
    keys = [(await response.json())["one_time_key"] for response in responses]
    handed_out = [key["key_id"] for key in keys if key is not None]
    assert sorted(handed_out) == sorted(device.keys.one_time)
    assert keys.count(None) == 15


async def test_the_documented_vectors_are_what_the_relay_accepts(relay: Relay) -> None:
    vectors = documented_vectors()
    identity = SigningKey(bytes.fromhex(vectors["identity_seed_hex"]))
    encryption = PrivateKey(bytes.fromhex(vectors["encryption_private_hex"]))
    one_time = PrivateKey(bytes.fromhex(vectors["one_time_private_hex"]))
    assert b64url(bytes(identity.verify_key)) == vectors["identity_key"]
    assert b64url(bytes(encryption.public_key)) == vectors["encryption_key"]
    assert b64url(bytes(one_time.public_key)) == vectors["one_time_key"]
    message = signed_message(ENCRYPTION_KEY_DOMAIN, vectors["encryption_key_id"], bytes(encryption.public_key))
    assert message.hex() == vectors["encryption_message_hex"]
    assert b64url(identity.sign(message).signature) == vectors["encryption_signature"]
    message = signed_message(ONE_TIME_KEY_DOMAIN, vectors["one_time_key_id"], bytes(one_time.public_key))
    assert message.hex() == vectors["one_time_message_hex"]
    assert b64url(identity.sign(message).signature) == vectors["one_time_signature"]

    alice = await relay.account("alice")
    body = {
        "name": "test vector",
        "identity_key": vectors["identity_key"],
        "encryption_key": {"key_id": vectors["encryption_key_id"], "public_key": vectors["encryption_key"],
                           "signature": vectors["encryption_signature"]},
        "one_time_keys": [{"key_id": vectors["one_time_key_id"], "public_key": vectors["one_time_key"],
                           "signature": vectors["one_time_signature"]}],
    }
    response = await relay.call("POST", "/api/v1/devices", token=alice.token, json=body)
    assert response.status == 201, await response.text()
    device = await response.json()
    assert device["fingerprint"] == vectors["fingerprint"] == fingerprint(bytes(identity.verify_key))
    claim = await relay.call("POST", f"/api/v1/directory/devices/{device['id']}/one-time-key", token=alice.token)
    assert (await claim.json())["one_time_key"] == body["one_time_keys"][0]


async def test_fingerprints_are_stable_across_key_rotation(relay: Relay) -> None:
    alice = await relay.account("alice")
    bob = await relay.account("bob")
    keys = DeviceKeys()
    device = await register_device(relay, bob.token, keys=keys)
    before = await (await relay.call("GET", f"/api/v1/directory/devices/{device.id}", token=alice.token)).json()
    rotated = await relay.call("PUT", f"/api/v1/devices/{device.id}/encryption-key", token=bob.token,
                               json=keys.rotate())
    assert rotated.status == 200
    after = await (await relay.call("GET", f"/api/v1/directory/devices/{device.id}", token=alice.token)).json()
    assert after["fingerprint"] == before["fingerprint"]
    assert after["encryption_key"]["key_id"] != before["encryption_key"]["key_id"]
