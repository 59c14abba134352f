"""/healthz, /readyz and /metrics as an operator and a monitoring system use them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from relay.auth.principal import Role
from tests.support.backends import BACKENDS
from tests.support.harness import Relay
from tests.support.tcp_proxy import relay_behind_proxies

needs_scaleout = pytest.mark.skipif("scaleout" not in BACKENDS, reason="RELAY_TEST_BACKENDS excludes scaleout")


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples]


async def test_healthz_answers(relay: Relay) -> None:
    response = await relay.call("GET", "/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}


async def test_readyz_reports_each_backend(relay: Relay) -> None:
    response = await relay.call("GET", "/readyz")
    assert response.status == 200
    expected = {"database": "ok", "redis": "ok"} if relay.runtime.redis is not None else {"database": "ok"}
    assert await response.json() == {"status": "ready", "checks": expected}


async def test_metrics_count_requests_by_route_template(relay: Relay) -> None:
    admin = await relay.account("admin", Role.ADMIN)
    for _ in range(3):
        assert (await relay.call("GET", f"/api/v1/users/{admin.user_id}", token=admin.token)).status == 200
    assert (await relay.call("GET", "/no/such/page")).status == 404

    response = await relay.call("GET", "/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    text = await response.text()
    found = samples(text)
    assert ("relay_http_requests_total",
            {"method": "GET", "route": "/api/v1/users/{user_id}", "status": "2xx"}, 3.0) in found
    assert ("relay_http_requests_total", {"method": "GET", "route": "unmatched", "status": "4xx"}, 1.0) in found
    assert admin.user_id not in text and admin.tenant_id not in text


async def test_metrics_never_hold_usernames_passwords_or_tokens(relay: Relay) -> None:
    account = await relay.account("zebediah.quartermain", tenant="saint-elsewhere-hospital")
    await relay.login(account)
    failed = await relay.call("POST", "/api/v1/auth/login", json={
        "tenant": account.tenant, "username": account.username, "password": "wrong-Secret-Passphrase-42"})
    assert failed.status == 401
    unknown = await relay.call("POST", "/api/v1/auth/login", json={
        "tenant": account.tenant, "username": "nobody.atall", "password": "another-Secret-Phrase-77"})
    assert unknown.status == 401

    text = await (await relay.call("GET", "/metrics")).text()
    samples(text)
    for secret in ("zebediah", "quartermain", "saint-elsewhere", account.password, "wrong-Secret-Passphrase-42",
                   "nobody.atall", "another-Secret-Phrase-77", account.token, account.user_id):
        assert secret not in text
    logins = {labels["outcome"]: value for name, labels, value in samples(text) if name == "relay_logins_total"}
    assert sum(logins.values()) >= 4


async def readiness(relay: Relay) -> tuple[int, dict[str, Any]]:
    response = await relay.call("GET", "/readyz")
    return response.status, await response.json()


@needs_scaleout
async def test_readyz_names_redis_when_it_stops_answering(tmp_path: Path, postgres_schema: None) -> None:
    async with relay_behind_proxies(tmp_path) as (relay, _, redis_proxy):
        assert await readiness(relay) == (200, {"status": "ready", "checks": {"database": "ok", "redis": "ok"}})
        await redis_proxy.stop()
        status, body = await readiness(relay)
        assert status == 503
        assert body["status"] == "unavailable"
        assert body["checks"]["database"] == "ok" and body["checks"]["redis"] != "ok"
        assert (await relay.call("GET", "/healthz")).status == 200

        await redis_proxy.start()
        assert await readiness(relay) == (200, {"status": "ready", "checks": {"database": "ok", "redis": "ok"}})


@needs_scaleout
async def test_readyz_names_the_database_when_it_stops_answering(tmp_path: Path, postgres_schema: None) -> None:
    async with relay_behind_proxies(tmp_path) as (relay, database_proxy, _):
        assert (await readiness(relay))[0] == 200
        await database_proxy.stop()
        status, body = await readiness(relay)
        assert status == 503
        assert body["status"] == "unavailable"
        assert body["checks"]["redis"] == "ok" and body["checks"]["database"] != "ok"
        assert (await relay.call("GET", "/healthz")).status == 200

        await database_proxy.start()
        assert await readiness(relay) == (200, {"status": "ready", "checks": {"database": "ok", "redis": "ok"}})


@needs_scaleout
async def test_a_relay_whose_database_stopped_answering_still_shuts_down(tmp_path: Path, postgres_schema: None) -> None:
    async with relay_behind_proxies(tmp_path) as (relay, database_proxy, _):
        alice = await relay.account("alice")
        assert (await relay.call("GET", "/api/v1/me", token=alice.token)).status == 200, "activity waits to be written"
        await database_proxy.stop()
