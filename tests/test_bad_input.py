"""Bad input gets a clear 4xx with a machine-readable code, and nothing is stored."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from relay.auth.principal import Role
from relay.storage.tables import audit_events, users
from tests.support.harness import PASSWORD, Relay

GOOD = {"username": "carol", "display_name": "Carol", "role": "clinician", "password": PASSWORD}


async def counts(relay: Relay) -> tuple[int, int]:
    async with relay.runtime.database.read() as connection:
        return (await connection.scalar(select(func.count()).select_from(users)),
                await connection.scalar(select(func.count()).select_from(audit_events)))


@pytest.mark.parametrize(
    ("case", "send", "status", "code"),
    [
        ("malformed json", {"data": b'{"username": "carol",', "headers": {"Content-Type": "application/json"}},
         422, "malformed_json"),
        ("not an object", {"json": ["carol"]}, 422, "invalid_request"),
        ("wrong type", {"json": GOOD | {"role": 7}}, 422, "invalid_request"),
        ("number as string", {"json": GOOD | {"display_name": 12}}, 422, "invalid_request"),
        ("unknown field", {"json": GOOD | {"is_superuser": True}}, 422, "invalid_request"),
        ("missing field", {"json": {k: v for k, v in GOOD.items() if k != "password"}}, 422, "invalid_request"),
        ("unknown role", {"json": GOOD | {"role": "superuser"}}, 422, "invalid_request"),
        ("bad username", {"json": GOOD | {"username": "Carol Smith"}}, 422, "invalid_username"),
        ("weak password", {"json": GOOD | {"password": "short"}}, 422, "weak_password"),
        ("form body", {"data": {"username": "carol"}}, 415, "unsupported_media_type"),
        ("oversize", {"json": GOOD | {"display_name": "x" * 70000}}, 413, "body_too_large"),
        ("not utf-8", {"data": b'{"username": "\xff\xfe"}', "headers": {"Content-Type": "application/json"}},
         422, "malformed_json"),
    ],
)
async def test_bad_bodies_are_refused_and_nothing_is_stored(relay: Relay, case: str, send: dict, status: int,
                                                            code: str) -> None:
    admin = await relay.account("root", Role.ADMIN)
    before = await counts(relay)
    response = await relay.call("POST", "/api/v1/users", token=admin.token, **send)
    assert response.status == status, case
    body = await response.json()
    assert body["error"]["code"] == code, case
    assert body["error"]["message"]
    assert await counts(relay) == before, f"{case}: nothing may be stored"


async def test_validation_errors_name_the_field_but_never_echo_the_value(relay: Relay) -> None:
    admin = await relay.account("root", Role.ADMIN)
    response = await relay.call("POST", "/api/v1/users", token=admin.token,
                                json=GOOD | {"display_name": ["canary-phi-value"]})
    text = await response.text()
    assert response.status == 422
    assert "display_name" in text and "canary-phi-value" not in text


async def test_a_body_where_none_is_expected_is_refused(relay: Relay) -> None:
    alice = await relay.account("alice")
    response = await relay.call("POST", "/api/v1/auth/logout", token=alice.token, json={"everywhere": True})
    assert response.status == 422 and (await response.json())["error"]["code"] == "unexpected_body"
    assert (await relay.call("GET", "/api/v1/me", token=alice.token)).status == 200


async def test_unknown_routes_and_methods_answer_json_errors(relay: Relay) -> None:
    missing = await relay.call("GET", "/api/v1/nothing-here")
    assert missing.status == 404 and (await missing.json())["error"]["code"] == "not_found"
    wrong_method = await relay.call("PUT", "/api/v1/auth/login", json={})
    assert wrong_method.status == 405 and (await wrong_method.json())["error"]["code"] == "method_not_allowed"
    assert "POST" in wrong_method.headers["Allow"]


async def test_a_duplicate_username_is_a_conflict_and_the_first_user_is_untouched(relay: Relay) -> None:
    admin = await relay.account("root", Role.ADMIN)
    first = await relay.call("POST", "/api/v1/users", token=admin.token, json=GOOD)
    assert first.status == 201
    second = await relay.call("POST", "/api/v1/users", token=admin.token,
                              json=GOOD | {"display_name": "Impostor", "role": "admin"})
    assert second.status == 409 and (await second.json())["error"]["code"] == "username_taken"
    user = await (await relay.call("GET", f"/api/v1/users/{(await first.json())['id']}", token=admin.token)).json()
    assert user["display_name"] == "Carol" and user["role"] == "clinician"
