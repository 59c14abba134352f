"""The TOTP second factor: enrolment, login with a code, replay, recovery codes, reset by an admin."""

from __future__ import annotations

from relay.auth.principal import Role
from tests.support.harness import Account, Relay
from tests.support.totp import code_at


async def enrol(relay: Relay, account: Account) -> tuple[str, list[str]]:
    begun = await relay.call("POST", "/api/v1/me/totp", token=account.token)
    assert begun.status == 201
    enrolment = await begun.json()
    assert enrolment["otpauth_uri"].startswith("otpauth://totp/Relay:")
    confirmed = await relay.call("POST", "/api/v1/me/totp/confirm", token=account.token,
                                 json={"code": code_at(enrolment["secret"], relay.clock.now())})
    assert confirmed.status == 200
    codes = (await confirmed.json())["recovery_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    return enrolment["secret"], codes


async def attempt(relay: Relay, account: Account, **extra: str):
    return await relay.call("POST", "/api/v1/auth/login", json={
        "tenant": account.tenant, "username": account.username, "password": account.password, **extra})


async def test_enrolment_needs_a_matching_code(relay: Relay) -> None:
    alice = await relay.account("alice")
    await relay.call("POST", "/api/v1/me/totp", token=alice.token)
    wrong = await relay.call("POST", "/api/v1/me/totp/confirm", token=alice.token, json={"code": "000000"})
    assert wrong.status == 422 and (await wrong.json())["error"]["code"] == "invalid_totp"
    me = await (await relay.call("GET", "/api/v1/me", token=alice.token)).json()
    assert me["totp_enabled"] is False


async def test_login_needs_the_current_code_once_enrolled(relay: Relay) -> None:
    alice = await relay.account("alice")
    secret, _ = await enrol(relay, alice)
    missing = await attempt(relay, alice)
    assert missing.status == 401 and (await missing.json())["error"]["code"] == "totp_required"
    wrong = await attempt(relay, alice, totp_code="123456" if code_at(secret, relay.clock.now()) != "123456" else "654321")
    assert wrong.status == 401 and (await wrong.json())["error"]["code"] == "invalid_credentials"
    relay.clock.advance(60)
    code = code_at(secret, relay.clock.now())
    assert (await attempt(relay, alice, totp_code=code)).status == 201
    replayed = await attempt(relay, alice, totp_code=code)
    assert replayed.status == 401, "a code is accepted once"


async def test_the_seed_is_stored_sealed(relay: Relay) -> None:
    alice = await relay.account("alice")
    secret, _ = await enrol(relay, alice)
    from sqlalchemy import select

    from relay.storage.tables import users
    import base64

    async with relay.runtime.database.read() as connection:
        stored = await connection.scalar(select(users.c.totp_secret).where(users.c.id == alice.user_id))
    raw = base64.b32decode(secret + "=" * (-len(secret) % 8))
    assert stored and raw not in stored and secret.encode() not in stored


async def test_a_recovery_code_works_exactly_once(relay: Relay) -> None:
    alice = await relay.account("alice")
    _, codes = await enrol(relay, alice)
    assert (await attempt(relay, alice, recovery_code=codes[0])).status == 201
    assert (await attempt(relay, alice, recovery_code=codes[0])).status == 401
    assert (await attempt(relay, alice, recovery_code=codes[1].upper())).status == 201


async def test_wrong_codes_count_toward_lockout(relay: Relay) -> None:
    alice = await relay.account("alice")
    await enrol(relay, alice)
    statuses = [(await attempt(relay, alice, totp_code="000001")).status
                for _ in range(relay.runtime.settings.login_max_failures)]
    assert statuses[-1] == 423


async def test_an_admin_resets_a_lost_authenticator(relay: Relay) -> None:
    admin = await relay.account("root", Role.ADMIN)
    alice = await relay.account("alice")
    await enrol(relay, alice)
    reset = await relay.call("DELETE", f"/api/v1/users/{alice.user_id}/totp", token=admin.token)
    assert reset.status == 204
    assert (await attempt(relay, alice)).status == 201


async def test_the_user_removes_their_factor_after_reauthenticating(relay: Relay) -> None:
    alice = await relay.account("alice")
    secret, _ = await enrol(relay, alice)
    relay.clock.advance(relay.runtime.settings.reauth_window + 1)
    assert (await relay.call("DELETE", "/api/v1/me/totp", token=alice.token)).status == 403
    reauth = await relay.call("POST", "/api/v1/auth/reauth", token=alice.token,
                              json={"password": alice.password, "totp_code": code_at(secret, relay.clock.now())})
    assert reauth.status == 204
    assert (await relay.call("DELETE", "/api/v1/me/totp", token=alice.token)).status == 204
    assert (await attempt(relay, alice)).status == 201
