"""Integration principals (EMR adapters) authenticate with signed JWT client assertions, no passwords."""

from __future__ import annotations

from relay.auth.principal import Role
from tests.support.harness import Relay
from tests.support.integration import AdapterKey, token_form


async def register(relay: Relay, key: AdapterKey, name: str = "epic-adapter") -> dict:
    admin = await relay.account(f"admin-{name}", Role.ADMIN)
    response = await relay.call("POST", "/api/v1/integrations", token=admin.token,
                                json={"name": name, "public_key_pem": key.public_pem})
    assert response.status == 201, await response.text()
    return await response.json()


async def exchange(relay: Relay, assertion: str):
    return await relay.call("POST", "/api/v1/auth/token", data=token_form(assertion))


async def test_a_signed_assertion_buys_a_short_lived_token(relay: Relay) -> None:
    key = AdapterKey.generate()
    integration = await register(relay, key)
    assert integration["token_url"] == relay.runtime.settings.effective_public_url + "/api/v1/auth/token"
    response = await exchange(relay, key.assertion(integration["id"], integration["token_url"], relay.clock.now()))
    assert response.status == 200, await response.text()
    token = await response.json()
    assert token["token_type"] == "bearer"
    assert token["expires_in"] == relay.runtime.settings.integration_token_lifetime
    assert (await relay.call("POST", "/api/v1/auth/logout", token=token["access_token"])).status == 204


async def test_the_access_token_expires(relay: Relay) -> None:
    key = AdapterKey.generate()
    integration = await register(relay, key)
    token = (await (await exchange(relay, key.assertion(integration["id"], integration["token_url"],
                                                        relay.clock.now()))).json())["access_token"]
    relay.clock.advance(relay.runtime.settings.integration_token_lifetime + 1)
    expired = await relay.call("POST", "/api/v1/auth/logout", token=token)
    assert expired.status == 401 and (await expired.json())["error"]["code"] == "session_expired"


async def test_an_integration_token_cannot_act_as_a_user(relay: Relay) -> None:
    key = AdapterKey.generate()
    integration = await register(relay, key)
    token = (await (await exchange(relay, key.assertion(integration["id"], integration["token_url"],
                                                        relay.clock.now()))).json())["access_token"]
    for path in ("/api/v1/me", "/api/v1/users", "/api/v1/integrations"):
        response = await relay.call("GET", path, token=token)
        assert response.status == 403, path


async def test_bad_assertions_are_refused(relay: Relay) -> None:
    key = AdapterKey.generate()
    integration = await register(relay, key)
    client_id, audience, now = integration["id"], integration["token_url"], relay.clock.now()
    stranger = AdapterKey.generate()
    cases = {
        "signed by another key": stranger.assertion(client_id, audience, now),
        "wrong audience": key.assertion(client_id, "https://evil.example/token", now),
        "expired": key.assertion(client_id, audience, now, lifetime=-120),
        "lives too long": key.assertion(client_id, audience, now, lifetime=3600),
        "sub differs": key.assertion(client_id, audience, now, sub="someone-else"),
        "unknown client": key.assertion("0" * 32, audience, now),
        "not a jwt": "not.a.jwt",
    }
    for case, assertion in cases.items():
        response = await exchange(relay, assertion)
        assert response.status == 401, case
        assert (await response.json())["error"]["code"] == "invalid_client", case


async def test_an_assertion_cannot_be_replayed(relay: Relay) -> None:
    key = AdapterKey.generate()
    integration = await register(relay, key)
    assertion = key.assertion(integration["id"], integration["token_url"], relay.clock.now())
    assert (await exchange(relay, assertion)).status == 200
    assert (await exchange(relay, assertion)).status == 401


async def test_the_token_endpoint_speaks_oauth_forms(relay: Relay) -> None:
    key = AdapterKey.generate()
    integration = await register(relay, key)
    assertion = key.assertion(integration["id"], integration["token_url"], relay.clock.now())
    as_json = await relay.call("POST", "/api/v1/auth/token", json=token_form(assertion))
    assert as_json.status == 415
    wrong_grant = await relay.call("POST", "/api/v1/auth/token",
                                   data=token_form(assertion) | {"grant_type": "password"})
    assert wrong_grant.status == 422 and (await wrong_grant.json())["error"]["code"] == "unsupported_grant_type"


async def test_disabling_an_integration_ends_its_tokens(relay: Relay) -> None:
    key = AdapterKey.generate()
    integration = await register(relay, key)
    token = (await (await exchange(relay, key.assertion(integration["id"], integration["token_url"],
                                                        relay.clock.now()))).json())["access_token"]
    admin = await relay.account("second-admin", Role.ADMIN)
    disabled = await relay.call("PATCH", f"/api/v1/integrations/{integration['id']}", token=admin.token,
                                json={"disabled": True})
    assert disabled.status == 204
    assert (await relay.call("POST", "/api/v1/auth/logout", token=token)).status == 401
    again = await exchange(relay, key.assertion(integration["id"], integration["token_url"], relay.clock.now()))
    assert again.status == 401


async def test_registration_refuses_keys_that_are_not_public_keys(relay: Relay) -> None:
    admin = await relay.account("root", Role.ADMIN)
    response = await relay.call("POST", "/api/v1/integrations", token=admin.token,
                                json={"name": "x", "public_key_pem": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"})
    assert response.status == 422 and (await response.json())["error"]["code"] == "invalid_public_key"
