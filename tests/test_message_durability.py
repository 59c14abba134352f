"""A relay process killed (SIGKILL) right after it acknowledged a send still delivers that
message once it is back. On the embedded database the ciphertext is written, not yet synced,
before the acknowledgement, and reaches the disk with its row at the next checkpoint
(docs/spool.md, Durability)."""

from __future__ import annotations

import signal
from datetime import UTC, datetime
from pathlib import Path

from tests.conftest import SettingsFactory
from tests.support.chat import connected, conversation, message_id, open_text, recipients, seal_text
from tests.support.clock import ManualClock
from tests.support.envelopes import member
from tests.support.harness import free_port, running_relay
from tests.support.subprocess_relay import relay_env, serving

BACKEND_SETTINGS = ("data_dir", "database_url", "redis_url", "redis_namespace")


async def test_a_relay_killed_right_after_acknowledging_a_send_delivers_the_message_when_back(
    make_settings: SettingsFactory, tmp_path: Path,
) -> None:
    settings, clock = make_settings(), ManualClock(datetime.now(UTC))
    async with running_relay(settings, clock) as relay:
        alice, bob = await member(relay, "alice"), await member(relay, "bob")
        room = await conversation(relay, alice, [bob], kind="direct")
        envelope = await seal_text(alice.device, await recipients(relay, alice.token, room), "killed after the ack")

    env = relay_env({f"RELAY_{name.upper()}": str(getattr(settings, name)) for name in BACKEND_SETTINGS
                     if getattr(settings, name) is not None} | {"RELAY_PORT": str(free_port())})
    with serving(["serve"], env=env, cwd=tmp_path) as served:
        async with connected(relay, alice.token, url=served.url) as sender:
            sent = await sender.result("message.send", {"conversation_id": room, "message_id": message_id(),
                                                        "envelope": envelope})
            served.process.send_signal(signal.SIGKILL)
            served.process.wait()

    async with running_relay(settings, clock) as relay, connected(relay, bob.token) as recipient:
        arrived = await recipient.next("message.new")
        assert arrived["message_id"] == sent["message_id"]
        assert await open_text(bob.device, alice.device, arrived["envelope"]) == "killed after the ack"
        assert await recipient.result("message.ack", {"message_ids": [arrived["message_id"]]}) == {
            "acknowledged": [arrived["message_id"]]}
