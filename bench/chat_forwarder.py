"""The chat benchmark's baseline: a bare python-socketio forwarder on aiohttp, nothing else.

    .venv/bin/python -m bench.chat_forwarder PORT

A client joins the rooms named in its ``auth`` (``{"rooms": [conversation ids]}``) on connect.
``message.send`` emits ``message.new`` with the same binary envelope to the conversation's room,
except the sender, and acknowledges; ``message.ack`` is acknowledged. The payloads have the
relay's shape (docs/realtime.md) so both servers move the same bytes. It tunes its garbage
collector as `relay serve` does, so neither server's figures hang on collection pauses the other
was spared.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

import socketio
from aiohttp import web

from relay.collector import tune_collector

MAX_PACKET = 4 * 262144


def forwarder_app() -> web.Application:
    server = socketio.AsyncServer(async_mode="aiohttp", cors_allowed_origins=None, max_http_buffer_size=MAX_PACKET,
                                  ping_interval=25, ping_timeout=20, logger=False, engineio_logger=False)
    sequence = count(1)
    devices: dict[str, str] = {}

    @server.event
    async def connect(sid: str, environ: dict[str, Any], auth: dict[str, Any] | None) -> None:
        auth = auth if isinstance(auth, dict) else {}
        devices[sid] = str(auth.get("device_id", sid))
        for room in auth.get("rooms", []):
            await server.enter_room(sid, room)

    @server.event
    async def disconnect(sid: str, reason: str) -> None:
        devices.pop(sid, None)

    @server.on("message.send")
    async def send(sid: str, data: dict[str, Any]) -> dict[str, Any]:
        sent_at = datetime.now(UTC)
        expires_at = sent_at + timedelta(days=7)
        await server.emit("message.new", {
            "seq": next(sequence), "message_id": data["message_id"], "conversation_id": data["conversation_id"],
            "sender_user_id": devices[sid], "sender_device_id": devices[sid], "sent_at": sent_at.isoformat(),
            "expires_at": expires_at.isoformat(), "envelope": data["envelope"], "blob_id": None,
        }, room=data["conversation_id"], skip_sid=sid)
        return {"ok": True, "result": {"message_id": data["message_id"], "sent_at": sent_at.isoformat(),
                                       "expires_at": expires_at.isoformat(), "recipients": []}}

    @server.on("message.ack")
    async def ack(sid: str, data: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "result": {"acknowledged": data["message_ids"]}}

    async def tuned(_: web.Application) -> None:
        tune_collector()

    app = web.Application()
    app.on_startup.append(tuned)
    server.attach(app, socketio_path="socket.io")
    app.router.add_get("/healthz", lambda request: web.Response(text="ok"))
    return app


def main() -> None:
    web.run_app(forwarder_app(), host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)


if __name__ == "__main__":
    main()
