"""The socket.io server mounted on the aiohttp application.

Connections authenticate with a session token bound to a device; each socket joins its
device's room, so a revoked device is told to wipe its state and disconnected at once, on
whichever node holds its socket.
"""

from __future__ import annotations

from typing import Any

import socketio
from aiohttp import web

from relay.broker.contract import DEVICE_REVOKED
from relay.errors import ApiError
from relay.runtime import Runtime

NAMESPACE = "/"


def device_room(device_id: str) -> str:
    return f"device:{device_id}"


def create_socket_server(runtime: Runtime) -> socketio.AsyncServer:
    settings = runtime.settings
    manager = (
        socketio.AsyncRedisManager(settings.redis_url, channel=f"{settings.redis_namespace}:socketio")
        if settings.redis_url
        else None
    )
    server = socketio.AsyncServer(
        async_mode="aiohttp",
        client_manager=manager,
        cors_allowed_origins=None,
        max_http_buffer_size=settings.max_json_body,
        logger=False,
        engineio_logger=False,
    )

    @server.event
    async def connect(sid: str, environ: dict[str, Any], auth: dict[str, Any] | None) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        if not isinstance(token, str):
            raise socketio.exceptions.ConnectionRefusedError({"code": "missing_token"})
        try:
            principal = await runtime.sessions.authenticate(token)
        except ApiError as error:
            raise socketio.exceptions.ConnectionRefusedError({"code": error.code}) from None
        if principal.device_id is None:
            raise socketio.exceptions.ConnectionRefusedError({"code": "device_required"})
        await server.save_session(sid, {"principal": principal})
        await server.enter_room(sid, device_room(principal.device_id))

    async def on_device_revoked(event: dict[str, Any]) -> None:
        room = device_room(event["device_id"])
        await server.emit("device_revoked", {"device_id": event["device_id"], "wipe": True}, room=room)
        for sid in list(server.manager.get_participants(NAMESPACE, room)):
            await server.disconnect(sid[0] if isinstance(sid, tuple) else sid, namespace=NAMESPACE)

    runtime.broker.subscribe(DEVICE_REVOKED, on_device_revoked)
    runtime.camera.notifier.attach(SocketDeviceChannel(server))
    return server


class SocketDeviceChannel:
    """The camera relay's DeviceChannel: an emit to the device's room, which the Redis manager
    carries to whichever node holds the device's socket."""

    def __init__(self, server: socketio.AsyncServer) -> None:
        self._server = server

    async def to_device(self, device_id: str, event: str, payload: dict[str, Any]) -> None:
        await self._server.emit(event, payload, room=device_room(device_id), namespace=NAMESPACE)


def mount(server: socketio.AsyncServer, app: web.Application) -> None:
    server.attach(app, socketio_path="socket.io")
