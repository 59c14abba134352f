"""Consults (second opinions) to a colleague or a specialty pool: the case travels sealed in the
consult's conversation, one clinician takes it, the requester sees every step live, and an
open pool consult nobody takes is offered round the pool."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from sqlalchemy import select

from relay.auth.principal import Role
from relay.storage.tables import audit_events, message_copies
from tests.support.chat import Connection, connected, message_id, open_text, recipients, seal_text, send_text
from tests.support.envelopes import Member, member
from tests.support.harness import Account, Relay

CONSULT_FIELDS = {"consult_id", "conversation_id", "state", "offered_to", "accepted_by", "escalation_level"}


async def call(relay: Relay, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
    response = await relay.call(method, path, token=token, json=body)
    return response.status, await response.json()


async def ask(relay: Relay, requester: Member, **target: Any) -> dict[str, Any]:
    status, body = await call(relay, "POST", "/api/v1/consults", requester.token, target)
    assert status == 201, body
    return dict(body)


async def step(relay: Relay, who: Member, consult: dict[str, Any], action: str) -> tuple[int, Any]:
    return await call(relay, "POST", f"/api/v1/consults/{consult['id']}/{action}", who.token)


async def pool_of(relay: Relay, admin: Account, *clinicians: Member, name: str = "dermatology on call") -> str:
    status, body = await call(relay, "POST", "/api/v1/pools", admin.token, {
        "name": name, "member_user_ids": [clinician.account.user_id for clinician in clinicians]})
    assert status == 201, body
    assert body["member_user_ids"] == [clinician.account.user_id for clinician in clinicians]
    return str(body["id"])


async def updated(connection: Connection, state: str) -> dict[str, Any]:
    """The next consult.updated event, which must carry ``state``."""
    event = await connection.next("consult.updated")
    assert set(event) == CONSULT_FIELDS
    assert event["state"] == state, event
    return event


def error(body: Any) -> str:
    return str(body["error"]["code"])


async def test_colleague_consult_goes_open_accepted_resolved_and_the_requester_sees_each_step_live(
        relay: Relay) -> None:
    alice, bob = await member(relay, "alice"), await member(relay, "bob")
    async with connected(relay, alice.token) as requester, connected(relay, bob.token) as colleague:
        consult = await ask(relay, alice, colleague_user_id=bob.account.user_id)
        assert consult | {"state": "open", "offered_to": bob.account.user_id, "accepted_by": None,
                          "requester_id": alice.account.user_id, "pool_id": None, "escalate_at": None} == consult
        for connection in (requester, colleague):
            event = await updated(connection, "open")
            assert event["consult_id"] == consult["id"] and event["conversation_id"] == consult["conversation_id"]
        room = consult["conversation_id"]
        assert (await colleague.next("conversation.updated"))["change"] == "created"

        sent = await send_text(relay, requester, alice.device, room, "case summary: rash on forearm, 3 days")
        assert sent["ok"], sent
        summary = await colleague.next("message.new")
        assert await open_text(bob.device, alice.device, summary["envelope"]) == \
            "case summary: rash on forearm, 3 days"

        status, body = await step(relay, bob, consult, "accept")
        assert status == 200 and body["state"] == "accepted" and body["accepted_by"] == bob.account.user_id
        assert (await updated(requester, "accepted"))["accepted_by"] == bob.account.user_id

        reply = await send_text(relay, colleague, bob.device, room, "looks like contact dermatitis")
        assert reply["ok"], reply
        assert await open_text(alice.device, bob.device, (await requester.next("message.new"))["envelope"]) == \
            "looks like contact dermatitis"

        status, body = await step(relay, bob, consult, "resolve")
        assert status == 200 and body["state"] == "resolved"
        await updated(requester, "resolved")
        await updated(colleague, "accepted")
        await updated(colleague, "resolved")

        closed = await send_text(relay, requester, alice.device, room, "one more thing")
        assert closed == {"ok": False, "error": closed["error"]} and closed["error"]["code"] == "consult_closed"
        status, body = await call(relay, "GET", f"/api/v1/conversations/{room}", alice.token)
        assert status == 200, "the conversation stays readable until its lifespan ends"

    status, body = await call(relay, "GET", f"/api/v1/consults/{consult['id']}", bob.token)
    assert status == 200 and body["state"] == "resolved" and body["accepted_by"] == bob.account.user_id
    status, body = await call(relay, "GET", "/api/v1/consults", alice.token)
    assert [found["id"] for found in body["consults"]] == [consult["id"]]


async def test_pool_consult_reaches_every_member_and_once_taken_the_others_lose_it(relay: Relay) -> None:
    admin = await relay.account("root", Role.ADMIN)
    alice = await member(relay, "alice")
    derms = [await member(relay, f"derm{n}") for n in range(3)]
    pool_id = await pool_of(relay, admin, *derms)
    status, body = await call(relay, "GET", "/api/v1/pools", alice.token)
    assert status == 200 and [pool["id"] for pool in body["pools"]] == [pool_id]

    async with (connected(relay, alice.token) as requester, connected(relay, derms[0].token) as d0,
                connected(relay, derms[1].token) as d1, connected(relay, derms[2].token) as d2):
        devices = {derms[0].account.user_id: d0, derms[1].account.user_id: d1, derms[2].account.user_id: d2}
        consult = await ask(relay, alice, pool_id=pool_id)
        assert consult["offered_to"] == derms[0].account.user_id and consult["escalate_at"] is not None
        for connection in (requester, d0, d1, d2):
            assert (await updated(connection, "open"))["offered_to"] == derms[0].account.user_id
        room = consult["conversation_id"]

        stale = await recipients(relay, alice.token, room)
        assert {view["id"] for view in stale} == {alice.device.id, *(derm.device.id for derm in derms)}
        sent = await send_text(relay, requester, alice.device, room, "sealed case summary")
        assert sent["ok"] and sorted(sent["result"]["recipients"]) == sorted(derm.device.id for derm in derms)
        for derm, connection in zip(derms, (d0, d1, d2), strict=True):
            event = await connection.next("message.new")
            assert await open_text(derm.device, alice.device, event["envelope"]) == "sealed case summary"

        first, second = await asyncio.gather(step(relay, derms[1], consult, "accept"),
                                             step(relay, derms[2], consult, "accept"))
        outcomes = sorted([first, second], key=lambda outcome: outcome[0])
        assert [status for status, _ in outcomes] == [200, 409], outcomes
        assert error(outcomes[1][1]) == "consult_taken"
        winner_id = outcomes[0][1]["accepted_by"]
        winner = next(derm for derm in derms if derm.account.user_id == winner_id)
        losers = [derm for derm in derms if derm is not winner]

        taken = await updated(requester, "accepted")
        assert taken["accepted_by"] == winner_id
        for loser in losers:
            assert (await updated(devices[loser.account.user_id], "accepted"))["accepted_by"] == winner_id
            changes = [await devices[loser.account.user_id].next("conversation.updated") for _ in range(2)]
            assert [change["change"] for change in changes] == ["created", "member_removed"]
            change = changes[1]
            assert sorted(change["user_ids"]) == sorted(derm.account.user_id for derm in losers)

        async with relay.runtime.database.read() as connection:
            waiting = (await connection.execute(select(message_copies.c.device_id).where(
                message_copies.c.message_id == sent["result"]["message_id"]))).all()
        assert [row.device_id for row in waiting] == [winner.device.id], "what waited for the others was purged"

        refused = await requester.call("message.send", {
            "conversation_id": room, "message_id": message_id(),
            "envelope": await seal_text(alice.device, stale, "follow-up to everyone")})
        assert not refused["ok"] and refused["error"]["code"] == "recipient_not_member"
        assert sorted(refused["error"]["details"]["device_ids"]) == sorted(loser.device.id for loser in losers)
        follow_up = await send_text(relay, requester, alice.device, room, "follow-up")
        assert follow_up["ok"] and follow_up["result"]["recipients"] == [winner.device.id]

        for loser in losers:
            status, body = await step(relay, loser, consult, "accept")
            assert (status, error(body)) == (409, "consult_taken")
            status, body = await call(relay, "GET", f"/api/v1/conversations/{room}", loser.token)
            assert (status, error(body)) == (403, "not_member")
            status, body = await call(relay, "GET", f"/api/v1/consults/{consult['id']}", loser.token)
            assert status == 200 and body["state"] == "accepted" and body["accepted_by"] == winner_id


async def test_an_open_pool_consult_is_offered_round_the_pool_after_the_tenants_escalation_time(
        relay: Relay) -> None:
    admin = await relay.account("root", Role.ADMIN)
    status, body = await call(relay, "GET", "/api/v1/tenant/consult-escalation", admin.token)
    assert (status, body) == (200, {"seconds": None, "effective_seconds": 900})
    status, body = await call(relay, "PUT", "/api/v1/tenant/consult-escalation", admin.token, {"seconds": 120})
    assert (status, body) == (200, {"seconds": 120, "effective_seconds": 120})

    alice = await member(relay, "alice")
    on_call = [await member(relay, f"cardio{n}") for n in range(3)]
    pool_id = await pool_of(relay, admin, *on_call, name="cardiology")
    consult = await ask(relay, alice, pool_id=pool_id)
    path = f"/api/v1/consults/{consult['id']}"

    async def offered() -> tuple[str, int]:
        status, body = await call(relay, "GET", path, alice.token)
        assert status == 200, body
        return body["offered_to"], body["escalation_level"]

    async with connected(relay, alice.token) as requester:
        relay.clock.advance(119)
        await relay.runtime.messaging.sweep()
        assert await offered() == (on_call[0].account.user_id, 0)
        for level, turn in ((1, 1), (2, 2), (3, 0)):
            relay.clock.advance(121)
            await relay.runtime.messaging.sweep()
            assert await offered() == (on_call[turn].account.user_id, level)
            event = await updated(requester, "open")
            assert (event["offered_to"], event["escalation_level"]) == (on_call[turn].account.user_id, level)

    status, body = await step(relay, on_call[2], consult, "accept")
    assert status == 200 and body["escalate_at"] is None
    relay.clock.advance(600)
    await relay.runtime.messaging.sweep()
    status, body = await call(relay, "GET", path, alice.token)
    assert (body["state"], body["escalation_level"]) == ("accepted", 3)

    async with relay.runtime.database.read() as connection:
        rows = (await connection.execute(select(audit_events.c.details).where(
            audit_events.c.action == "consult.escalated", audit_events.c.object_id == consult["id"],
        ).order_by(audit_events.c.seq))).all()
    assert [json.loads(row.details)["escalation_level"] for row in rows] == [1, 2, 3]


async def test_a_colleague_consult_never_escalates_and_the_server_default_applies_without_a_tenant_time(
        relay: Relay) -> None:
    admin = await relay.account("root", Role.ADMIN)
    status, _ = await call(relay, "PUT", "/api/v1/tenant/consult-escalation", admin.token, {"seconds": None})
    assert status == 200
    alice, bob, carol = [await member(relay, name) for name in ("alice", "bob", "carol")]
    direct = await ask(relay, alice, colleague_user_id=bob.account.user_id)
    pooled = await ask(relay, alice, pool_id=await pool_of(relay, admin, bob, carol))
    relay.clock.advance(899)
    await relay.runtime.messaging.sweep()
    relay.clock.advance(2)
    await relay.runtime.messaging.sweep()
    await alice.log_in_again(relay)
    for consult, offered_to, level in ((direct, bob, 0), (pooled, carol, 1)):
        status, body = await call(relay, "GET", f"/api/v1/consults/{consult['id']}", alice.token)
        assert (body["offered_to"], body["escalation_level"]) == (offered_to.account.user_id, level)


async def test_the_requester_cancels_and_nothing_more_happens_to_the_consult(relay: Relay) -> None:
    alice, bob = await member(relay, "alice"), await member(relay, "bob")
    consult = await ask(relay, alice, colleague_user_id=bob.account.user_id)
    status, body = await step(relay, bob, consult, "cancel")
    assert (status, error(body)) == (403, "consult_forbidden")

    async with connected(relay, bob.token) as colleague:
        status, body = await step(relay, alice, consult, "cancel")
        assert status == 200 and body["state"] == "cancelled"
        await updated(colleague, "cancelled")
        refused = await send_text(relay, colleague, bob.device, consult["conversation_id"], "too late?")
        assert not refused["ok"] and refused["error"]["code"] == "consult_closed"

    for who, action in ((alice, "cancel"), (bob, "accept"), (alice, "resolve")):
        status, body = await step(relay, who, consult, action)
        assert (status, error(body)) == (409, "consult_closed"), action

    accepted = await ask(relay, alice, colleague_user_id=bob.account.user_id)
    assert (await step(relay, bob, accepted, "accept"))[0] == 200
    status, body = await step(relay, alice, accepted, "cancel")
    assert status == 200 and body["state"] == "cancelled" and body["accepted_by"] == bob.account.user_id


async def test_another_tenants_consults_and_pools_are_not_found(relay: Relay) -> None:
    admin = await relay.account("root", Role.ADMIN)
    alice, bob = await member(relay, "alice"), await member(relay, "bob")
    pool_id = await pool_of(relay, admin, bob)
    consult = await ask(relay, alice, pool_id=pool_id)
    outsider = await member(relay, "mallory", tenant="elsewhere")
    other_admin = await relay.account("root", Role.ADMIN, tenant="elsewhere")

    status, body = await call(relay, "GET", f"/api/v1/consults/{consult['id']}", outsider.token)
    assert (status, error(body)) == (404, "consult_not_found")
    for action in ("accept", "resolve", "cancel"):
        status, body = await step(relay, outsider, consult, action)
        assert (status, error(body)) == (404, "consult_not_found"), action
    status, body = await call(relay, "POST", "/api/v1/consults", outsider.token, {"pool_id": pool_id})
    assert (status, error(body)) == (404, "pool_not_found")
    status, body = await call(relay, "POST", "/api/v1/consults", outsider.token,
                              {"colleague_user_id": bob.account.user_id})
    assert (status, error(body)) == (422, "unknown_members")
    status, body = await call(relay, "PUT", f"/api/v1/pools/{pool_id}/members", other_admin.token,
                              {"member_user_ids": [outsider.account.user_id]})
    assert (status, error(body)) == (404, "pool_not_found")
    for path in ("/api/v1/consults", "/api/v1/pools"):
        status, body = await call(relay, "GET", path, outsider.token)
        assert status == 200 and consult["id"] not in json.dumps(body) and pool_id not in json.dumps(body)
    status, body = await call(relay, "POST", "/api/v1/pools", other_admin.token,
                              {"name": "dermatology on call", "member_user_ids": [outsider.account.user_id]})
    assert status == 201, "pool names are unique per tenant only"


async def test_only_the_right_people_take_each_step(relay: Relay) -> None:
    admin = await relay.account("root", Role.ADMIN)
    alice, bob, carol, dave = [await member(relay, name) for name in ("alice", "bob", "carol", "dave")]
    consult = await ask(relay, alice, pool_id=await pool_of(relay, admin, bob, carol))

    status, body = await step(relay, dave, consult, "accept")
    assert (status, error(body)) == (403, "not_consult_member")
    status, body = await call(relay, "GET", f"/api/v1/consults/{consult['id']}", dave.token)
    assert (status, error(body)) == (403, "not_consult_member")
    assert (await call(relay, "GET", "/api/v1/consults", dave.token))[1] == {"consults": []}
    status, body = await step(relay, alice, consult, "accept")
    assert (status, error(body)) == (403, "consult_forbidden")
    status, body = await step(relay, carol, consult, "resolve")
    assert (status, error(body)) == (403, "consult_forbidden")
    status, body = await step(relay, alice, consult, "resolve")
    assert (status, error(body)) == (409, "consult_not_accepted")

    assert (await step(relay, bob, consult, "accept"))[0] == 200
    status, body = await step(relay, carol, consult, "resolve")
    assert (status, error(body)) == (403, "consult_forbidden")
    status, body = await step(relay, alice, consult, "resolve")
    assert status == 200 and body["state"] == "resolved"


async def test_bad_pool_and_consult_requests_get_a_clear_code(relay: Relay) -> None:
    admin = await relay.account("root", Role.ADMIN)
    alice, bob = await member(relay, "alice"), await member(relay, "bob")
    solo = await pool_of(relay, admin, alice, name="alice alone")
    cases: list[tuple[str, str, str, Any, int, str]] = [
        ("POST", "/api/v1/consults", alice.token, {}, 422, "invalid_request"),
        ("POST", "/api/v1/consults", alice.token, {"colleague_user_id": bob.account.user_id, "pool_id": solo},
         422, "invalid_request"),
        ("POST", "/api/v1/consults", alice.token, {"colleague_user_id": alice.account.user_id}, 422,
         "invalid_consult_target"),
        ("POST", "/api/v1/consults", alice.token, {"colleague_user_id": "not-an-id"}, 422, "invalid_request"),
        ("POST", "/api/v1/consults", alice.token, {"pool_id": solo}, 422, "pool_empty"),
        ("POST", "/api/v1/consults", alice.token, {"colleague_user_id": admin.user_id}, 422, "unknown_members"),
        ("POST", "/api/v1/consults", alice.token, {"colleague_user_id": bob.account.user_id, "lifespan_seconds": 5},
         422, "invalid_request"),
        ("POST", "/api/v1/consults", admin.token, {"colleague_user_id": bob.account.user_id}, 403, "role_forbidden"),
        ("POST", "/api/v1/pools", alice.token, {"name": "mine", "member_user_ids": [bob.account.user_id]}, 403,
         "role_forbidden"),
        ("POST", "/api/v1/pools", admin.token, {"name": "alice alone", "member_user_ids": [bob.account.user_id]},
         409, "pool_name_taken"),
        ("POST", "/api/v1/pools", admin.token, {"name": "twice", "member_user_ids": [bob.account.user_id] * 2},
         422, "duplicate_members"),
        ("POST", "/api/v1/pools", admin.token, {"name": "admins", "member_user_ids": [admin.user_id]}, 422,
         "unknown_members"),
        ("POST", "/api/v1/pools", admin.token, {"name": "", "member_user_ids": [bob.account.user_id]}, 422,
         "invalid_request"),
        ("POST", "/api/v1/pools", admin.token, {"name": "nobody", "member_user_ids": []}, 422, "invalid_request"),
        ("POST", "/api/v1/pools", admin.token, {"name": "crowd", "member_user_ids": [bob.account.user_id] * 65},
         422, "invalid_request"),
        ("PUT", f"/api/v1/pools/{solo}/members", admin.token, {"member_user_ids": ["0" * 32]}, 422,
         "unknown_members"),
        ("PUT", "/api/v1/tenant/consult-escalation", admin.token, {"seconds": 10}, 422, "invalid_request"),
        ("PUT", "/api/v1/tenant/consult-escalation", admin.token, {"seconds": 24 * 3600 + 1}, 422,
         "invalid_request"),
        ("PUT", "/api/v1/tenant/consult-escalation", admin.token, {"seconds": "600"}, 422, "invalid_request"),
        ("GET", "/api/v1/consults/unknown", alice.token, None, 404, "consult_not_found"),
    ]
    for method, path, token, body, status, code in cases:
        answer = await call(relay, method, path, token, body)
        assert answer[0] == status and error(answer[1]) == code, (method, path, body, answer)

    status, body = await call(relay, "PUT", f"/api/v1/pools/{solo}/members", admin.token,
                              {"member_user_ids": [bob.account.user_id, alice.account.user_id]})
    assert status == 200 and body["member_user_ids"] == [bob.account.user_id, alice.account.user_id]
    consult = await ask(relay, alice, pool_id=solo)
    assert consult["offered_to"] == bob.account.user_id, "the requester is never offered their own consult"
