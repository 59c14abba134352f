"""The audit log: every kind of tampering is named with its seq, the auditor reads only their own
tenant's events, and exports need a recent re-authentication."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import delete, insert, select, update

from relay.audit.actions import AuditAction
from relay.audit.chain import row_hash
from relay.audit.verify import Finding, Tampering, Verification, verify_chain
from relay.auth.principal import Role
from relay.storage.tables import audit_events, audit_head
from tests.support.harness import PASSWORD, Account, Relay


async def seed(relay: Relay) -> tuple[Account, Account]:
    """Real actions: logins, a user created through the API, a failed login; then an auditor."""
    admin = await relay.account("alice", Role.ADMIN)
    created = await relay.call("POST", "/api/v1/users", token=admin.token, json={
        "username": "carol", "display_name": "Carol", "role": "clinician", "password": PASSWORD})
    assert created.status == 201
    failed = await relay.call("POST", "/api/v1/auth/login", json={
        "tenant": "general", "username": "carol", "password": "not her passphrase"})
    assert failed.status == 401
    auditor = await relay.account("audrey", Role.AUDITOR)
    return admin, auditor


async def verify(relay: Relay) -> Verification:
    """Small batches, so every test also crosses batch boundaries."""
    return await verify_chain(relay.runtime.database, relay.runtime.keyring.audit_key, batch_size=2)


async def tamper(relay: Relay, *statements: Any) -> None:
    async with relay.runtime.database.transaction() as connection:
        for statement in statements:
            await connection.execute(statement)


async def rows(relay: Relay) -> list[Any]:
    async with relay.runtime.database.read() as connection:
        return list(await connection.execute(select(audit_events).order_by(audit_events.c.seq)))


async def seq_of(relay: Relay, action: str, outcome: str = "success") -> int:
    return next(row.seq for row in await rows(relay) if row.action == action and row.outcome == outcome)


async def test_intact_log_verifies_clean(relay: Relay) -> None:
    await seed(relay)
    stored = await rows(relay)
    result = await verify(relay)
    assert result.intact and result.findings == []
    assert result.rows == len(stored) and result.head_seq == stored[-1].seq
    assert result.head_label == f"{stored[-1].seq}:{stored[-1].hash[:32]}"


@pytest.mark.parametrize("change", [
    {"outcome": "success"},
    {"actor_id": "0" * 32},
    {"details": "{}"},
    {"action": "auth.logout"},
    {"hash": "f" * 64},
])
async def test_an_edited_row_is_named(relay: Relay, change: dict[str, str]) -> None:
    await seed(relay)
    hidden = await seq_of(relay, "auth.login", "failure")
    await tamper(relay, update(audit_events).where(audit_events.c.seq == hidden).values(**change))
    assert (await verify(relay)).findings == [Finding(Tampering.EDITED, hidden, hidden)]


async def test_a_deleted_middle_row_is_named(relay: Relay) -> None:
    await seed(relay)
    gone = await seq_of(relay, "user.created")
    await tamper(relay, delete(audit_events).where(audit_events.c.seq == gone))
    result = await verify(relay)
    assert result.findings == [Finding(Tampering.DELETED, gone, gone)]
    assert result.findings[0].line() == f"deleted: row {gone} missing"


async def test_deleted_rows_are_named_as_a_range(relay: Relay) -> None:
    await seed(relay)
    await tamper(relay, delete(audit_events).where(audit_events.c.seq.in_([3, 4, 5])))
    assert (await verify(relay)).findings == [Finding(Tampering.DELETED, 3, 5)]


async def test_a_forged_row_after_the_head_is_named_inserted(relay: Relay) -> None:
    await seed(relay)
    last = (await rows(relay))[-1]
    forged = {**last._mapping, "seq": last.seq + 1, "action": "auth.login", "outcome": "success",
              "prev_hash": last.hash}
    forged["hash"] = row_hash(b"not the audit key".ljust(32, b"!"), forged)
    await tamper(relay, insert(audit_events).values(**forged))
    result = await verify(relay)
    assert result.findings == [Finding(Tampering.INSERTED, last.seq + 1, last.seq + 1)]
    assert "not written by Relay" in result.findings[0].line()


async def test_a_forged_row_slipped_into_the_middle_is_named_inserted(relay: Relay) -> None:
    """The attacker makes room (renumbering the rows after it) and moves the head along."""
    await seed(relay)
    stored = await rows(relay)
    at, last = 4, stored[-1].seq
    renumber = [update(audit_events).where(audit_events.c.seq == seq).values(seq=seq + 1)
                for seq in range(last, at - 1, -1)]
    forged = {**stored[at - 1]._mapping, "actor_id": "0" * 32, "prev_hash": stored[at - 2].hash, "hash": "a" * 64}
    await tamper(relay, *renumber, insert(audit_events).values(**forged),
                 update(audit_head).values(seq=last + 1))
    assert (await verify(relay)).findings == [
        Finding(Tampering.INSERTED, at, at),
        Finding(Tampering.REORDERED, at + 1, last + 1, offset=-1),
    ]


@pytest.mark.parametrize("first, second", [(3, 6), (4, 5)])
async def test_swapped_rows_are_named_reordered(relay: Relay, first: int, second: int) -> None:
    await seed(relay)
    c = audit_events.c
    await tamper(relay,
                 update(audit_events).where(c.seq == first).values(seq=-1),
                 update(audit_events).where(c.seq == second).values(seq=first),
                 update(audit_events).where(c.seq == -1).values(seq=second))
    result = await verify(relay)
    assert result.findings == [
        Finding(Tampering.REORDERED, first, first, offset=second - first),
        Finding(Tampering.REORDERED, second, second, offset=first - second),
    ]
    assert result.findings[0].line() == f"reordered: row {first} holds the event written as row {second}"


async def test_deleting_the_last_rows_is_named_truncated(relay: Relay) -> None:
    await seed(relay)
    last = (await rows(relay))[-1].seq
    await tamper(relay, delete(audit_events).where(audit_events.c.seq > last - 2))
    result = await verify(relay)
    assert result.findings == [Finding(Tampering.TRUNCATED, last - 1, last)]
    assert result.findings[0].line().startswith(f"truncated: truncated after {last - 2}:")


async def test_auditor_reads_only_their_own_tenants_events(relay: Relay) -> None:
    _, auditor = await seed(relay)
    stranger = await relay.account("sam", Role.ADMIN, tenant="elsewhere")
    made = await relay.call("POST", "/api/v1/users", token=stranger.token, json={
        "username": "dave", "display_name": "Dave", "role": "clinician", "password": PASSWORD})
    dave = (await made.json())["id"]
    page = await events(relay, auditor, limit=500)
    assert {event["tenant_id"] for event in page["events"]} == {auditor.tenant_id}
    actions = [event["action"] for event in page["events"]]
    assert {"tenant.created", "user.created", "auth.login"} <= set(actions)
    text = json.dumps(page)
    assert stranger.user_id not in text and dave not in text and stranger.tenant_id not in text
    failed = await events(relay, auditor, action="auth.login", outcome="failure")
    assert [(event["object_type"], event["details"]) for event in failed["events"]] == \
        [("user", {"reason": "bad_password"})]
    assert (await events(relay, auditor, object_id=dave))["events"] == []


async def test_events_page_with_a_cursor_and_stop_at_their_snapshot(relay: Relay) -> None:
    _, auditor = await seed(relay)
    mine = [row.seq for row in await rows(relay) if row.tenant_id == auditor.tenant_id]
    seen: list[int] = []
    query: dict[str, Any] = {"limit": 1}
    for _ in range(len(mine) + 5):
        page = await events(relay, auditor, **query)
        seen += [event["seq"] for event in page["events"]]
        if page["next_after"] is None:
            break
        query = {"limit": 1, "after": page["next_after"], "through": page["through"]}
    assert seen == mine
    reads = await events(relay, auditor, action="audit.read", limit=500)
    assert len(reads["events"]) == len(mine)
    assert all(event["actor_id"] == auditor.user_id for event in reads["events"])


@pytest.mark.parametrize("query", ["limit=501", "limit=0", "after=-1", "action=no.such", "outcome=maybe",
                                   "since=2026-11-02T09:00:00", "since=2026-11-03T00:00:00Z&until=2026-11-02T00:00:00Z",
                                   "colour=blue"])
async def test_bad_event_queries_are_refused(relay: Relay, query: str) -> None:
    _, auditor = await seed(relay)
    response = await relay.call("GET", f"/api/v1/audit/events?{query}", token=auditor.token)
    assert response.status == 422
    assert (await response.json())["error"]["code"] == "invalid_query"


async def test_events_filter_by_time(relay: Relay) -> None:
    admin, auditor = await seed(relay)
    relay.clock.advance(120)
    later = relay.clock.now()
    await relay.call("POST", "/api/v1/auth/logout", token=admin.token)
    page = await events(relay, auditor, since=later.isoformat())
    assert [event["action"] for event in page["events"]] == ["auth.logout"]
    before = await events(relay, auditor, until=later.isoformat(), action="auth.logout")
    assert before["events"] == []


@pytest.mark.parametrize("role", [Role.CLINICIAN, Role.ADMIN])
@pytest.mark.parametrize("path", ["/api/v1/audit/events", "/api/v1/audit/verify", "/api/v1/audit/export"])
async def test_only_auditors_reach_the_audit_log(relay: Relay, role: Role, path: str) -> None:
    someone = await relay.account("casey", role)
    response = await relay.call("GET", path, token=someone.token)
    assert response.status == 403
    assert (await response.json())["error"]["code"] == "role_forbidden"


async def test_verification_over_the_api_reports_seqs_only(relay: Relay) -> None:
    _, auditor = await seed(relay)
    stranger = await relay.account("sam", Role.ADMIN, tenant="elsewhere")
    intact = await relay.call("GET", "/api/v1/audit/verify", token=auditor.token)
    assert intact.status == 200
    body = await intact.json()
    assert body["intact"] is True and body["finding_count"] == 0 and body["kinds"] == []
    assert body["rows"] == body["head_seq"] and body["head"].startswith(f"{body['head_seq']}:")
    theirs = next(row.seq for row in await rows(relay) if row.actor_id == stranger.user_id)
    await tamper(relay, delete(audit_events).where(audit_events.c.seq == theirs))
    response = await relay.call("GET", "/api/v1/audit/verify", token=auditor.token)
    report = await response.json()
    assert report["intact"] is False
    assert (report["finding_count"], report["first_bad_seq"], report["kinds"]) == (1, theirs, ["deleted"])
    assert stranger.user_id not in await response.text() and stranger.tenant_id not in await response.text()
    verified = await events(relay, auditor, action="audit.verified")
    assert [event["outcome"] for event in verified["events"]] == ["success", "failure"]


async def test_export_needs_a_recent_reauthentication(relay: Relay) -> None:
    _, auditor = await seed(relay)
    relay.clock.advance(relay.runtime.settings.reauth_window + 1)
    refused = await relay.call("GET", "/api/v1/audit/export", token=auditor.token)
    assert refused.status == 403
    assert (await refused.json())["error"]["code"] == "reauth_required"
    reauth = await relay.call("POST", "/api/v1/auth/reauth", token=auditor.token, json={"password": PASSWORD})
    assert reauth.status == 204
    exported = await relay.call("GET", "/api/v1/audit/export", token=auditor.token)
    assert exported.status == 200


async def test_export_streams_every_column_of_the_tenants_rows(relay: Relay) -> None:
    _, auditor = await seed(relay)
    stranger = await relay.account("sam", Role.ADMIN, tenant="elsewhere")
    response = await relay.call("GET", "/api/v1/audit/export", token=auditor.token)
    assert response.status == 200
    assert response.content_type == "application/x-ndjson"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith("attachment; filename=\"audit-export-") and "general" not in disposition
    lines = [json.loads(line) for line in (await response.text()).splitlines()]
    expected = [row for row in await rows(relay) if row.tenant_id == auditor.tenant_id]
    assert [line["seq"] for line in lines] == [row.seq for row in expected]
    assert set(lines[0]) == {column.name for column in audit_events.columns}
    assert lines[-1]["action"] == "audit.exported" and lines[-1]["actor_id"] == auditor.user_id
    assert stranger.user_id not in await response.text()
    key = relay.runtime.keyring.audit_key
    for line, row in zip(lines, expected):
        assert line["hash"] == row_hash(key, row._mapping) == row.hash


async def test_export_takes_a_time_range(relay: Relay) -> None:
    admin, auditor = await seed(relay)
    relay.clock.advance(120)
    since = relay.clock.now()
    await relay.call("POST", "/api/v1/auth/logout", token=admin.token)
    relay.clock.advance(60)
    until = relay.clock.now()
    response = await relay.call("GET", "/api/v1/audit/export", token=auditor.token,
                                params={"since": since.isoformat(), "until": until.isoformat()})
    assert [json.loads(line)["action"] for line in (await response.text()).splitlines()] == ["auth.logout"]


async def events(relay: Relay, auditor: Account, **query: Any) -> dict[str, Any]:
    response = await relay.call("GET", "/api/v1/audit/events", token=auditor.token,
                                params={name: str(value) for name, value in query.items()})
    assert response.status == 200, await response.text()
    return await response.json()


async def test_verification_over_the_api_checks_an_anchor(relay: Relay) -> None:
    _, auditor = await seed(relay)
    first = await (await relay.call("GET", "/api/v1/audit/verify", token=auditor.token)).json()
    kept = await relay.call("GET", "/api/v1/audit/verify", token=auditor.token, params={"anchor": first["head"]})
    assert (await kept.json())["intact"] is True
    seq, digest = first["head"].split(":")
    forged = f"{seq}:{'0' * len(digest)}"
    moved = await (await relay.call("GET", "/api/v1/audit/verify", token=auditor.token,
                                    params={"anchor": forged})).json()
    assert (moved["intact"], moved["kinds"], moved["first_bad_seq"]) == (False, ["anchor_mismatch"], int(seq))
    malformed = await relay.call("GET", "/api/v1/audit/verify", token=auditor.token, params={"anchor": "7:xyz"})
    assert malformed.status == 422


async def test_a_long_export_arrives_whole(relay: Relay) -> None:
    _, auditor = await seed(relay)
    async with relay.runtime.database.transaction() as connection:
        for _ in range(1100):
            await relay.runtime.audit.record(connection, AuditAction.DIRECTORY_READ, tenant_id=auditor.tenant_id,
                                             actor=("user", auditor.user_id), object_type="user",
                                             object_id=auditor.user_id)
    response = await relay.call("GET", "/api/v1/audit/export", token=auditor.token)
    lines = [json.loads(line) for line in (await response.text()).splitlines()]
    assert [line["seq"] for line in lines] == [row.seq for row in await rows(relay)
                                               if row.tenant_id == auditor.tenant_id]
    assert len(lines) > 1100
    assert (await verify_chain(relay.runtime.database, relay.runtime.keyring.audit_key)).intact
