"""The client SDK against a real relay: login with TOTP, a device registered once and reused
from a private key file, one-time keys, logging in again when the session ends, logout."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from relay_client import (
    Credentials,
    DeviceRevoked,
    InsecureKeyFile,
    NotLoggedIn,
    RelayApiError,
    RelayClient,
)

from tests.support.harness import PASSWORD, Account, Relay
from tests.support.totp import code_at


async def enrol_totp(relay: Relay, account: Account) -> str:
    begun = await (await relay.call("POST", "/api/v1/me/totp", token=account.token)).json()
    confirmed = await relay.call("POST", "/api/v1/me/totp/confirm", token=account.token,
                                 json={"code": code_at(begun["secret"], relay.clock.now())})
    assert confirmed.status == 200
    return str(begun["secret"])


def authenticator(relay: Relay, secret: str) -> Callable[[], str]:
    """A phone showing the next code: each login waits for a new 30-second step, as a person would."""
    def code() -> str:
        relay.clock.advance(30)
        return code_at(secret, relay.clock.now())
    return code


def credentials(account: Account, **extra: object) -> Credentials:
    return Credentials(account.tenant, account.username, PASSWORD, **extra)  # type: ignore[arg-type]


async def test_login_with_totp_registers_a_device_in_a_private_key_file_and_reuses_it(
        relay: Relay, tmp_path: Path) -> None:
    alice = await relay.account("alice")
    secret = await enrol_totp(relay, alice)
    key_file = tmp_path / "keys" / "device.json"

    async with RelayClient(relay.url, key_file=key_file) as client:
        with pytest.raises(RelayApiError) as refused:
            await client.login(credentials(alice))
        assert (refused.value.status, refused.value.code) == (401, "totp_required")
        await client.login(credentials(alice, totp=authenticator(relay, secret)))
        device = await client.use_device("ward phone", one_time_keys=3)
        me = await client.auth.me()
        assert me["device_id"] == device.device_id
        assert await client.devices.one_time_key_count() == (3, (await client.devices.one_time_key_count())[1])

    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    assert str(PASSWORD) not in key_file.read_text()
    listed = await (await relay.call("GET", "/api/v1/devices", token=alice.token)).json()
    assert [d["id"] for d in listed["devices"]] == [device.device_id]

    async with RelayClient(relay.url, key_file=key_file) as again:
        session = await again.login(credentials(alice, totp=authenticator(relay, secret)))
        assert session.device_id == device.device_id, "the next run logs in on the same device"
        reused = await again.use_device("ward phone")
        assert reused.device_id == device.device_id
        assert reused.identity_key == device.identity_key
        assert await again.devices.upload_one_time_keys(2) == 5
    listed = await (await relay.call("GET", "/api/v1/devices", token=alice.token)).json()
    assert len(listed["devices"]) == 1


async def test_a_key_file_others_can_read_is_refused(relay: Relay, tmp_path: Path) -> None:
    alice = await relay.account("alice")
    key_file = tmp_path / "device.json"
    async with RelayClient(relay.url, key_file=key_file) as client:
        await client.login(credentials(alice))
        await client.use_device("ward phone")
    os.chmod(key_file, 0o644)
    async with RelayClient(relay.url, key_file=key_file) as client:
        with pytest.raises(InsecureKeyFile):
            await client.login(credentials(alice))
        with pytest.raises(InsecureKeyFile):
            await client.use_device("ward phone")


async def test_a_session_that_ended_is_renewed_by_logging_in_again(relay: Relay, tmp_path: Path) -> None:
    alice = await relay.account("alice")
    secret = await enrol_totp(relay, alice)
    async with RelayClient(relay.url, key_file=tmp_path / "device.json") as client:
        await client.login(credentials(alice, totp=authenticator(relay, secret)))
        await client.use_device("ward phone")
        first = client.auth.session
        relay.clock.advance(relay.runtime.settings.session_idle_timeout + 1)
        me = await client.auth.me()
        assert client.auth.session != first
        assert me["device_id"] == client.devices.device_id, "the new session is bound to the device again"
        await client.logout()
        with pytest.raises(NotLoggedIn):
            await client.auth.me()
    old = await relay.call("GET", "/api/v1/me", token=first.token if first else "")
    assert old.status == 401


async def test_a_revoked_device_is_wiped_on_the_next_run_and_a_new_one_registered(
        relay: Relay, tmp_path: Path) -> None:
    alice = await relay.account("alice")
    key_file = tmp_path / "device.json"
    async with RelayClient(relay.url, key_file=key_file) as client:
        await client.login(credentials(alice))
        old = (await client.use_device("ward phone")).device_id
    assert (await relay.call("DELETE", f"/api/v1/devices/{old}", token=alice.token)).status == 204

    async with RelayClient(relay.url, key_file=key_file) as client:
        session = await client.login(credentials(alice))
        assert session.device_id is None
        with pytest.raises(DeviceRevoked):
            await client.use_device("ward phone")
        assert not key_file.exists()
        new = (await client.use_device("ward phone")).device_id
    assert new != old
    assert json.loads(key_file.read_text())["device_id"] == new
