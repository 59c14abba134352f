"""The socket.io protocol itself: every client event is documented, every mistake gets an
error acknowledgement with a code while the socket stays up, a session that ends closes its
open sockets at once, socket events count as the session's activity, and a peer that stops
answering heartbeats is dropped."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
import socketio

from relay.auth.principal import Role
from relay.messaging.events import CLIENT_EVENTS
from tests.support.chat import connected, conversation, message_id, recipients, seal_text, until_closed
from tests.support.devices import register_device
from tests.support.envelopes import member
from tests.support.harness import Relay

REALTIME = Path(__file__).resolve().parents[1] / "docs" / "realtime.md"


def section(title: str) -> str:
    text = REALTIME.read_text()
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start: end if end != -1 else None]


def documented_rows(title: str) -> dict[str, str]:
    return {match[0]: match[1] for match in re.findall(r"^\| `([^`]+)` \|(.*)$", section(title), flags=re.MULTILINE)}


def test_every_client_event_and_each_of_its_fields_is_documented() -> None:
    rows = documented_rows("Client → server events")
    assert set(rows) == set(CLIENT_EVENTS), "docs/realtime.md and relay/messaging/events.py disagree"
    for name, event in CLIENT_EVENTS.items():
        payload_column = rows[name].split("|")[0]
        for field in event.payload.model_fields:
            assert f"`{field}`" in payload_column, f"docs/realtime.md: {name} does not describe `{field}`"


def test_every_server_event_is_documented() -> None:
    from relay.camera.notifier import BLOB_AVAILABLE
    from relay.messaging.conversations import CONVERSATION_UPDATED
    from relay.messaging.messages import MESSAGE_DELETED, MESSAGE_RECEIPT
    from relay.messaging.queue import MESSAGE_NEW
    from relay.portal.lifecycle import INVITATION_UPDATED

    emitted = {BLOB_AVAILABLE, CONVERSATION_UPDATED, MESSAGE_DELETED, MESSAGE_RECEIPT, MESSAGE_NEW, "device_revoked",
               "session_ended", "consult.updated", INVITATION_UPDATED}
    assert emitted <= set(documented_rows("Server → client events"))


async def test_mistakes_get_error_codes_and_the_socket_stays_up(relay: Relay) -> None:
    alice, bob, eve = await member(relay, "alice"), await member(relay, "bob"), await member(relay, "eve")
    room = await conversation(relay, alice, [bob])
    elsewhere = await conversation(relay, bob, [eve])
    envelope = await seal_text(alice.device, await recipients(relay, alice.token, room), "hello")
    good = {"conversation_id": room, "message_id": message_id(), "envelope": envelope}
    async with connected(relay, alice.token) as socket:
        async def code_of(event: str, *payload: object) -> str:
            answer = await socket.client.call(event, payload[0] if len(payload) == 1 else payload, timeout=10) \
                if payload else await socket.client.call(event, timeout=10)
            assert answer["ok"] is False, answer
            return str(answer["error"]["code"])

        assert await code_of("message.delete_everything", {}) == "unknown_event"
        assert await code_of("message.send", good | {"envelope": "not bytes"}) == "invalid_payload"
        assert await code_of("message.send", {"conversation_id": room}) == "invalid_payload"
        assert await code_of("message.send", good | {"surprise": 1}) == "invalid_payload"
        assert await code_of("message.send", "a string") == "invalid_payload"
        assert await code_of("message.ack", {"message_ids": []}) == "invalid_payload"
        assert await code_of("message.send", good | {"envelope": b"RLYE\x01" + b"\x00" * 40}) == "invalid_envelope"
        oversize = b"\x00" * (relay.runtime.settings.max_message_bytes + 1)
        assert await code_of("message.send", good | {"envelope": oversize}) == "message_too_large"
        assert await code_of("message.send", good | {"conversation_id": elsewhere}) == "not_member"
        assert await code_of("message.send", good | {"conversation_id": "0" * 32}) == "conversation_not_found"
        assert await code_of("message.recall", {"message_id": message_id()}) == "message_not_found"
        bobs = await seal_text(bob.device, await recipients(relay, bob.token, room), "forged sender")
        assert await code_of("message.send", good | {"envelope": bobs}) == "sender_mismatch"
        to_eve = await seal_text(alice.device, [bob.device.view, eve.device.view], "to eve too")
        assert await code_of("message.send", good | {"envelope": to_eve}) == "recipient_not_member"
        phone = await register_device(relay, alice.account.token, name="phone")
        answer = await socket.call("message.send", good)
        assert answer["error"]["code"] == "recipients_incomplete"
        assert answer["error"]["details"] == {"missing": [phone.id]}
        far_future = relay.runtime.clock.now() + timedelta(days=3650)
        assert await relay.runtime.spool.sweep(far_future) == [], "no refused send left ciphertext in the spool"
        good["envelope"] = await seal_text(alice.device, await recipients(relay, alice.token, room), "hello")
        assert (await socket.call("message.send", good))["ok"], "the same socket still works"


async def test_a_logout_closes_that_sessions_sockets_at_once(relay: Relay) -> None:
    alice = await member(relay, "alice")
    other_session = await relay.login(alice.account, device_id=alice.device.id)
    async with connected(relay, alice.token) as socket, connected(relay, other_session) as other:
        assert (await relay.call("POST", "/api/v1/auth/logout", token=alice.token)).status == 204
        assert await socket.next("session_ended") == {"code": "invalid_token"}
        await until_closed(socket)
        assert (await other.result("queue.fetch", {}))["messages"] == [], "the device's other session goes on"
        assert other.pending("session_ended") == []


async def test_disabling_an_account_closes_its_sockets(relay: Relay) -> None:
    admin = await relay.account("root", Role.ADMIN)
    alice = await member(relay, "alice")
    async with connected(relay, alice.token) as socket:
        changed = await relay.call("PATCH", f"/api/v1/users/{alice.account.user_id}", token=admin.token,
                                   json={"disabled": True})
        assert changed.status == 200, await changed.text()
        assert await socket.next("session_ended") == {"code": "account_disabled"}
        await until_closed(socket)


async def test_socket_events_keep_the_session_alive_for_every_client_of_it(relay: Relay) -> None:
    alice = await member(relay, "alice")
    idle = relay.runtime.settings.session_idle_timeout
    async with connected(relay, alice.token) as socket:
        relay.clock.advance(30)
        assert (await socket.call("queue.fetch", {}))["ok"]
        relay.clock.advance(idle - 5)
        assert (await relay.call("GET", "/api/v1/me", token=alice.token)).status == 200, "the socket's event counted"
        relay.clock.advance(idle - 5)
        assert (await socket.call("queue.fetch", {}))["ok"], "and a REST call counts for the socket"
        relay.clock.advance(idle + 1)
        answer = await socket.call("queue.fetch", {})
        assert answer["error"]["code"] == "session_expired"
        await until_closed(socket)
    assert (await relay.call("GET", "/api/v1/me", token=alice.token)).status == 401


async def test_a_sockets_activity_outlives_a_restart(make_settings, clock) -> None:  # type: ignore[no-untyped-def]
    from tests.support.harness import running_relay

    settings = make_settings()
    async with running_relay(settings, clock) as relay:
        alice = await member(relay, "alice")
        async with connected(relay, alice.token) as socket:
            relay.clock.advance(30)
            assert (await socket.call("queue.fetch", {}))["ok"]
    async with running_relay(settings, clock) as relay:
        relay.clock.advance(settings.session_idle_timeout - 5)
        assert (await relay.call("GET", "/api/v1/me", token=alice.token)).status == 200


async def test_an_active_socket_still_ends_at_the_sessions_lifetime(relay: Relay) -> None:
    alice = await member(relay, "alice")
    settings = relay.runtime.settings
    step, elapsed = settings.session_idle_timeout // 2, 0
    async with connected(relay, alice.token) as socket:
        while elapsed + step < settings.session_lifetime:
            relay.clock.advance(step)
            elapsed += step
            assert (await socket.call("queue.fetch", {}))["ok"]
        relay.clock.advance(settings.session_lifetime - elapsed)
        answer = await socket.call("queue.fetch", {})
        assert answer["error"]["code"] == "session_expired"
        await until_closed(socket)


async def test_a_connection_sending_too_fast_is_told_to_wait(make_settings, clock) -> None:  # type: ignore[no-untyped-def]
    from tests.support.harness import running_relay

    async with running_relay(make_settings(socket_events_per_minute=3), clock) as relay:
        alice = await member(relay, "alice")
        async with connected(relay, alice.token) as socket:
            for _ in range(3):
                assert (await socket.call("queue.fetch", {}))["ok"]
            refused = await socket.call("queue.fetch", {})
            assert refused["error"]["code"] == "rate_limited" and 0 < refused["error"]["retry_after"] <= 60
            clock.advance(60)
            assert (await socket.call("queue.fetch", {}))["ok"], "a new minute, a new allowance"


async def test_a_peer_that_stops_answering_heartbeats_is_dropped(make_settings, clock) -> None:  # type: ignore[no-untyped-def]
    from tests.support.harness import running_relay

    async with running_relay(make_settings(socket_ping_interval=1, socket_ping_timeout=1), clock) as relay:
        alice = await member(relay, "alice")
        url = relay.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
        async with aiohttp.ClientSession() as http, http.ws_connect(url, autoping=False) as ws:
            opened = await ws.receive(timeout=5)
            assert opened.data.startswith("0")
            await ws.send_str("40" + json.dumps({"token": alice.token}))
            assert (await ws.receive(timeout=5)).data.startswith("40")
            assert (await ws.receive(timeout=5)).data == "2", "the server pings"
            closed = await asyncio.wait_for(_until_closed(ws), timeout=10)
            assert closed


async def _until_closed(ws: aiohttp.ClientWebSocketResponse) -> bool:
    while True:
        message = await ws.receive()
        if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
            return True


async def test_a_refused_connection_says_why_with_a_code(relay: Relay) -> None:
    alice = await member(relay, "alice")
    for auth, code in (({}, "missing_token"), ({"token": "not-a-token"}, "invalid_token"),
                       ({"token": alice.account.token}, "device_required")):
        client = socketio.AsyncClient(reconnection=False)
        refusals: asyncio.Queue[object] = asyncio.Queue()
        client.on("connect_error", refusals.put)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await client.connect(relay.url, auth=auth, transports=["websocket"], wait_timeout=10)
        refusal = await asyncio.wait_for(refusals.get(), 10)
        assert isinstance(refusal, dict) and refusal["data"] == {"code": code}, refusal
