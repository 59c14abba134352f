"""`relay keys rotate`: a new key-encryption key, stored TOTP seeds re-sealed under it, unused
keys retired, while a running server keeps logging people in."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import pytest
from sqlalchemy import select, update

from relay.cli.main import main
from relay.keys.keyring import Keyring
from relay.keys.rotation import rotate_keys
from relay.settings import Settings
from relay.storage.tables import audit_events, users
from tests.support.harness import PASSWORD, Account, Relay
from tests.support.totp import code_at


async def enrol(relay: Relay, account: Account) -> str:
    begun = await (await relay.call("POST", "/api/v1/me/totp", token=account.token)).json()
    confirmed = await relay.call("POST", "/api/v1/me/totp/confirm", token=account.token,
                                 json={"code": code_at(begun["secret"], relay.clock.now())})
    assert confirmed.status == 200
    return str(begun["secret"])


async def login_with_code(relay: Relay, account: Account, secret: str) -> int:
    relay.clock.advance(30)
    response = await relay.call("POST", "/api/v1/auth/login", json={
        "tenant": account.tenant, "username": account.username, "password": account.password,
        "totp_code": code_at(secret, relay.clock.now())})
    return response.status


async def sealed_key_ids(relay: Relay) -> dict[str, str]:
    async with relay.runtime.database.read() as connection:
        rows = await connection.execute(select(users.c.username, users.c.totp_secret)
                                        .where(users.c.totp_secret.is_not(None)))
        return {row.username: Keyring.key_id_of(row.totp_secret) for row in rows}


def key_file(settings: Settings) -> dict[str, Any]:
    return json.loads(settings.effective_key_file.read_text())


async def run_cli(settings: Settings, monkeypatch: pytest.MonkeyPatch, *argv: str) -> int:
    """Run `relay ...` as an operator would on the server's shell, against the same data and database."""
    for name, value in (("RELAY_DATABASE_URL", settings.database_url), ("RELAY_REDIS_URL", settings.redis_url),
                        ("RELAY_REDIS_NAMESPACE", settings.redis_namespace)):
        if value:
            monkeypatch.setenv(name, value)
    umask = os.umask(0o022)
    os.umask(umask)
    try:
        return await asyncio.to_thread(main, ["--data-dir", str(settings.data_dir), *argv])
    finally:
        os.umask(umask)


async def test_rotate_reseals_secrets_while_the_server_keeps_serving(
    relay: Relay, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    alice = await relay.account("alice")
    bob = await relay.account("bob")
    alice_secret, bob_secret = await enrol(relay, alice), await enrol(relay, bob)
    settings = relay.runtime.settings
    old_key = relay.runtime.keyring.active_id
    assert await sealed_key_ids(relay) == {"alice": old_key, "bob": old_key}

    assert await run_cli(settings, monkeypatch, "keys", "rotate") == 0

    document = key_file(settings)
    new_key = document["active"]
    assert new_key != old_key and [kek["id"] for kek in document["keks"]] == [new_key]
    assert os.stat(settings.effective_key_file).st_mode & 0o777 == 0o600
    assert await sealed_key_ids(relay) == {"alice": new_key, "bob": new_key}
    printed = capsys.readouterr().out
    assert f"new active key-encryption key: {new_key}" in printed
    assert "re-sealed 2 value(s) of users.totp_secret" in printed
    assert f"retired keys: {old_key}" in printed
    assert alice_secret not in printed and PASSWORD not in printed

    assert await login_with_code(relay, alice, alice_secret) == 201
    assert await login_with_code(relay, bob, bob_secret) == 201
    carol = await relay.account("carol")
    carol_secret = await enrol(relay, carol)
    assert (await sealed_key_ids(relay))["carol"] == new_key
    assert await login_with_code(relay, carol, carol_secret) == 201

    async with relay.runtime.database.read() as connection:
        row = (await connection.execute(
            select(audit_events).where(audit_events.c.action == "keys.rotated"))).one()
    assert row.actor_type == "operator" and row.object_id == new_key
    assert json.loads(row.details) == {"active_key": new_key, "retired_keys": old_key, "still_used_keys": "",
                                       "resealed": 2, "unreadable": 0}


async def test_rotating_again_retires_the_previous_key(relay: Relay, monkeypatch: pytest.MonkeyPatch) -> None:
    alice = await relay.account("alice")
    secret = await enrol(relay, alice)
    settings = relay.runtime.settings
    assert await run_cli(settings, monkeypatch, "keys", "rotate") == 0
    first = key_file(settings)["active"]
    assert await run_cli(settings, monkeypatch, "keys", "rotate") == 0
    second = key_file(settings)
    assert [kek["id"] for kek in second["keks"]] == [second["active"]] != [first]
    assert await login_with_code(relay, alice, secret) == 201


async def test_a_value_that_cannot_be_opened_is_left_alone_and_its_key_kept(relay: Relay) -> None:
    alice = await relay.account("alice")
    bob = await relay.account("bob")
    alice_secret = await enrol(relay, alice)
    await enrol(relay, bob)
    old_key = relay.runtime.keyring.active_id
    async with relay.runtime.database.transaction() as connection:
        blob = await connection.scalar(select(users.c.totp_secret).where(users.c.id == bob.user_id))
        damaged = blob[:-1] + bytes([blob[-1] ^ 1])
        await connection.execute(update(users).where(users.c.id == bob.user_id).values(totp_secret=damaged))

    runtime = relay.runtime
    report = await rotate_keys(runtime.database, runtime.keyring, runtime.audit, runtime.clock)

    assert {column: count for column, count in report.resealed.items() if count} == {"users.totp_secret": 1}
    assert {column: count for column, count in report.unreadable.items() if count} == {"users.totp_secret": 1}
    assert report.retired == [] and report.still_used == [old_key]
    document = key_file(runtime.settings)
    assert document["active"] == report.active_key
    assert {kek["id"] for kek in document["keks"]} == {old_key, report.active_key}
    assert await sealed_key_ids(relay) == {"alice": report.active_key, "bob": old_key}
    assert await login_with_code(relay, alice, alice_secret) == 201
