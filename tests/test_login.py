"""Logging in: passwords, lockout, per-address rate limits, disabled accounts."""

from __future__ import annotations

import asyncio

from relay.auth.passwords import verify_password
from relay.auth.principal import Role
from tests.conftest import SettingsFactory
from tests.support.clock import ManualClock
from tests.support.devices import register_device
from tests.support.harness import Relay, running_relay


async def login(relay: Relay, password: str, username: str = "alice", tenant: str = "general"):
    return await relay.call("POST", "/api/v1/auth/login",
                            json={"tenant": tenant, "username": username, "password": password})


async def test_admin_logs_in_and_sees_themself(relay: Relay) -> None:
    admin = await relay.account("alice", Role.ADMIN)
    response = await relay.call("GET", "/api/v1/me", token=admin.token)
    assert response.status == 200
    me = await response.json()
    assert me["username"] == "alice" and me["role"] == "admin" and me["totp_enabled"] is False


async def test_checking_a_password_leaves_the_event_loop_free() -> None:
    """argon2id takes tens of milliseconds; open sockets and other requests keep moving meanwhile."""
    check = asyncio.ensure_future(verify_password(None, "correct horse battery"))
    turns = 0
    while not check.done():
        turns += 1
        await asyncio.sleep(0)
    assert await check is False
    assert turns > 10


async def test_wrong_password_and_unknown_user_look_the_same(relay: Relay) -> None:
    await relay.account("alice", login=False)
    wrong = await login(relay, "not the password at all")
    unknown = await login(relay, "not the password at all", username="nobody")
    other_tenant = await login(relay, "not the password at all", tenant="elsewhere")
    for response in (wrong, unknown, other_tenant):
        assert response.status == 401
        assert (await response.json())["error"]["code"] == "invalid_credentials"


async def test_repeated_failures_lock_the_account_until_the_lockout_ends(relay: Relay) -> None:
    alice = await relay.account("alice", login=False)
    limit = relay.runtime.settings.login_max_failures
    for _ in range(limit - 1):
        assert (await login(relay, "wrong password!!")).status == 401
    locked = await login(relay, "wrong password!!")
    assert locked.status == 423
    assert (await locked.json())["error"]["code"] == "account_locked"
    still_locked = await login(relay, alice.password)
    assert still_locked.status == 423, "the right password does not open a locked account"
    assert 1 <= int(still_locked.headers["Retry-After"]) <= relay.runtime.settings.login_lockout
    relay.clock.advance(relay.runtime.settings.login_lockout + 1)
    assert (await login(relay, alice.password)).status == 201


async def test_success_resets_the_failure_count(relay: Relay) -> None:
    alice = await relay.account("alice", login=False)
    limit = relay.runtime.settings.login_max_failures
    for _ in range(limit - 1):
        await login(relay, "wrong password!!")
    assert (await login(relay, alice.password)).status == 201
    for _ in range(limit - 1):
        assert (await login(relay, "wrong password!!")).status == 401
    assert (await login(relay, alice.password)).status == 201


async def test_an_admin_unlocks_a_locked_account(relay: Relay) -> None:
    admin = await relay.account("root", Role.ADMIN)
    alice = await relay.account("alice", login=False)
    for _ in range(relay.runtime.settings.login_max_failures):
        await login(relay, "wrong password!!")
    assert (await login(relay, alice.password)).status == 423
    unlocked = await relay.call("POST", f"/api/v1/users/{alice.user_id}/unlock", token=admin.token)
    assert unlocked.status == 204
    assert (await login(relay, alice.password)).status == 201


async def test_login_attempts_are_rate_limited_per_address(make_settings: SettingsFactory, clock: ManualClock) -> None:
    async with running_relay(make_settings(login_rate_per_minute=5), clock) as relay:
        alice = await relay.account("alice", login=False)
        answers = [(await login(relay, "wrong password!!", username=f"user{i}")).status for i in range(5)]
        assert answers == [401] * 5
        limited = await login(relay, alice.password)
        assert limited.status == 429
        assert (await limited.json())["error"]["code"] == "rate_limited"
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        clock.advance(61)
        assert (await login(relay, alice.password)).status == 201


async def test_a_disabled_user_cannot_log_in_and_loses_their_sessions(relay: Relay) -> None:
    admin = await relay.account("root", Role.ADMIN)
    alice = await relay.account("alice")
    disabled = await relay.call("PATCH", f"/api/v1/users/{alice.user_id}", token=admin.token, json={"disabled": True})
    assert disabled.status == 200 and (await disabled.json())["disabled"] is True
    assert (await relay.call("GET", "/api/v1/me", token=alice.token)).status == 401
    refused = await login(relay, alice.password)
    assert refused.status == 401 and (await refused.json())["error"]["code"] == "invalid_credentials"


async def test_failed_logins_are_audited_without_the_password(relay: Relay) -> None:
    alice = await relay.account("alice", login=False)
    await login(relay, "canary-password-123")
    from sqlalchemy import select

    from relay.storage.tables import audit_events

    async with relay.runtime.database.read() as connection:
        rows = (await connection.execute(select(audit_events).where(audit_events.c.action == "auth.login"))).all()
    failures = [row for row in rows if row.outcome == "failure"]
    assert failures and failures[-1].object_id == alice.user_id
    assert all("canary-password" not in str(tuple(row)) for row in rows)


async def test_a_session_moves_to_a_device_just_registered_without_a_second_login(relay: Relay) -> None:
    alice, bob = await relay.account("alice"), await relay.account("bob")
    device = await register_device(relay, alice.token)
    moved = await relay.call("POST", "/api/v1/auth/device-session", token=alice.token, json={"device_id": device.id})
    assert moved.status == 201, await moved.text()
    bound = (await moved.json())["token"]
    assert (await relay.call("GET", "/api/v1/blobs", token=bound)).status == 200, "the new token is device-bound"
    assert (await relay.call("GET", "/api/v1/me", token=alice.token)).status == 401, "the old token ended"

    bobs = await relay.call("POST", "/api/v1/auth/device-session", token=bob.token, json={"device_id": device.id})
    assert (bobs.status, (await bobs.json())["error"]["code"]) == (422, "unknown_device")
    assert (await relay.call("GET", "/api/v1/me", token=bob.token)).status == 200, "a refusal ends nothing"
