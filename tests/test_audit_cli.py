"""`relay audit verify` and `relay audit export`, run as the operator runs them: the installed
command, in its own process, against the database of a running Relay."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select, update

from relay.audit.chain import row_hash
from relay.auth.principal import Role
from relay.settings import Settings
from relay.storage.tables import audit_events, audit_head
from tests.support.harness import PASSWORD, Relay


def operator_env(settings: Settings) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("RELAY_")}
    env["RELAY_DATA_DIR"] = str(settings.data_dir)
    for name in ("database_url", "redis_url", "redis_namespace"):
        value = getattr(settings, name)
        if value is not None:
            env[f"RELAY_{name.upper()}"] = str(value)
    return env


async def relay_cli(relay: Relay, *args: str) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).with_name("relay")), *args]
    return await asyncio.to_thread(
        subprocess.run, command, env=operator_env(relay.runtime.settings), cwd=relay.runtime.settings.data_dir,
        capture_output=True, text=True, timeout=120, check=False,
    )


async def seed(relay: Relay) -> None:
    admin = await relay.account("alice", Role.ADMIN)
    created = await relay.call("POST", "/api/v1/users", token=admin.token, json={
        "username": "carol", "display_name": "Carol", "role": "clinician", "password": PASSWORD})
    assert created.status == 201
    await relay.account("sam", Role.ADMIN, tenant="elsewhere")


async def rows(relay: Relay) -> list[Any]:
    async with relay.runtime.database.read() as connection:
        return list(await connection.execute(select(audit_events).order_by(audit_events.c.seq)))


async def test_verify_says_intact_and_prints_the_head(relay: Relay) -> None:
    await seed(relay)
    stored = await rows(relay)
    result = await relay_cli(relay, "audit", "verify")
    assert result.returncode == 0, result.stderr
    head = stored[-1]
    assert result.stdout == f"audit log intact: {len(stored)} rows, head {head.seq}:{head.hash[:32]}\n"
    recorded = (await rows(relay))[-1]
    assert (recorded.action, recorded.actor_type, recorded.outcome) == ("audit.verified", "operator", "success")


async def test_verify_exits_1_with_one_line_per_problem(relay: Relay) -> None:
    await seed(relay)
    stored = await rows(relay)
    edited, deleted = stored[2].seq, stored[5].seq
    async with relay.runtime.database.transaction() as connection:
        await connection.execute(update(audit_events).where(audit_events.c.seq == edited).values(outcome="failure"))
        await connection.execute(delete(audit_events).where(audit_events.c.seq == deleted))
    result = await relay_cli(relay, "audit", "verify")
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"edited: row {edited} altered after being written (HMAC does not verify)",
        f"deleted: row {deleted} missing",
    ]


async def test_a_truncation_reads_as_deleted_rows_once_verify_has_recorded_itself(relay: Relay) -> None:
    await seed(relay)
    last = (await rows(relay))[-1].seq
    async with relay.runtime.database.transaction() as connection:
        await connection.execute(delete(audit_events).where(audit_events.c.seq > last - 2))
    first = await relay_cli(relay, "audit", "verify")
    assert (first.returncode, first.stdout) == (
        1, f"truncated: truncated after {last - 2}: rows {last - 1}..{last} deleted from the end (the head records {last})\n")
    second = await relay_cli(relay, "audit", "verify")
    assert (second.returncode, second.stdout) == (1, f"deleted: rows {last - 1}..{last} missing\n")


async def test_an_external_anchor_catches_an_attacker_holding_the_key(relay: Relay) -> None:
    """Whoever has both the key file and the database can re-chain every row; only a head copied
    out of Relay earlier still shows the history changed."""
    await seed(relay)
    first = await relay_cli(relay, "audit", "verify")
    anchor = first.stdout.rsplit("head ", 1)[1].strip()
    key = relay.runtime.keyring.audit_key
    edited = next(row.seq for row in await rows(relay) if row.action == "user.created")
    async with relay.runtime.database.transaction() as connection:
        previous = ""
        for row in await connection.execute(select(audit_events).where(audit_events.c.seq >= edited)
                                            .order_by(audit_events.c.seq)):
            values = dict(row._mapping)
            if row.seq == edited:
                values["actor_id"] = "0" * 32
            else:
                values["prev_hash"] = previous
            previous = values["hash"] = row_hash(key, values)
            await connection.execute(update(audit_events).where(audit_events.c.seq == row.seq).values(**values))
        await connection.execute(update(audit_head).values(hash=previous))
    rechained = await relay_cli(relay, "audit", "verify")
    assert rechained.returncode == 0 and rechained.stdout.startswith("audit log intact:")
    anchored = await relay_cli(relay, "audit", "verify", "--anchor", anchor)
    assert anchored.returncode == 1
    seq = anchor.split(":")[0]
    assert anchored.stdout == f"anchor_mismatch: anchored row {seq} is missing or differs from its anchor\n"


async def test_verify_refuses_a_malformed_anchor(relay: Relay) -> None:
    result = await relay_cli(relay, "audit", "verify", "--anchor", "12:xyz")
    assert result.returncode == 2
    assert "SEQ:HASH" in result.stderr


async def test_export_writes_one_tenants_rows_to_a_private_file(relay: Relay) -> None:
    await seed(relay)
    general = await relay.tenant("general")
    output = relay.runtime.settings.data_dir / "audit.jsonl"
    result = await relay_cli(relay, "audit", "export", "--tenant", "general", "--output", str(output))
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    expected = [row.seq for row in await rows(relay) if row.tenant_id == general]
    assert [line["seq"] for line in lines] == expected
    assert lines[-1]["action"] == "audit.exported" and lines[-1]["actor_type"] == "operator"
    assert stat.S_IMODE(output.stat().st_mode) == 0o600
    assert result.stderr == f"{len(lines)} audit row(s) written to {output}\n"


async def test_export_defaults_to_every_row_on_standard_output(relay: Relay) -> None:
    await seed(relay)
    result = await relay_cli(relay, "audit", "export")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["seq"] for line in lines] == [row.seq for row in await rows(relay)]
    tenants = {await relay.tenant("general"), await relay.tenant("elsewhere")}
    assert {line["tenant_id"] for line in lines} == tenants | {None}


async def test_export_takes_a_time_range(relay: Relay) -> None:
    await seed(relay)
    seeded = len(await rows(relay))
    start = relay.clock.now()
    relay.clock.advance(600)
    await relay.account("late", Role.CLINICIAN, login=False)
    later = relay.clock.now()
    result = await relay_cli(relay, "audit", "export", "--since", later.isoformat(),
                             "--until", (later + timedelta(seconds=1)).isoformat())
    assert [json.loads(line)["action"] for line in result.stdout.splitlines()] == ["user.created"]
    naive_utc = start.replace(tzinfo=None).isoformat()
    earlier = await relay_cli(relay, "audit", "export", "--since", naive_utc, "--until", later.isoformat())
    assert len(earlier.stdout.splitlines()) == seeded


async def test_export_names_an_unknown_tenant(relay: Relay) -> None:
    result = await relay_cli(relay, "audit", "export", "--tenant", "nope")
    assert result.returncode == 2
    assert result.stderr == "relay: no tenant 'nope'\n"
