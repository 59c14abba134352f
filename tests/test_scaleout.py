"""Two relay processes on different ports sharing PostgreSQL and Redis: a message sent through
one node reaches a device connected to the other, receipts flow back, and a device that
reconnects to the other node continues its queue where it stopped; a session ended through one
node closes its socket on the other."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from relay.settings import load_settings
from tests.support.backends import BACKENDS, POSTGRES_URL, REDIS_URL, clear_redis_namespace, reset_postgres
from tests.support.chat import connected, conversation, send_text, until_closed
from tests.support.clock import ManualClock
from tests.support.envelopes import member
from tests.support.harness import Relay, free_port, running_relay
from tests.support.subprocess_relay import ServedRelay, relay_env, serving

pytestmark = pytest.mark.skipif("scaleout" not in BACKENDS, reason="RELAY_TEST_BACKENDS leaves out scale-out")


@pytest.fixture
async def cluster(tmp_path: Path, postgres_schema: None) -> AsyncIterator[tuple[Relay, ServedRelay]]:
    """Node one in this process (the tests create accounts through it), node two a `relay serve`
    subprocess; both on the test database, one Redis namespace and one key file."""
    await reset_postgres()
    namespace, key_file = f"t{secrets.token_hex(6)}", tmp_path / "keys.json"
    shared = {"database_url": POSTGRES_URL, "redis_url": REDIS_URL, "redis_namespace": namespace,
              "key_file": key_file}
    settings = load_settings(shared | {"data_dir": tmp_path / "one", "port": free_port()}, environ={})
    try:
        async with running_relay(settings, ManualClock(datetime.now(UTC))) as one:
            env = relay_env({f"RELAY_{name.upper()}": str(value) for name, value in shared.items()}
                            | {"RELAY_DATA_DIR": str(tmp_path / "two"), "RELAY_PORT": str(free_port())})
            with serving(["serve"], env=env, cwd=tmp_path) as two:
                yield one, two
    finally:
        await clear_redis_namespace(namespace)


async def test_messages_and_receipts_cross_nodes_and_a_queue_follows_its_device(
    cluster: tuple[Relay, ServedRelay],
) -> None:
    one, two = cluster
    alice, bob = await member(one, "alice"), await member(one, "bob")
    room = await conversation(one, alice, [bob], kind="direct")
    async with connected(one, alice.token) as on_one, connected(one, bob.token, url=two.url) as on_two:
        sent = await send_text(one, on_one, alice.device, room, "from node one")
        assert sent["ok"], sent
        arrived = await on_two.next("message.new")
        assert arrived["message_id"] == sent["result"]["message_id"]
        await on_two.result("message.ack", {"message_ids": [arrived["message_id"]]})
        receipt = await on_one.next("message.receipt")
        assert (receipt["device_id"], receipt["status"]) == (bob.device.id, "delivered")

        queued = [(await send_text(one, on_one, alice.device, room, f"while bob is away {n}"))["result"]["message_id"]
                  for n in range(4)]
    async with connected(one, bob.token, url=two.url) as on_two:
        first = [(await on_two.next("message.new"))["message_id"] for _ in range(4)]
        assert first == queued
        await on_two.result("message.ack", {"message_ids": queued[:2]})
    async with connected(one, bob.token) as back_on_one:
        rest = [(await back_on_one.next("message.new"))["message_id"] for _ in range(2)]
        assert rest == queued[2:]
        assert back_on_one.pending("message.new") == []


async def test_a_logout_through_one_node_closes_the_sessions_socket_on_the_other(
    cluster: tuple[Relay, ServedRelay],
) -> None:
    one, two = cluster
    alice = await member(one, "alice")
    async with connected(one, alice.token, url=two.url) as on_two:
        assert (await one.call("POST", "/api/v1/auth/logout", token=alice.token)).status == 204
        assert await on_two.next("session_ended") == {"code": "invalid_token"}
        await until_closed(on_two)
