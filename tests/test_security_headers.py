"""Every response carries the security headers of DESIGN.md's security baseline: successes,
refusals, 404s, 405s and errors alike, on every declared endpoint."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from aiohttp import ClientResponse

from relay.app import all_endpoints
from relay.auth.principal import Role
from relay.http.endpoint import Endpoint
from tests.support.backends import BACKENDS
from tests.support.harness import Account, Relay
from tests.support.tcp_proxy import relay_behind_proxies

PLACEHOLDER_ID = "0" * 32
_PARAM = re.compile(r"{(\w+)(?::[^}]*)?}")


def concrete(path: str) -> str:
    return _PARAM.sub(PLACEHOLDER_ID, path)


def directives(policy: str) -> dict[str, list[str]]:
    parsed = {}
    for directive in filter(None, (part.strip() for part in policy.split(";"))):
        name, *values = directive.split()
        parsed[name] = values
    return parsed


def assert_secure(response: ClientResponse) -> None:
    where = f"{response.method} {response.url.path} -> {response.status}"
    headers = response.headers
    assert headers.get("X-Content-Type-Options") == "nosniff", where
    assert headers.get("Referrer-Policy") == "no-referrer", where
    assert headers.get("X-Frame-Options") == "DENY", where
    assert "no-store" in headers.get("Cache-Control", ""), where
    policy = headers.get("Content-Security-Policy", "")
    parsed = directives(policy)
    assert parsed.get("frame-ancestors") == ["'none'"], where
    assert parsed.get("default-src") == ["'none'"], where
    assert parsed.get("object-src", ["'none'"]) == ["'none'"], where
    sources = [source for values in parsed.values() for source in values]
    assert "'unsafe-inline'" not in sources and "'unsafe-eval'" not in sources, where
    assert not [source for source in sources if "://" in source or source in ("*", "http:", "https:")], where
    assert "Strict-Transport-Security" not in headers, f"{where}: HSTS without TLS"


async def request(relay: Relay, endpoint: Endpoint, token: str | None) -> ClientResponse:
    return await relay.call(endpoint.method, concrete(endpoint.path), token=token)


async def signed_in(relay: Relay, account: Account) -> Account:
    """A fresh session that has just re-authenticated, so endpoints guarded by re-authentication answer."""
    account.token = await relay.login(account)
    reauth = await relay.call("POST", "/api/v1/auth/reauth", token=account.token, json={"password": account.password})
    assert reauth.status == 204
    return account


async def test_every_declared_endpoint_answers_with_the_headers(relay: Relay) -> None:
    accounts = {role: await relay.account(role.value, role, login=False)
                for role in (Role.ADMIN, Role.CLINICIAN, Role.AUDITOR)}
    for account in accounts.values():
        await signed_in(relay, account)
    statuses = set()
    for endpoint in all_endpoints():
        caller = next((a for role, a in accounts.items() if endpoint.roles and role in endpoint.roles),
                      accounts[Role.ADMIN])
        anonymous = await request(relay, endpoint, None)
        assert_secure(anonymous)
        authenticated = await request(relay, endpoint, caller.token)
        assert_secure(authenticated)
        statuses |= {anonymous.status, authenticated.status}
        if (await relay.call("GET", "/api/v1/me", token=caller.token)).status == 401:
            await signed_in(relay, caller)
    assert {200, 401} <= statuses


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/no/such/page", 404),
    ("GET", "/api/v1/nothing-here", 404),
    ("PUT", "/healthz", 405),
    ("DELETE", "/api/v1/auth/login", 405),
    ("GET", "/api/v1/me", 401),
])
async def test_refusals_carry_the_headers(relay: Relay, method: str, path: str, status: int) -> None:
    response = await relay.call(method, path)
    assert response.status == status
    assert (await response.json())["error"]["code"]
    assert_secure(response)


async def test_bad_bodies_are_refused_with_the_headers(relay: Relay) -> None:
    login = "/api/v1/auth/login"
    malformed = await relay.call("POST", login, data=b"{not json", headers={"Content-Type": "application/json"})
    assert malformed.status == 422
    wrong_type = await relay.call("POST", login, data=b"x", headers={"Content-Type": "text/plain"})
    assert wrong_type.status == 415
    too_large = await relay.call("POST", login, data=b"x" * (relay.runtime.settings.max_json_body + 1),
                                 headers={"Content-Type": "application/json"})
    assert too_large.status == 413
    for response in (malformed, wrong_type, too_large):
        assert_secure(response)


async def test_tokens_travel_with_no_store(relay: Relay) -> None:
    account = await relay.account("carol", login=False)
    response = await relay.call("POST", "/api/v1/auth/login", json={
        "tenant": account.tenant, "username": account.username, "password": account.password})
    assert response.status == 201
    assert response.headers["Cache-Control"] == "no-store"
    assert_secure(response)


async def test_socketio_transport_carries_the_headers(relay: Relay) -> None:
    response = await relay.call("GET", "/socket.io/?EIO=4&transport=polling")
    assert_secure(response)


async def test_failed_login_error_carries_the_headers(relay: Relay) -> None:
    account: Account = await relay.account("dave", login=False)
    response = await relay.call("POST", "/api/v1/auth/login", json={
        "tenant": account.tenant, "username": account.username, "password": "not the password"})
    assert response.status == 401
    assert_secure(response)


@pytest.mark.skipif("scaleout" not in BACKENDS, reason="RELAY_TEST_BACKENDS excludes scaleout")
async def test_server_errors_during_a_database_outage_carry_the_headers(tmp_path: Path, postgres_schema: None) -> None:
    async with relay_behind_proxies(tmp_path) as (relay, database_proxy, _):
        admin = await relay.account("erin", Role.ADMIN)
        await database_proxy.stop()
        response = await relay.call("GET", "/api/v1/me", token=admin.token)
        assert response.status >= 500
        body = await response.json()
        assert body["error"]["code"] in {"internal_error", "unavailable"}
        assert "Traceback" not in await response.text()
        assert_secure(response)
