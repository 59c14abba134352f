"""The socket.io server mounted on the aiohttp application.

Connections authenticate with a session token bound to a device; each socket joins its
device's room and its user's room, so events reach every connection of a device or a user on
whichever node holds it (on scale-out, python-socketio's Redis manager carries them). On every
connection the device's queue is pushed first, oldest first. Every client event re-checks the
session, so a logout or a disabled account takes effect on open sockets too; a revoked device
is told to wipe its state and disconnected at once.
"""

from __future__ import annotations

import logging
from typing import Any

import socketio
from aiohttp import web

from relay.auth.principal import Principal
from relay.broker.contract import DEVICE_REVOKED
from relay.errors import ApiError
from relay.messaging.events import InvalidPayload, dispatch, error_ack
from relay.messaging.queue import MESSAGE_NEW
from relay.runtime import Runtime

NAMESPACE = "/"
BACKLOG_PAGE = 200
BUFFER_FACTOR = 4
log = logging.getLogger(__name__)


def device_room(device_id: str) -> str:
    return f"device:{device_id}"


def user_room(user_id: str) -> str:
    return f"user:{user_id}"


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
        max_http_buffer_size=max(settings.max_json_body, BUFFER_FACTOR * settings.max_message_bytes),
        ping_interval=settings.socket_ping_interval,
        ping_timeout=settings.socket_ping_timeout,
        logger=False,
        engineio_logger=False,
    )
    messaging = runtime.messaging

    async def authenticate(token: object) -> Principal:
        if not isinstance(token, str):
            raise ApiError("connect with a session token", code="missing_token")
        principal = await runtime.sessions.authenticate(token)
        if principal.device_id is None:
            raise ApiError("the session is bound to no device", code="device_required")
        return principal

    @server.event
    async def connect(sid: str, environ: dict[str, Any], auth: dict[str, Any] | None) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        try:
            principal = await authenticate(token)
        except ApiError as error:
            raise socketio.exceptions.ConnectionRefusedError(error.message, {"code": error.code}) from None
        assert principal.device_id is not None
        await server.save_session(sid, {"token": token, "device_id": principal.device_id})
        await server.enter_room(sid, device_room(principal.device_id))
        await server.enter_room(sid, user_room(principal.id))
        server.start_background_task(push_backlog, sid, principal)

    async def push_backlog(sid: str, principal: Principal) -> None:
        after = 0
        try:
            while True:
                page = await messaging.messages.queued(principal, limit=BACKLOG_PAGE, after_seq=after)
                for payload in page:
                    await server.emit(MESSAGE_NEW, payload, to=sid, namespace=NAMESPACE)
                if len(page) < BACKLOG_PAGE:
                    return
                after = page[-1]["seq"]
        except Exception:
            log.exception("pushing a device's queue failed")

    @server.on("*")
    async def client_event(name: str, sid: str, data: Any = None, *extra: Any) -> dict[str, Any]:
        session = await server.get_session(sid)
        try:
            principal = await authenticate(session.get("token"))
            if principal.device_id != session.get("device_id"):
                raise ApiError("the session changed device", code="invalid_token")
            await messaging.event_rate.hit(session["device_id"])
        except ApiError as error:
            if error.code in {"invalid_token", "session_expired", "account_disabled"}:
                server.start_background_task(server.disconnect, sid, namespace=NAMESPACE)
            return error_ack(error)
        if extra:
            return error_ack(InvalidPayload("send one payload object per event"))
        return await dispatch(messaging, principal, name, data)

    async def on_device_revoked(event: dict[str, Any]) -> None:
        room = device_room(event["device_id"])
        await server.emit("device_revoked", {"device_id": event["device_id"], "wipe": True}, room=room)
        for sid in list(server.manager.get_participants(NAMESPACE, room)):
            await server.disconnect(sid[0] if isinstance(sid, tuple) else sid, namespace=NAMESPACE)

    runtime.broker.subscribe(DEVICE_REVOKED, on_device_revoked)
    channel = SocketChannel(server)
    runtime.camera.notifier.attach(channel)
    messaging.notifier.attach(channel)
    return server


class SocketChannel:
    """Emits to a device's or a user's room, which the Redis manager carries to whichever node
    holds the connections."""

    def __init__(self, server: socketio.AsyncServer) -> None:
        self._server = server

    async def to_device(self, device_id: str, event: str, payload: dict[str, Any]) -> None:
        await self._server.emit(event, payload, room=device_room(device_id), namespace=NAMESPACE)

    async def to_user(self, user_id: str, event: str, payload: dict[str, Any]) -> None:
        await self._server.emit(event, payload, room=user_room(user_id), namespace=NAMESPACE)


def mount(server: socketio.AsyncServer, app: web.Application) -> None:
    server.attach(app, socketio_path="socket.io")
