"""Sessions: idle timeout, absolute lifetime, logout, ending every session of a user, re-authentication."""

from __future__ import annotations

from relay.auth.principal import Role
from tests.support.harness import Relay


async def me(relay: Relay, token: str) -> int:
    return (await relay.call("GET", "/api/v1/me", token=token)).status


async def test_an_idle_session_expires(relay: Relay) -> None:
    alice = await relay.account("alice")
    idle = relay.runtime.settings.session_idle_timeout
    relay.clock.advance(idle - 5)
    assert await me(relay, alice.token) == 200
    relay.clock.advance(idle - 5)
    assert await me(relay, alice.token) == 200, "activity keeps a session alive"
    relay.clock.advance(idle + 1)
    response = await relay.call("GET", "/api/v1/me", token=alice.token)
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "session_expired"


async def test_an_active_session_still_ends_at_its_absolute_lifetime(relay: Relay) -> None:
    alice = await relay.account("alice")
    settings = relay.runtime.settings
    step = settings.session_idle_timeout - 60
    elapsed = 0
    while elapsed + step < settings.session_lifetime:
        relay.clock.advance(step)
        elapsed += step
        assert await me(relay, alice.token) == 200
    relay.clock.advance(settings.session_lifetime - elapsed + 1)
    assert await me(relay, alice.token) == 401


async def test_logout_ends_only_that_session(relay: Relay) -> None:
    alice = await relay.account("alice")
    other = await relay.login(alice)
    assert (await relay.call("POST", "/api/v1/auth/logout", token=alice.token)).status == 204
    assert await me(relay, alice.token) == 401
    assert await me(relay, other) == 200


async def test_a_garbage_or_missing_token_is_refused(relay: Relay) -> None:
    missing = await relay.call("GET", "/api/v1/me")
    assert missing.status == 401 and (await missing.json())["error"]["code"] == "missing_token"
    garbage = await relay.call("GET", "/api/v1/me", token="x" * 43)
    assert garbage.status == 401 and (await garbage.json())["error"]["code"] == "invalid_token"


async def test_an_admin_ends_every_session_of_a_user(relay: Relay) -> None:
    admin = await relay.account("root", Role.ADMIN)
    alice = await relay.account("alice")
    laptop = await relay.login(alice)
    response = await relay.call("DELETE", f"/api/v1/users/{alice.user_id}/sessions", token=admin.token)
    assert response.status == 200 and (await response.json())["ended"] == 2
    assert await me(relay, alice.token) == 401 and await me(relay, laptop) == 401
    assert await me(relay, admin.token) == 200


async def test_an_admin_cannot_end_sessions_in_another_tenant(relay: Relay) -> None:
    admin = await relay.account("root", Role.ADMIN)
    bob = await relay.account("bob", tenant="elsewhere")
    response = await relay.call("DELETE", f"/api/v1/users/{bob.user_id}/sessions", token=admin.token)
    assert response.status == 404
    assert await me(relay, bob.token) == 200


async def test_changing_the_password_ends_the_other_sessions(relay: Relay) -> None:
    alice = await relay.account("alice")
    phone = await relay.login(alice)
    wrong = await relay.call("POST", "/api/v1/me/password", token=alice.token,
                             json={"current_password": "not it at all", "new_password": "a brand new passphrase"})
    assert wrong.status == 401
    weak = await relay.call("POST", "/api/v1/me/password", token=alice.token,
                            json={"current_password": alice.password, "new_password": "short"})
    assert weak.status == 422 and (await weak.json())["error"]["code"] == "weak_password"
    changed = await relay.call("POST", "/api/v1/me/password", token=alice.token,
                               json={"current_password": alice.password, "new_password": "a brand new passphrase"})
    assert changed.status == 204
    assert await me(relay, alice.token) == 200 and await me(relay, phone) == 401
    alice.password = "a brand new passphrase"
    assert await relay.login(alice)


async def test_sensitive_actions_need_a_recent_reauthentication(relay: Relay) -> None:
    alice = await relay.account("alice")
    relay.clock.advance(relay.runtime.settings.reauth_window + 1)
    refused = await relay.call("POST", "/api/v1/me/recovery-codes", token=alice.token)
    assert refused.status == 403 and (await refused.json())["error"]["code"] == "reauth_required"
    bad = await relay.call("POST", "/api/v1/auth/reauth", token=alice.token, json={"password": "wrong password!!"})
    assert bad.status == 401
    good = await relay.call("POST", "/api/v1/auth/reauth", token=alice.token, json={"password": alice.password})
    assert good.status == 204
    still_no_totp = await relay.call("POST", "/api/v1/me/recovery-codes", token=alice.token)
    assert still_no_totp.status == 409 and (await still_no_totp.json())["error"]["code"] == "totp_not_enabled"
