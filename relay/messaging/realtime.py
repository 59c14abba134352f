"""The socket.io server mounted on the aiohttp application.

Connections authenticate with a session token bound to a device; each socket joins its
device's room and its user's room, so events reach every connection of a device or a user on
whichever node holds it (on scale-out, python-socketio's Redis manager carries them). On every
connection the device's queue is pushed first, oldest first.

Sessions that end (a logout, an admin's sign-out, a disabled account) close their sockets at
once on every node (SESSIONS_ENDED); a revoked device is told to wipe its state and
disconnected at once (DEVICE_REVOKED). Client events count as the session's activity. An event
reads the session again only when it may have run out (this socket was idle for the idle
timeout, or the lifetime is over; it is answered ``session_expired`` if so) or AUTH_RECHECK has
passed (which picks up a changed role).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import socketio
from aiohttp import web

from relay.auth.principal import Principal
from relay.broker.contract import DEVICE_REVOKED, SESSIONS_ENDED
from relay.errors import ApiError, TooManyRequests
from relay.messaging.events import InvalidPayload, dispatch, error_ack
from relay.messaging.queue import MESSAGE_NEW
from relay.runtime import Runtime

NAMESPACE = "/"
BACKLOG_PAGE = 200
BUFFER_FACTOR = 4
AUTH_RECHECK = timedelta(seconds=60)
RATE_WINDOW = 60
SESSION_ENDED = frozenset({"invalid_token", "session_expired", "account_disabled"})
log = logging.getLogger(__name__)


class RateLimited(TooManyRequests):
    code = "rate_limited"


@dataclass
class Connection:
    """What this node knows about one socket: its session, when it was last read and when the
    socket was last active, and how many events it sent in the current minute."""

    token: str
    principal: Principal
    checked_at: datetime
    active_at: datetime
    window: int = 0
    events: int = 0

    def recheck_due(self, now: datetime, idle_timeout: timedelta) -> bool:
        """Whether the session may have changed or run out since it was last read: nothing this
        socket did kept it alive for the idle timeout (another client of the session may have),
        its lifetime is over, or AUTH_RECHECK has passed."""
        expires_at = self.principal.session_expires_at
        return (now - self.checked_at >= AUTH_RECHECK or now - self.active_at >= idle_timeout
                or (expires_at is not None and now >= expires_at))


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
    messaging, sessions, clock = runtime.messaging, runtime.sessions, runtime.clock
    connections: dict[str, Connection] = {}

    async def authenticate(token: object) -> Principal:
        if not isinstance(token, str):
            raise ApiError("connect with a session token", code="missing_token")
        principal = await sessions.authenticate(token)
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
        assert principal.device_id is not None and isinstance(token, str)
        now = clock.now()
        connections[sid] = Connection(token, principal, now, now)
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

    @server.event
    async def disconnect(sid: str, *_: Any) -> None:
        connections.pop(sid, None)

    async def caller(sid: str) -> Principal:
        """The socket's principal, its session read again when that is due; counts the event as
        the session's activity and against the connection's rate."""
        connection, now = connections.get(sid), clock.now()
        if connection is None:
            raise ApiError("this connection is not authenticated", code="invalid_token")
        if connection.recheck_due(now, sessions.idle_timeout):
            principal = await authenticate(connection.token)
            if principal.device_id != connection.principal.device_id:
                raise ApiError("the session changed device", code="invalid_token")
            connection.principal, connection.checked_at = principal, now
        else:
            sessions.record_activity(connection.principal.session_id, now)
        connection.active_at = now
        window = int(now.timestamp()) // RATE_WINDOW
        if window != connection.window:
            connection.window, connection.events = window, 0
        connection.events += 1
        if connection.events > settings.socket_events_per_minute:
            raise RateLimited("too many events on this connection; slow down",
                              retry_after=RATE_WINDOW - int(now.timestamp()) % RATE_WINDOW)
        return connection.principal

    @server.on("*")
    async def client_event(name: str, sid: str, data: Any = None, *extra: Any) -> dict[str, Any]:
        try:
            principal = await caller(sid)
        except ApiError as error:
            if error.code in SESSION_ENDED:
                connections.pop(sid, None)
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

    async def on_sessions_ended(event: dict[str, Any]) -> None:
        ended = set(event["session_ids"])
        for sid, connection in list(connections.items()):
            if connection.principal.session_id in ended:
                connections.pop(sid, None)
                await server.emit("session_ended", {"code": event["code"]}, to=sid, namespace=NAMESPACE,
                                  ignore_queue=True)
                await server.disconnect(sid, namespace=NAMESPACE, ignore_queue=True)

    runtime.broker.subscribe(DEVICE_REVOKED, on_device_revoked)
    runtime.broker.subscribe(SESSIONS_ENDED, on_sessions_ended)
    channel = SocketChannel(server)
    runtime.camera.notifier.attach(channel)
    messaging.notifier.attach(channel)
    runtime.portal.notifier.attach(channel)
    return server


class SocketChannel:
    """Emits to a device's or a user's room, which the Redis manager carries to whichever node
    holds the connections."""

    def __init__(self, server: socketio.AsyncServer) -> None:
        self._server = server

    async def to_device(self, device_id: str, event: str, payload: dict[str, Any]) -> None:
        await self.to_devices((device_id,), event, payload)

    async def to_devices(self, device_ids: Sequence[str], event: str, payload: dict[str, Any]) -> None:
        await self._server.emit(event, payload, to=[device_room(device_id) for device_id in device_ids],
                                namespace=NAMESPACE)

    async def to_users(self, user_ids: Sequence[str], event: str, payload: dict[str, Any]) -> None:
        await self._server.emit(event, payload, to=[user_room(user_id) for user_id in user_ids], namespace=NAMESPACE)


def mount(server: socketio.AsyncServer, app: web.Application) -> None:
    server.attach(app, socketio_path="socket.io")
